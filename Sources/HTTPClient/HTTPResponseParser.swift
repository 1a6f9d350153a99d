/// Incremental HTTP/1.1 response parser: feed it bytes as they arrive, then call `finish()` at end of stream.
/// Pure (no I/O), so every framing (Content-Length, chunked, read-until-close, bodiless statuses) is tested
/// byte by byte without sockets.
public struct HTTPResponseParser: Sendable {
    enum State: Sendable, Equatable {
        case head
        case fixed(remaining: Int)
        case chunkSize
        case chunkData(remaining: Int)
        case chunkDataEnd
        case trailers
        case untilClose
        case done
    }

    private(set) var state: State = .head
    private var buffer: [UInt8] = []
    private var start = 0
    private let expectsBody: Bool
    private let maxBytes: Int
    private var status = 0
    private var reason = ""
    private var headers = HTTPHeaders()
    private var body: [UInt8] = []
    /// Body bytes already handed out by `drainBody()` (streaming use), counted against `maxBytes`.
    private var drained = 0

    /// - Parameters:
    ///   - requestMethod: a `HEAD` response never has a body, whatever its headers say.
    ///   - maxBodyBytes: larger bodies fail with `.responseTooLarge`.
    public init(requestMethod: String = "GET", maxBodyBytes: Int = .max) {
        expectsBody = requestMethod.uppercased() != "HEAD"
        maxBytes = maxBodyBytes
    }

    /// The response once complete.
    public var response: HTTPClientResponse? {
        state == .done ? HTTPClientResponse(status: status, reason: reason, headers: headers, body: body) : nil
    }

    public var isComplete: Bool { state == .done }

    /// Status, reason and headers once the head has been parsed (the body may still be arriving).
    public var head: (status: Int, reason: String, headers: HTTPHeaders)? {
        state == .head ? nil : (status, reason, headers)
    }

    /// Hands out the body bytes parsed so far and forgets them, so a caller relaying a large body holds only
    /// what one read brought in.
    public mutating func drainBody() -> [UInt8] {
        defer { body = [] }
        drained += body.count
        return body
    }

