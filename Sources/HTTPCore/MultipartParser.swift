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
/// Like the server's request parser, the caller passes every unconsumed byte and drops `consumed` bytes after each step.
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
            if let i = firstIndex(of: delimiter, in: buf) {
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
            } else if let i = firstIndex(of: Array("\r\n\r\n".utf8), in: buf) {
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
            if let i = firstIndex(of: delimiter, in: buf) {
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
            switch HeaderFieldLine.parse(line) {
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
