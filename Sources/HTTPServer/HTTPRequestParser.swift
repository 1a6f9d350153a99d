/// Limits on what a client may send, enforced while parsing.
public struct HTTPLimits: Sendable {
    /// Longest request-target; longer gets 414.
    public var maxURILength: Int = 8 * 1024
    /// Largest request head (request line plus header fields, or a chunked trailer section); larger gets 431.
    public var maxHeaderBytes: Int = 32 * 1024
    /// Most header fields in one head; more gets 431.
    public var maxHeaderCount: Int = 100
    /// Largest request body; larger gets 413 (before reading it when the length is declared).
    public var maxBodyBytes: Int = 4 << 30
    /// Longest chunk-size line including extensions, which are ignored.
    public var maxChunkLineLength: Int = 4 * 1024

    public init() {}
}

/// The HTTP version of a request.
public struct HTTPVersion: Hashable, Sendable, CustomStringConvertible {
    public var major: Int
    public var minor: Int
    public init(major: Int, minor: Int) {
        self.major = major
        self.minor = minor
    }
    public static let http1_0 = HTTPVersion(major: 1, minor: 0)
    public static let http1_1 = HTTPVersion(major: 1, minor: 1)
    public var description: String { "HTTP/\(major).\(minor)" }
}

/// How the body of a request is delimited (RFC 9112 section 6.3).
public enum HTTPBodyFraming: Hashable, Sendable {
    case none
    case length(Int)
    case chunked
}

/// A parsed request head: request line, fields and what they imply for framing and the connection.
public struct HTTPRequestHead: Sendable {
    public var method: HTTPMethod
    /// The request target as received (origin-form; absolute-form is reduced to its path and query).
    public var target: String
    public var version: HTTPVersion
    public var headers: HTTPHeaders
    public var framing: HTTPBodyFraming
    /// The client sent `Expect: 100-continue` and waits for an interim response before the body.
    public var expectsContinue: Bool
    /// Whether the client allows the connection to stay open after this exchange.
    public var keepAlive: Bool
}

/// Why a request was refused while parsing; `status` is what the client gets, and the connection is closed.
public struct HTTPParseError: Error, Hashable, Sendable, CustomStringConvertible {
    private enum Code: Hashable, Sendable {
        case malformed, uriTooLong, headersTooLarge, bodyTooLarge, unsupportedCoding, unsupportedVersion, expectation
    }
    private let code: Code
    /// A short human-readable reason, sent as the `detail`.
    public let reason: String

    private init(_ code: Code, _ reason: String) {
        self.code = code
        self.reason = reason
    }

    public static func malformed(_ reason: String) -> HTTPParseError { .init(.malformed, reason) }
    public static let uriTooLong = HTTPParseError(.uriTooLong, "URI Too Long")
    public static let headersTooLarge = HTTPParseError(.headersTooLarge, "Request Header Fields Too Large")
    public static let bodyTooLarge = HTTPParseError(.bodyTooLarge, "Content Too Large")
    public static let unsupportedTransferCoding = HTTPParseError(.unsupportedCoding, "Unsupported transfer coding")
    public static let unsupportedVersion = HTTPParseError(.unsupportedVersion, "HTTP Version Not Supported")
    public static let expectationFailed = HTTPParseError(.expectation, "Expectation Failed")

    public var status: HTTPStatus {
        switch code {
        case .malformed: return .badRequest
        case .uriTooLong: return .uriTooLong
        case .headersTooLarge: return .requestHeaderFieldsTooLarge
        case .bodyTooLarge: return .payloadTooLarge
        case .unsupportedCoding: return .notImplemented
        case .unsupportedVersion: return .httpVersionNotSupported
        case .expectation: return .expectationFailed
        }
    }
    public var description: String { "\(status.code) \(reason)" }
}

