import Foundation

/// The head of one `multipart/form-data` part.
public struct MultipartPartHead: Sendable, Equatable {
    /// The `name` parameter of `Content-Disposition`.
    public var name: String
    /// The `filename` parameter verbatim (it may be a full client path; `filename*` wins when present), or nil.
    public var filename: String?
    /// The part's `Content-Type`, or nil.
    public var contentType: String?
}

/// An incremental `multipart/form-data` parser (RFC 7578 / RFC 2046) as a pure state machine.
///
/// Like `HTTPRequestParser`, the caller passes every unconsumed byte and drops `consumed` bytes after each step.
/// Part data comes back as ranges of the passed buffer; the parser keeps back only enough bytes to recognise a
/// delimiter split across reads, so memory stays bounded whatever the part sizes.
public struct MultipartParser: Sendable {
    public enum Action: Sendable, Equatable {
        case needMore
        case partHead(MultipartPartHead)
        case partData(Range<Int>)
        case partEnd
        /// The close delimiter was seen; anything after it (the epilogue) is ignored.
        case end
        case error(String)
    }

    private enum State: Sendable {
        case preamble, afterDelimiter, partHeaders, partBody, epilogue
        case failed(String)
    }

    /// `CRLF "--" boundary`.
    private let delimiter: [UInt8]
    private var state: State = .preamble
    /// The most bytes a part's header block may take.
    public var maxPartHeaderBytes = 16 * 1024

    /// Fails for an empty or over-long boundary (RFC 2046 allows 1 to 70 characters; we allow up to 200).
    public init?(boundary: String) {
        guard !boundary.isEmpty, boundary.utf8.count <= 200 else { return nil }
        delimiter = Array("\r\n--".utf8) + Array(boundary.utf8)
    }

    /// The `boundary` parameter of a `multipart/...` Content-Type, unquoted. Accepts characters RFC 2046 does not
    /// (MONAI Label's client uses `$`).
    public static func boundary(fromContentType ct: String) -> String? {
        let (_, params) = HeaderParameters.parse(ct)
        guard let b = params.first(where: { $0.name.equalsIgnoringASCIICase("boundary") })?.value, !b.isEmpty else { return nil }
        return b
    }

    /// Advances over `buf`. `isFinal` says no more bytes will come, turning a truncated body into an error.
    public mutating func next(_ buf: UnsafeRawBufferPointer, isFinal: Bool) -> (action: Action, consumed: Int) {
        switch state {
        case .failed(let reason):
            return (.error(reason), 0)
        case .epilogue:
            return (.end, buf.count)
        case .preamble:
            let dashBoundary = delimiter.count - 2
            if buf.count >= dashBoundary, Self.matches(buf, at: 0, delimiter, from: 2) {
                state = .afterDelimiter
                return (.needMore, dashBoundary)
            }
            if let i = Self.find(delimiter, in: buf) {
                state = .afterDelimiter
                return (.needMore, i + delimiter.count)
            }
            if isFinal { return fail("No multipart boundary found") }
            return (.needMore, max(0, buf.count - delimiter.count))
        case .afterDelimiter:
            if buf.count < 2 { return isFinal ? fail("Truncated multipart body") : (.needMore, 0) }
            if buf[0] == UInt8(ascii: "-"), buf[1] == UInt8(ascii: "-") {
                state = .epilogue
                return (.end, buf.count)
            }
            var k = 0
            while k < buf.count, buf[k] == 32 || buf[k] == 9 { k += 1 }
            if k + 2 > buf.count {
                if k > 256 { return fail("Invalid multipart delimiter line") }
                return isFinal ? fail("Truncated multipart body") : (.needMore, 0)
            }
            guard buf[k] == 13, buf[k + 1] == 10 else { return fail("Invalid multipart delimiter line") }
            state = .partHeaders
            return (.needMore, k + 2)
        case .partHeaders:
            let end: Int
            if buf.count >= 2, buf[0] == 13, buf[1] == 10 {
                end = 0
            } else if let i = Self.find(Array("\r\n\r\n".utf8), in: buf) {
                end = i + 2
            } else {
                if buf.count > maxPartHeaderBytes { return fail("Multipart part headers too large") }
                return isFinal ? fail("Truncated multipart body") : (.needMore, 0)
            }
            if end > maxPartHeaderBytes { return fail("Multipart part headers too large") }
            switch Self.parsePartHead(UnsafeRawBufferPointer(rebasing: buf[0..<end])) {
            case .failure(let reason): return fail(reason.message)
            case .success(let head):
                state = .partBody
                return (.partHead(head), end + 2)
            }
        case .partBody:
            if let i = Self.find(delimiter, in: buf) {
                if i > 0 { return (.partData(0..<i), i) }
                state = .afterDelimiter
                return (.partEnd, delimiter.count)
            }
            let safe = buf.count - (delimiter.count - 1)
            if safe > 0 { return (.partData(0..<safe), safe) }
            return isFinal ? fail("Truncated multipart body") : (.needMore, 0)
        }
    }