    /// Consumes `bytes`; returns true when the response is complete (later bytes are ignored).
    @discardableResult
    public mutating func feed<C: Collection>(_ bytes: C) throws -> Bool where C.Element == UInt8 {
        guard state != .done else { return true }
        if start > 0 && start == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            start = 0
        }
        buffer.append(contentsOf: bytes)
        while try step() {}
        if start > 65536 {
            buffer.removeFirst(start)
            start = 0
        }
        return state == .done
    }

    /// End of stream: completes a read-until-close body, fails a truncated one.
    public mutating func finish() throws {
        switch state {
        case .done: return
        case .untilClose: state = .done
        case .head where buffer.count == start && status == 0:
            throw HTTPClientError(.connectionClosed, "the server closed the connection without answering")
        default:
            throw HTTPClientError(.connectionClosed, "the server closed the connection before the response was complete")
        }
    }

    /// One transition; false when more input is needed.
    private mutating func step() throws -> Bool {
        switch state {
        case .head:
            guard let end = find(crlfcrlf) else {
                if buffer.count - start > 64 * 1024 {
                    throw HTTPClientError(.malformedResponse, "response head larger than 64 KiB")
                }
                return false
            }
            let head = String(decoding: buffer[start..<end], as: UTF8.self)
            start = end + 4
            try parseHead(head)
            return true
        case .fixed(let remaining):
            let n = takeBody(upTo: remaining)
            guard n > 0 else { return false }
            state = remaining == n ? .done : .fixed(remaining: remaining - n)
            // Either the body is complete or the buffer is used up.
            return false
        case .chunkSize:
            let line = buffer.withUnsafeBytes {
                ChunkedCoding.parseSizeLine(UnsafeRawBufferPointer(rebasing: $0[start...]), maxLineLength: 1024)
            }
            switch line {
            case .needMore:
                return false
            case .invalid(let reason):
                throw HTTPClientError(.malformedResponse, "bad chunk size line: \(reason)")
            case .size(let size, let lineLength):
                start += lineLength
                try checkSize(drained + body.count + size)
                state = size == 0 ? .trailers : .chunkData(remaining: size)
                return true
            }
        case .chunkData(let remaining):
            let n = takeBody(upTo: remaining)
            guard n > 0 else { return false }
            state = remaining == n ? .chunkDataEnd : .chunkData(remaining: remaining - n)
            return true
        case .chunkDataEnd:
            guard buffer.count - start >= 2 else { return false }
            guard buffer[start] == 13, buffer[start + 1] == 10 else {
                throw HTTPClientError(.malformedResponse, "chunk data not followed by CRLF")
            }
            start += 2
            state = .chunkSize
            return true
        case .trailers:
            guard let end = find(crlf) else { return false }
            let empty = end == start
            start = end + 2
            if empty { state = .done }
            return !empty
        case .untilClose:
            let n = buffer.count - start
            if n > 0 {
                try checkSize(drained + body.count + n)
                body.append(contentsOf: buffer[start...])
                start = buffer.count
            }
            return false
        case .done:
            return false
        }
    }

    private mutating func parseHead(_ head: String) throws {
        var lines = head.split(separator: "\r\n", omittingEmptySubsequences: false).makeIterator()
        guard let statusLine = lines.next() else { throw HTTPClientError(.malformedResponse, "empty response head") }
        let parts = statusLine.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), parts[1].count == 3, let code = Int(parts[1]) else {
            throw HTTPClientError(.malformedResponse, "bad status line '\(statusLine.prefix(100))'")
        }
        var fields = HTTPHeaders()
        while let line = lines.next() {
            guard let colon = line.firstIndex(of: ":") else {
                throw HTTPClientError(.malformedResponse, "bad header line '\(line.prefix(100))'")
            }
            fields.add(String(line[..<colon]).trimmingCharacters(in: .whitespaces),
                       String(line[line.index(after: colon)...]).trimmingCharacters(in: .whitespaces))
        }
        // 1xx heads (100 Continue) precede the real one.
        if (100..<200).contains(code) { return }
        status = code
        reason = parts.count > 2 ? String(parts[2]) : ""
        headers = fields
        if !expectsBody || code == 204 || code == 304 {
            state = .done
        } else if let te = fields["Transfer-Encoding"], te.lowercased().contains("chunked") {
            state = .chunkSize
        } else if let cl = fields["Content-Length"] {
            guard let n = Int(cl.trimmingCharacters(in: .whitespaces)), n >= 0 else {
                throw HTTPClientError(.malformedResponse, "bad Content-Length '\(cl)'")
            }
            try checkSize(n)
            // Capped: a streaming caller drains as it goes, so a huge declared length must not reserve it all.
            body.reserveCapacity(min(n, 1 << 20))
            state = n == 0 ? .done : .fixed(remaining: n)
        } else {
            state = .untilClose
        }
    }

    /// Moves up to `remaining` buffered bytes into the body; how many it moved (0 for a `remaining` below 1).
    private mutating func takeBody(upTo remaining: Int) -> Int {
        let n = min(remaining, buffer.count - start)
        guard n > 0 else { return 0 }
        body.append(contentsOf: buffer[start..<(start + n)])
        start += n
        return n
    }

    private func checkSize(_ n: Int) throws {
        if n > maxBytes { throw HTTPClientError(.responseTooLarge, "response body of \(n) bytes exceeds the limit of \(maxBytes)") }
    }

    private let crlf: [UInt8] = [13, 10]
    private let crlfcrlf: [UInt8] = [13, 10, 13, 10]

    /// Index of `needle` in the unconsumed buffer.
    private func find(_ needle: [UInt8]) -> Int? {
        let n = needle.count
        guard buffer.count - start >= n else { return nil }
        var i = start
        while i <= buffer.count - n {
            if buffer[i] == needle[0] {
                var j = 1
                while j < n && buffer[i + j] == needle[j] { j += 1 }
                if j == n { return i }
            }
            i += 1
        }
        return nil
    }
}