/// An incremental HTTP/1.1 request parser (RFC 9110/9112) as a pure state machine.
///
/// The caller owns the bytes. It passes every not-yet-consumed byte to `next(_:)` and drops the prefix the
/// returned `consumed` counts. Body data comes back as a range of the passed buffer, so nothing is copied.
/// After `.end` the parser is ready for the next pipelined request; after `.error` it stays failed.
public struct HTTPRequestParser: Sendable {
    /// What the caller should do next.
    public enum Action: Sendable {
        /// Read more bytes and call again with everything unconsumed.
        case needMore
        /// A complete request head. Body actions follow unless the framing is `.none`; then `.end` does.
        case head(HTTPRequestHead)
        /// Body bytes: this range of the buffer that was passed in.
        case body(Range<Int>)
        /// The request is complete.
        case end
        /// The request is invalid; answer `error.status` and close.
        case error(HTTPParseError)
    }

    private enum State: Sendable {
        case head(scanned: Int)
        case fixedBody(remaining: Int)
        case emptyBody
        case chunkSize
        case chunkData(remaining: Int)
        case chunkDataEnd
        case trailers(scanned: Int, fields: Int)
        case failed(HTTPParseError)
    }

    public let limits: HTTPLimits
    private var state: State = .head(scanned: 0)
    private var chunkedTotal = 0

    public init(limits: HTTPLimits = HTTPLimits()) { self.limits = limits }

    /// True after a head has been returned and before `.end`.
    public var isInBody: Bool {
        switch state {
        case .fixedBody, .emptyBody, .chunkSize, .chunkData, .chunkDataEnd, .trailers: return true
        case .head, .failed: return false
        }
    }

    /// Advances over `buffer` (every unconsumed byte). Returns the action and how many leading bytes it consumed.
    public mutating func next(_ buffer: UnsafeRawBufferPointer) -> (action: Action, consumed: Int) {
        switch state {
        case .failed(let e):
            return (.error(e), 0)
        case .head(let scanned):
            return parseHead(buffer, scanned: scanned)
        case .emptyBody:
            state = .head(scanned: 0)
            return (.end, 0)
        case .fixedBody(let remaining):
            if buffer.isEmpty { return (.needMore, 0) }
            let n = min(remaining, buffer.count)
            state = remaining == n ? .emptyBody : .fixedBody(remaining: remaining - n)
            return (.body(0..<n), n)
        case .chunkData(let remaining):
            if buffer.isEmpty { return (.needMore, 0) }
            let n = min(remaining, buffer.count)
            state = remaining == n ? .chunkDataEnd : .chunkData(remaining: remaining - n)
            return (.body(0..<n), n)
        case .chunkDataEnd:
            if buffer.count < 2 { return (.needMore, 0) }
            guard buffer[0] == .cr, buffer[1] == .lf else { return fail(.malformed("Missing CRLF after chunk data")) }
            state = .chunkSize
            return shifted(next(UnsafeRawBufferPointer(rebasing: buffer[2...])), by: 2)
        case .chunkSize:
            return parseChunkSize(buffer)
        case .trailers(let scanned, let fields):
            return parseTrailers(buffer, scanned: scanned, fields: fields)
        }
    }

    private mutating func fail(_ e: HTTPParseError) -> (action: Action, consumed: Int) {
        state = .failed(e)
        return (.error(e), 0)
    }

    // MARK: head