    private mutating func fail(_ reason: String) -> (action: Action, consumed: Int) {
        state = .failed(reason)
        return (.error(reason), 0)
    }

    private static func matches(_ buf: UnsafeRawBufferPointer, at i: Int, _ pattern: [UInt8], from p: Int) -> Bool {
        var k = 0
        while p + k < pattern.count {
            if buf[i + k] != pattern[p + k] { return false }
            k += 1
        }
        return true
    }

    /// The first index of `pattern` in `buf`, or nil.
    static func find(_ pattern: [UInt8], in buf: UnsafeRawBufferPointer) -> Int? {
        guard pattern.count <= buf.count, let base = buf.baseAddress else { return nil }
        let first = Int32(pattern[0])
        var i = 0
        let last = buf.count - pattern.count
        while i <= last {
            guard let hit = memchr(base + i, first, last - i + 1) else { return nil }
            let j = base.distance(to: UnsafeRawPointer(hit))
            if pattern.withUnsafeBytes({ memcmp(base + j, $0.baseAddress!, pattern.count) }) == 0 { return j }
            i = j + 1
        }
        return nil
    }

    private struct HeadError: Error { let message: String }

    private static func parsePartHead(_ block: UnsafeRawBufferPointer) -> Result<MultipartPartHead, HeadError> {
        var name: String?
        var filename: String?
        var filenameStar: String?
        var contentType: String?
        var pos = 0
        while pos < block.count {
            guard let lfRel = UnsafeRawBufferPointer(rebasing: block[pos...]).firstIndex(of: 10) else { break }
            let lf = pos + lfRel
            guard lf > pos, block[lf - 1] == 13 else { return .failure(HeadError(message: "Bare LF in multipart headers")) }
            let line = UnsafeRawBufferPointer(rebasing: block[pos..<(lf - 1)])
            pos = lf + 1
            if line.isEmpty { continue }
            switch HTTPRequestParser.parseField(line) {
            case .failure(let e): return .failure(HeadError(message: "Invalid multipart header: \(e.reason)"))
            case .success(let (field, value)):
                if field.equalsIgnoringASCIICase("Content-Disposition") {
                    let (kind, params) = HeaderParameters.parse(value)
                    guard kind.equalsIgnoringASCIICase("form-data") else {
                        return .failure(HeadError(message: "Multipart part is not form-data"))
                    }
                    for p in params {
                        if p.name.equalsIgnoringASCIICase("name") { name = p.value }
                        if p.name.equalsIgnoringASCIICase("filename") { filename = p.value }
                        if p.name.equalsIgnoringASCIICase("filename*") { filenameStar = HeaderParameters.decodeExtended(p.value) }
                    }
                } else if field.equalsIgnoringASCIICase("Content-Type") {
                    contentType = value
                }
            }
        }
        guard let n = name else { return .failure(HeadError(message: "Multipart part without a name")) }
        return .success(MultipartPartHead(name: n, filename: filenameStar ?? filename, contentType: contentType))
    }
}

