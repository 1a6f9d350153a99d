import Foundation

/// Limits applied while reading a form.
public struct HTTPFormLimits: Sendable, Equatable {
    /// The largest non-file field (and the largest urlencoded body) kept in memory.
    public var maxFieldBytes = 16 << 20
    /// The most bytes of all non-file fields of one form together: text fields are held in memory, so without
    /// this sixty 16 MiB fields would cost a gigabyte. File parts go to disk and do not count.
    public var maxTotalFieldBytes = 8 << 20
    /// The most parts.
    public var maxParts = 1000
    /// The largest single uploaded file.
    public var maxFileBytes = Int.max
    public init() {}
}

/// A file part of a `multipart/form-data` request, saved to a temporary file deleted after the response.
public struct HTTPUploadedFile: Sendable, Equatable {
    /// The form field name (`file`, `label`, ...).
    public var fieldName: String
    /// The client's filename verbatim; may be a full path (`C:\data\ct.nii.gz`). Use only its suffix.
    public var filename: String
    /// The part's `Content-Type`, or nil.
    public var contentType: String?
    /// Where the bytes are. Move the file away to keep it beyond the request.
    public var path: String
    public var size: Int
}

/// A parsed form: text fields and uploaded files, both in arrival order.
public struct HTTPForm: Sendable {
    public var fields: [(name: String, value: String)]
    public var files: [HTTPUploadedFile]

    public init(fields: [(name: String, value: String)], files: [HTTPUploadedFile]) {
        self.fields = fields
        self.files = files
    }

    /// The first text field called `name`.
    public func value(_ name: String) -> String? { fields.first { $0.name == name }?.value }
    /// The first file uploaded under field `name`.
    public func file(_ name: String) -> HTTPUploadedFile? { files.first { $0.fieldName == name } }
    /// Every file uploaded under field `name`.
    public func files(_ name: String) -> [HTTPUploadedFile] { files.filter { $0.fieldName == name } }
}

/// Reads a multipart body (in memory or spooled to disk) through `MultipartParser` in bounded memory.
struct MultipartFormReader {
    let boundary: String
    let limits: HTTPFormLimits
    let context: HTTPRequestContext
    static let chunkSize = 256 * 1024

    func read(_ body: HTTPBody) throws -> HTTPForm {
        guard var parser = MultipartParser(boundary: boundary) else { throw HTTPError(.badRequest, "Invalid multipart boundary") }
        var sink = Sink(limits: limits, context: context)
        defer { sink.closeFile() }
        switch body {
        case .empty:
            return HTTPForm(fields: [], files: [])
        case .bytes(let bytes):
            _ = try bytes.withUnsafeBytes { try feed(&parser, &sink, $0, isFinal: true) }
        case .file(let path, _):
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw HTTPError(.internalServerError, "Spooled request body is missing") }
            defer { close(fd) }
            var buffer = [UInt8](repeating: 0, count: Self.chunkSize * 2)
            var filled = 0
            var eof = false
            while !sink.done {
                if !eof, filled < buffer.count {
                    let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + filled, $0.count - filled) }
                    if n < 0 { throw HTTPError(.internalServerError, "Cannot read spooled body") }
                    if n == 0 { eof = true }
                    filled += n
                }
                let consumed = try buffer.withUnsafeBytes {
                    try feed(&parser, &sink, UnsafeRawBufferPointer(rebasing: $0[0..<filled]), isFinal: eof)
                }
                if consumed > 0 {
                    buffer.withUnsafeMutableBytes { p in
                        _ = memmove(p.baseAddress!, p.baseAddress! + consumed, filled - consumed)
                    }
                    filled -= consumed
                } else if eof && !sink.done {
                    throw HTTPError(.badRequest, "Truncated multipart body")
                }
            }
        }
        guard sink.done else { throw HTTPError(.badRequest, "Truncated multipart body") }
        return HTTPForm(fields: sink.fields, files: sink.files)
    }

    /// Runs the parser until it needs more bytes or ends; returns how many bytes of `buf` were consumed.
    private func feed(_ parser: inout MultipartParser, _ sink: inout Sink, _ buf: UnsafeRawBufferPointer, isFinal: Bool) throws -> Int {
        var offset = 0
        while !sink.done {
            let rest = UnsafeRawBufferPointer(rebasing: buf[offset...])
            let (action, consumed) = parser.next(rest, isFinal: isFinal)
            switch action {
            case .needMore:
                offset += consumed
                if consumed == 0 { return offset }
            case .partHead(let head):
                try sink.begin(head)
                offset += consumed
            case .partData(let range):
                try sink.append(UnsafeRawBufferPointer(rebasing: rest[range]))
                offset += consumed
            case .partEnd:
                try sink.end()
                offset += consumed
            case .end:
                sink.done = true
                return buf.count
            case .error(let reason):
                throw HTTPError(.badRequest, reason)
            }
        }
        return offset
    }

    private struct Sink {
        let limits: HTTPFormLimits
        let context: HTTPRequestContext
        var fields: [(name: String, value: String)] = []
        var files: [HTTPUploadedFile] = []
        var done = false
        var head: MultipartPartHead?
        var fieldBytes: [UInt8] = []
        var fd: Int32 = -1
        var file: HTTPUploadedFile?
        var parts = 0
        var totalFieldBytes = 0

        init(limits: HTTPFormLimits, context: HTTPRequestContext) {
            self.limits = limits
            self.context = context
        }

        mutating func begin(_ h: MultipartPartHead) throws {
            parts += 1
            if parts > limits.maxParts { throw HTTPError(.payloadTooLarge, "Too many multipart parts") }
            head = h
            if let filename = h.filename {
                let (path, fd) = try context.makeTemporaryFile()
                self.fd = fd
                file = HTTPUploadedFile(fieldName: h.name, filename: filename, contentType: h.contentType, path: path, size: 0)
            } else {
                fieldBytes.removeAll(keepingCapacity: true)
            }
        }

        mutating func append(_ bytes: UnsafeRawBufferPointer) throws {
            if file != nil {
                file!.size += bytes.count
                if file!.size > limits.maxFileBytes { throw HTTPError(.payloadTooLarge, "Uploaded file too large") }
                var off = 0
                while off < bytes.count {
                    let n = write(fd, bytes.baseAddress! + off, bytes.count - off)
                    if n < 0 {
                        if errno == EINTR { continue }
                        throw HTTPError(.internalServerError, "Cannot write upload: \(String(cString: strerror(errno)))")
                    }
                    off += n
                }
            } else {
                if fieldBytes.count + bytes.count > limits.maxFieldBytes {
                    throw HTTPError(.payloadTooLarge, "Form field too large: the limit is \(limits.maxFieldBytes) bytes")
                }
                totalFieldBytes += bytes.count
                if totalFieldBytes > limits.maxTotalFieldBytes {
                    throw HTTPError(
                        .payloadTooLarge,
                        "Form text fields too large: the limit is \(limits.maxTotalFieldBytes) bytes for all text fields together")
                }
                fieldBytes.append(contentsOf: bytes)
            }
        }

        mutating func end() throws {
            if let f = file {
                closeFile()
                files.append(f)
                file = nil
            } else if let h = head {
                fields.append((name: h.name, value: String(decoding: fieldBytes, as: UTF8.self)))
            }
            head = nil
        }

        mutating func closeFile() {
            if fd >= 0 { close(fd) }
            fd = -1
        }
    }
}