    private mutating func parseHead(_ buf: UnsafeRawBufferPointer, scanned: Int) -> (action: Action, consumed: Int) {
        // RFC 9112 section 2.2: ignore empty lines received before the request line.
        var start = 0
        if scanned == 0 {
            while start + 1 < buf.count, buf[start] == .cr, buf[start + 1] == .lf { start += 2 }
            if start > 0 {
                return shifted(parseHead(UnsafeRawBufferPointer(rebasing: buf[start...]), scanned: 0), by: start)
            }
        }
        // Find the blank line that ends the head. Lines before `scanned` were already checked.
        var lineStart = scanned
        var headEnd = -1
        while let lfRel = UnsafeRawBufferPointer(rebasing: buf[lineStart...]).firstIndex(of: .lf) {
            let lf = lineStart + lfRel
            guard lf > lineStart, buf[lf - 1] == .cr else { return fail(.malformed("Bare LF in request head")) }
            if lf - lineStart == 1 {
                headEnd = lf + 1
                break
            }
            lineStart = lf + 1
        }
        if headEnd < 0 {
            if lineStart == 0, buf.count > limits.maxURILength + 32 { return fail(.uriTooLong) }
            if buf.count > limits.maxHeaderBytes {
                return fail(requestLineTooLong(buf) ? .uriTooLong : .headersTooLarge)
            }
            state = .head(scanned: lineStart)
            return (.needMore, 0)
        }
        if headEnd > limits.maxHeaderBytes {
            return fail(requestLineTooLong(buf) ? .uriTooLong : .headersTooLarge)
        }
        switch Self.parseHeadBlock(UnsafeRawBufferPointer(rebasing: buf[0..<headEnd]), limits: limits) {
        case .failure(let e):
            return fail(e)
        case .success(let head):
            switch head.framing {
            case .none: state = .emptyBody
            case .length(let n): state = n == 0 ? .emptyBody : .fixedBody(remaining: n)
            case .chunked:
                chunkedTotal = 0
                state = .chunkSize
            }
            return (.head(head), headEnd)
        }
    }

    private func requestLineTooLong(_ buf: UnsafeRawBufferPointer) -> Bool {
        let end = buf.firstIndex(of: .lf) ?? buf.count
        return end > limits.maxURILength + 32
    }

    /// Parses a complete head (ending with the blank line, CRLFs already verified).
    static func parseHeadBlock(_ buf: UnsafeRawBufferPointer, limits: HTTPLimits) -> Result<HTTPRequestHead, HTTPParseError> {
        guard let lf = buf.firstIndex(of: .lf) else { return .failure(.malformed("No request line")) }
        let line = UnsafeRawBufferPointer(rebasing: buf[0..<(lf - 1)])
        // request-line = method SP request-target SP HTTP-version
        guard let sp1 = line.firstIndex(of: .space), sp1 > 0 else { return .failure(.malformed("Invalid request line")) }
        for k in 0..<sp1 where !isTokenChar(line[k]) { return .failure(.malformed("Invalid method")) }
        guard let sp2rel = UnsafeRawBufferPointer(rebasing: line[(sp1 + 1)...]).firstIndex(of: .space) else {
            return .failure(.malformed("Invalid request line"))
        }
        let sp2 = sp1 + 1 + sp2rel
        let targetBytes = UnsafeRawBufferPointer(rebasing: line[(sp1 + 1)..<sp2])
        if targetBytes.isEmpty { return .failure(.malformed("Empty request target")) }
        if targetBytes.count > limits.maxURILength { return .failure(.uriTooLong) }
        for b in targetBytes where b < 0x21 || b > 0x7E { return .failure(.malformed("Invalid character in request target")) }
        let versionBytes = UnsafeRawBufferPointer(rebasing: line[(sp2 + 1)...])
        guard let version = parseVersion(versionBytes) else { return .failure(.malformed("Invalid HTTP version")) }
        guard version.major == 1 else { return .failure(.unsupportedVersion) }
        let method = HTTPMethod(rawValue: String(decoding: UnsafeRawBufferPointer(rebasing: line[0..<sp1]), as: UTF8.self))
        var target = String(decoding: targetBytes, as: UTF8.self)
        switch targetBytes[0] {
        case .slash:
            break
        case .asterisk where targetBytes.count == 1 && method == .options:
            break
        default:
            // absolute-form (RFC 9112 section 3.2.2): keep only path and query for routing.
            guard let reduced = originForm(ofAbsolute: target) else { return .failure(.malformed("Invalid request target")) }
            target = reduced
        }

        var headers = HTTPHeaders()
        var pos = lf + 1
        var count = 0
        while pos < buf.count {
            guard let eolRel = UnsafeRawBufferPointer(rebasing: buf[pos...]).firstIndex(of: .lf) else { break }
            let eol = pos + eolRel
            if eol - pos == 1 { break }  // the blank line
            let fieldLine = UnsafeRawBufferPointer(rebasing: buf[pos..<(eol - 1)])
            count += 1
            if count > limits.maxHeaderCount { return .failure(.headersTooLarge) }
            switch parseField(fieldLine) {
            case .failure(let e): return .failure(e)
            case .success(let (name, value)): headers.add(name, value)
            }
            pos = eol + 1
        }
        return interpret(method: method, target: target, version: version, headers: headers, limits: limits)
    }