/// `value; a=b; c="quoted"` parsing for Content-Type and Content-Disposition.
enum HeaderParameters {
    /// The leading value and its parameters in order. Quoted values are unquoted with only `\"` and `\\` taken
    /// as escapes (python-multipart's rule), so a Windows path such as `C:\dir\f.nii` survives verbatim.
    static func parse(_ s: String) -> (value: String, params: [(name: String, value: String)]) {
        let bytes = Array(s.utf8)
        var i = 0
        func skipSpaces() { while i < bytes.count, bytes[i] == 32 || bytes[i] == 9 { i += 1 } }
        var start = i
        while i < bytes.count, bytes[i] != UInt8(ascii: ";") { i += 1 }
        let value = String(decoding: bytes[start..<i], as: UTF8.self).trimmingSpaces()
        var params: [(name: String, value: String)] = []
        while i < bytes.count {
            i += 1  // the ';'
            skipSpaces()
            start = i
            while i < bytes.count, bytes[i] != UInt8(ascii: "="), bytes[i] != UInt8(ascii: ";") { i += 1 }
            let name = String(decoding: bytes[start..<i], as: UTF8.self).trimmingSpaces()
            var v: [UInt8] = []
            if i < bytes.count, bytes[i] == UInt8(ascii: "=") {
                i += 1
                skipSpaces()
                if i < bytes.count, bytes[i] == UInt8(ascii: "\"") {
                    i += 1
                    while i < bytes.count, bytes[i] != UInt8(ascii: "\"") {
                        if bytes[i] == 92, i + 1 < bytes.count, bytes[i + 1] == 34 || bytes[i + 1] == 92 { i += 1 }
                        v.append(bytes[i])
                        i += 1
                    }
                    i += 1
                    while i < bytes.count, bytes[i] != UInt8(ascii: ";") { i += 1 }
                } else {
                    start = i
                    while i < bytes.count, bytes[i] != UInt8(ascii: ";") { i += 1 }
                    v = Array(String(decoding: bytes[start..<i], as: UTF8.self).trimmingSpaces().utf8)
                }
            }
            if !name.isEmpty { params.append((name: String(name), value: String(decoding: v, as: UTF8.self))) }
        }
        return (String(value), params)
    }

    /// RFC 8187 `charset'lang'pct-encoded`; nil when it does not decode.
    static func decodeExtended(_ v: String) -> String? {
        let pieces = v.split(separator: "'", maxSplits: 2, omittingEmptySubsequences: false)
        guard pieces.count == 3 else { return nil }
        return PercentEncoding.decode(pieces[2], plusAsSpace: false)
    }
}

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

/// Builds a `multipart/form-data` response the way requests_toolbelt's `MultipartEncoder` lays it out (what
/// MONAI Label's `/infer` returns): parts in order, text parts without a filename, file parts streamed from disk.
public struct MultipartResponseBuilder: Sendable {
    /// 32 lowercase hex characters unless given.
    public let boundary: String
    private var segments: [HTTPBodySegment] = []

    public init(boundary: String? = nil) {
        if let b = boundary {
            self.boundary = b
        } else {
            let hex = Array("0123456789abcdef")
            self.boundary = String((0..<32).map { _ in hex[Int.random(in: 0..<16)] })
        }
    }

    private mutating func head(name: String, filename: String?, contentType: String?) {
        var h = "--\(boundary)\r\nContent-Disposition: form-data; name=\"\(name)\""
        if let f = filename { h += "; filename=\"\(f)\"" }
        h += "\r\n"
        if let ct = contentType { h += "Content-Type: \(ct)\r\n" }
        h += "\r\n"
        segments.append(.bytes(Array(h.utf8)))
    }

    /// A part without filename holding `value`.
    public mutating func addField(name: String, value: [UInt8], contentType: String? = nil) {
        head(name: name, filename: nil, contentType: contentType)
        segments.append(.bytes(value + [13, 10]))
    }

    /// A part with `filename` whose bytes are streamed from `path` (deleted after sending when `deleteAfter`).
    public mutating func addFile(
        name: String, filename: String, path: String, contentType: String? = "application/octet-stream",
        deleteAfter: Bool = false
    ) {
        head(name: name, filename: filename, contentType: contentType)
        segments.append(.file(path: path, deleteAfter: deleteAfter))
        segments.append(.bytes([13, 10]))
    }

    /// The response: `Content-Type: multipart/form-data; boundary=...` and a body of known length.
    public func response(status: HTTPStatus = .ok) -> HTTPResponse {
        var headers = HTTPHeaders()
        headers.add("Content-Type", "multipart/form-data; boundary=\(boundary)")
        return HTTPResponse(status: status, headers: headers, body: .segments(segments + [.bytes(Array("--\(boundary)--\r\n".utf8))]))
    }
}