    private static func originForm(ofAbsolute target: String) -> String? {
        let lower = target.lowercased()
        let schemeEnd: String.Index
        if lower.hasPrefix("http://") {
            schemeEnd = target.index(target.startIndex, offsetBy: 7)
        } else if lower.hasPrefix("https://") {
            schemeEnd = target.index(target.startIndex, offsetBy: 8)
        } else {
            return nil
        }
        let rest = target[schemeEnd...]
        guard let slash = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) else { return "/" }
        let tail = String(rest[slash...])
        return tail.hasPrefix("?") ? "/" + tail : tail
    }

    private static func parseVersion(_ b: UnsafeRawBufferPointer) -> HTTPVersion? {
        guard b.count == 8, b[0] == UInt8(ascii: "H"), b[1] == UInt8(ascii: "T"), b[2] == UInt8(ascii: "T"),
            b[3] == UInt8(ascii: "P"), b[4] == .slash, isDigit(b[5]), b[6] == UInt8(ascii: "."), isDigit(b[7])
        else { return nil }
        return HTTPVersion(major: Int(b[5] - 0x30), minor: Int(b[7] - 0x30))
    }

    static func parseField(_ line: UnsafeRawBufferPointer) -> Result<(String, String), HTTPParseError> {
        HeaderFieldLine.parse(line).mapError { .malformed($0.reason) }
    }

    /// Applies RFC 9112 section 6 (framing), section 9.3 (persistence) and RFC 9110 section 10.1.1 (Expect).
    static func interpret(
        method: HTTPMethod, target: String, version: HTTPVersion, headers: HTTPHeaders, limits: HTTPLimits
    ) -> Result<HTTPRequestHead, HTTPParseError> {
        let hosts = headers.values("Host")
        if version.minor >= 1 && hosts.count != 1 || hosts.count > 1 {
            return .failure(.malformed("A request needs exactly one Host header"))
        }
        let te = headers.values("Transfer-Encoding")
        let cl = headers.values("Content-Length")
        var framing = HTTPBodyFraming.none
        if !te.isEmpty {
            if !cl.isEmpty { return .failure(.malformed("Content-Length together with Transfer-Encoding")) }
            if version.minor == 0 { return .failure(.malformed("Transfer-Encoding in an HTTP/1.0 request")) }
            var codings: [Substring] = []
            for v in te {
                for c in v.split(separator: ",") {
                    let t = c.trimmingSpaces()
                    if !t.isEmpty { codings.append(t) }
                }
            }
            for c in codings where !c.equalsIgnoringASCIICase("chunked") { return .failure(.unsupportedTransferCoding) }
            guard codings.count == 1 else { return .failure(.malformed("Invalid Transfer-Encoding")) }
            framing = .chunked
        } else if !cl.isEmpty {
            var values: [Substring] = []
            for v in cl { values.append(contentsOf: v.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingSpaces() }) }
            guard values.count == 1 else { return .failure(.malformed("Duplicate Content-Length")) }
            let digits = values[0].utf8
            guard !digits.isEmpty, digits.count <= 18, digits.allSatisfy(isDigit), let n = Int(values[0]) else {
                return .failure(.malformed("Invalid Content-Length"))
            }
            if n > limits.maxBodyBytes { return .failure(.bodyTooLarge) }
            framing = .length(n)
        }
        var expectsContinue = false
        if let expect = headers["Expect"] {
            guard expect.trimmingSpaces().equalsIgnoringASCIICase("100-continue") else { return .failure(.expectationFailed) }
            expectsContinue = version.minor >= 1
        }
        var close = false
        var keepAliveToken = false
        for v in headers.values("Connection") {
            for t in v.split(separator: ",") {
                let tok = t.trimmingSpaces()
                if tok.equalsIgnoringASCIICase("close") { close = true }
                if tok.equalsIgnoringASCIICase("keep-alive") { keepAliveToken = true }
            }
        }
        let keepAlive = !close && (version.minor >= 1 || keepAliveToken)
        return .success(HTTPRequestHead(
            method: method, target: target, version: version, headers: headers, framing: framing,
            expectsContinue: expectsContinue, keepAlive: keepAlive))
    }

    // MARK: chunked

    private mutating func parseChunkSize(_ buf: UnsafeRawBufferPointer) -> (action: Action, consumed: Int) {
        switch ChunkedCoding.parseSizeLine(buf, maxLineLength: limits.maxChunkLineLength) {
        case .needMore:
            return (.needMore, 0)
        case .invalid(let reason):
            return fail(.malformed(reason))
        case .size(let size, let consumed):
            if size == 0 {
                state = .trailers(scanned: 0, fields: 0)
                return shifted(next(UnsafeRawBufferPointer(rebasing: buf[consumed...])), by: consumed)
            }
            chunkedTotal += size
            if chunkedTotal > limits.maxBodyBytes { return fail(.bodyTooLarge) }
            state = .chunkData(remaining: size)
            return shifted(next(UnsafeRawBufferPointer(rebasing: buf[consumed...])), by: consumed)
        }
    }

    private mutating func parseTrailers(_ buf: UnsafeRawBufferPointer, scanned: Int, fields: Int) -> (action: Action, consumed: Int) {
        // Trailer fields are validated like header fields and then dropped (RFC 9110 section 6.5.1 allows it).
        var pos = 0
        var count = fields
        while true {
            guard let lfRel = UnsafeRawBufferPointer(rebasing: buf[pos...]).firstIndex(of: .lf) else {
                if scanned + buf.count > limits.maxHeaderBytes { return fail(.headersTooLarge) }
                state = .trailers(scanned: scanned + pos, fields: count)
                return (.needMore, pos)
            }
            let lf = pos + lfRel
            guard lf > pos, buf[lf - 1] == .cr else { return fail(.malformed("Bare LF in trailer section")) }
            if scanned + lf > limits.maxHeaderBytes { return fail(.headersTooLarge) }
            if lf - pos == 1 {
                state = .head(scanned: 0)
                return (.end, lf + 1)
            }
            let line = UnsafeRawBufferPointer(rebasing: buf[pos..<(lf - 1)])
            if line.contains(.cr) { return fail(.malformed("Bare CR in trailer section")) }
            if case .failure(let e) = Self.parseField(line) { return fail(e) }
            count += 1
            if count > limits.maxHeaderCount { return fail(.headersTooLarge) }
            pos = lf + 1
        }
    }
}

/// Re-bases a step taken on a suffix of the buffer that starts `offset` bytes in.
private func shifted(_ r: (action: HTTPRequestParser.Action, consumed: Int), by offset: Int)
    -> (action: HTTPRequestParser.Action, consumed: Int)
{
    switch r.action {
    case .body(let range): return (.body((range.lowerBound + offset)..<(range.upperBound + offset)), r.consumed + offset)
    case .needMore, .head, .end, .error: return (r.action, r.consumed + offset)
    }
}

private extension UInt8 {
    static let cr: UInt8 = 13
    static let lf: UInt8 = 10
    static let space: UInt8 = 32
    static let tab: UInt8 = 9
    static let colon: UInt8 = 58
    static let semicolon: UInt8 = 59
    static let slash: UInt8 = 47
    static let asterisk: UInt8 = 42
}
