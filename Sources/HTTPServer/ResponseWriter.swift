import Foundation
import Synchronization

/// The IMF-fixdate for `Date`, recomputed at most once a second.
enum HTTPDate {
    private static let cache = Mutex<(second: Int, text: [UInt8])>((-1, []))
    private static let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    private static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    static var now: [UInt8] {
        let t = time(nil)
        return cache.withLock { c in
            if c.second == t { return c.text }
            c = (t, format(t))
            return c.text
        }
    }

    static func format(_ t: Int) -> [UInt8] {
        var tt = time_t(t)
        var tm = tm()
        gmtime_r(&tt, &tm)
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        let s = "\(days[Int(tm.tm_wday)]), \(two(tm.tm_mday)) \(months[Int(tm.tm_mon)]) \(tm.tm_year + 1900) "
            + "\(two(tm.tm_hour)):\(two(tm.tm_min)):\(two(tm.tm_sec)) GMT"
        return Array(s.utf8)
    }
}

/// Turns an `HTTPResponse` into bytes on the wire.
struct ResponseWriter {
    let serverName: [UInt8]?
    let timeoutMs: Int32
    var head: [UInt8] = []
    var scratch: [UInt8] = []

    init(serverName: String?, timeoutSeconds: Double) {
        self.serverName = serverName.map { Array($0.utf8) }
        self.timeoutMs = Int32(min(Double(Int32.max), timeoutSeconds * 1000))
        head.reserveCapacity(512)
    }

    /// The framing chosen for a response body.
    enum Framing { case length(Int), chunked, untilClose, none }

    /// Writes status line and headers into `out`, adding Date, Server, Content-Length or Transfer-Encoding, and
    /// Connection. Framing headers set by the handler are replaced.
    static func serializeHead(
        _ r: HTTPResponse, framing: Framing, keepAlive: Bool, requestVersion: HTTPVersion, serverName: [UInt8]?,
        into out: inout [UInt8]
    ) {
        if r.status == .ok {
            out.append(contentsOf: statusLineOK)
        } else {
            out.append(contentsOf: "HTTP/1.1 \(r.status.code) \(r.status.reason)\r\n".utf8)
        }
        out.append(contentsOf: "Date: ".utf8)
        out.append(contentsOf: HTTPDate.now)
        out.append(contentsOf: [13, 10])
        if let s = serverName {
            out.append(contentsOf: "Server: ".utf8)
            out.append(contentsOf: s)
            out.append(contentsOf: [13, 10])
        }
        for f in r.headers {
            if f.name.equalsIgnoringASCIICase("Content-Length") || f.name.equalsIgnoringASCIICase("Transfer-Encoding")
                || f.name.equalsIgnoringASCIICase("Connection")
            { continue }
            // Handlers must not be able to split the response with CR/LF in a header.
            if f.name.utf8.contains(where: { $0 < 0x21 || $0 == 58 }) || f.value.utf8.contains(where: { $0 == 13 || $0 == 10 }) {
                continue
            }
            out.append(contentsOf: f.name.utf8)
            out.append(contentsOf: [58, 32])
            out.append(contentsOf: f.value.utf8)
            out.append(contentsOf: [13, 10])
        }
        switch framing {
        case .length(let n): out.append(contentsOf: "Content-Length: \(n)\r\n".utf8)
        case .chunked: out.append(contentsOf: "Transfer-Encoding: chunked\r\n".utf8)
        case .untilClose, .none: break
        }
        if !keepAlive {
            out.append(contentsOf: "Connection: close\r\n".utf8)
        } else if requestVersion.minor == 0 {
            out.append(contentsOf: "Connection: keep-alive\r\n".utf8)
        }
        out.append(contentsOf: [13, 10])
    }

    private static let statusLineOK = Array("HTTP/1.1 200 OK\r\n".utf8)

    /// Status codes whose responses never carry a body (RFC 9110 section 6.4.1).
    static func forbidsBody(_ code: Int) -> Bool { code < 200 || code == 204 || code == 304 }

    /// A complete in-memory response (for bodies of bytes), used by the event loop for its own answers.
    static func serialize(
        _ r: HTTPResponse, keepAlive: Bool, requestVersion: HTTPVersion, isHead: Bool, serverName: [UInt8]?
    ) -> [UInt8] {
        var out: [UInt8] = []
        let body: [UInt8]
        switch r.body {
        case .bytes(let b): body = b
        default: body = []
        }
        let noBody = forbidsBody(r.status.code)
        serializeHead(r, framing: noBody ? .none : .length(body.count), keepAlive: keepAlive, requestVersion: requestVersion,
                      serverName: serverName, into: &out)
        if !isHead && !noBody { out.append(contentsOf: body) }
        return out
    }

    private struct OpenFile {
        let fd: Int32
        let size: Int
        let path: String
        let deleteAfter: Bool
    }

    private static func openFile(_ path: String, deleteAfter: Bool) -> OpenFile? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG else {
            close(fd)
            return nil
        }
        return OpenFile(fd: fd, size: Int(st.st_size), path: path, deleteAfter: deleteAfter)
    }

    /// Writes `response` on `conn` (blocking, worker side). Returns whether the connection is still usable, the
    /// status actually sent and the body bytes sent.
    mutating func write(
        _ response: HTTPResponse, on conn: Connection, requestVersion: HTTPVersion, isHead: Bool, keepAlive: Bool,
        onError: (String) -> Void
    ) -> (ok: Bool, status: Int, bytes: Int) {
        var r = response
        var keepAlive = keepAlive
        // Open files first so a missing file still gets a proper status.
        var files: [OpenFile] = []
        var segments: [HTTPBodySegment] = []
        var failed = false
        switch r.body {
        case .file(let path, let del):
            if let f = Self.openFile(path, deleteAfter: del) { files.append(f) } else { failed = true; onError("Cannot open response file \(path)") }
            segments = [.file(path: path, deleteAfter: del)]
        case .segments(let segs):
            segments = segs
            for s in segs {
                if case .file(let path, let del) = s {
                    if let f = Self.openFile(path, deleteAfter: del) { files.append(f) } else { failed = true; onError("Cannot open response file \(path)") }
                }
            }
        case .empty, .bytes, .stream:
            break
        }
        defer {
            for f in files {
                close(f.fd)
                if f.deleteAfter { unlink(f.path) }
            }
            for case .file(let path, true) in segments where !files.contains(where: { $0.path == path }) { unlink(path) }
        }
        if failed { r = .text("Internal Server Error", status: .internalServerError) }

        let noBody = Self.forbidsBody(r.status.code)
        let framing: Framing
        switch r.body {
        case _ where noBody: framing = .none
        case .empty: framing = .length(0)
        case .bytes(let b): framing = .length(b.count)
        case .file: framing = .length(files.first?.size ?? 0)
        case .segments(let segs):
            var total = 0
            var fi = 0
            for s in segs {
                switch s {
                case .bytes(let b): total += b.count
                case .file:
                    total += files[fi].size
                    fi += 1
                }
            }
            framing = .length(total)
        case .stream:
            if requestVersion.minor >= 1 {
                framing = .chunked
            } else {
                framing = .untilClose
                keepAlive = false
            }
        }
        head.removeAll(keepingCapacity: true)
        Self.serializeHead(r, framing: framing, keepAlive: keepAlive, requestVersion: requestVersion, serverName: serverName, into: &head)
        let timeout = timeoutMs
        if isHead || noBody {
            let ok = head.withUnsafeBytes { conn.writeBlocking([$0], timeoutMs: timeout) }
            return (ok && keepAlive, r.status.code, 0)
        }
        var sent = 0
        var ok = true
        switch r.body {
        case .empty:
            ok = head.withUnsafeBytes { conn.writeBlocking([$0], timeoutMs: timeout) }
        case .bytes(let b):
            ok = head.withUnsafeBytes { h in b.withUnsafeBytes { conn.writeBlocking([h, $0], timeoutMs: timeout) } }
            sent = b.count
        case .file:
            ok = head.withUnsafeBytes { conn.writeBlocking([$0], timeoutMs: timeout) }
                && conn.sendFileBlocking(files[0].fd, count: files[0].size, scratch: &scratch, timeoutMs: timeout)
            sent = files[0].size
        case .segments(let segs):
            ok = head.withUnsafeBytes { conn.writeBlocking([$0], timeoutMs: timeout) }
            var fi = 0
            for s in segs where ok {
                switch s {
                case .bytes(let b):
                    ok = b.withUnsafeBytes { conn.writeBlocking([$0], timeoutMs: timeout) }
                    sent += b.count
                case .file:
                    ok = conn.sendFileBlocking(files[fi].fd, count: files[fi].size, scratch: &scratch, timeoutMs: timeout)
                    sent += files[fi].size
                    fi += 1
                }
            }
        case .stream(let stream):
            ok = head.withUnsafeBytes { conn.writeBlocking([$0], timeoutMs: timeout) }
            let chunked = framing == .chunked
            while ok {
                let chunk: [UInt8]?
                do {
                    chunk = try stream.next()
                } catch {
                    // Headers are gone already: the only honest signal left is an aborted body.
                    onError("Response stream failed: \(error)")
                    return (false, r.status.code, sent)
                }
                guard let c = chunk else { break }
                if c.isEmpty { continue }
                if chunked {
                    let size = Array((String(c.count, radix: 16) + "\r\n").utf8)
                    ok = size.withUnsafeBytes { s in c.withUnsafeBytes { b in
                        [UInt8]([13, 10]).withUnsafeBytes { conn.writeBlocking([s, b, $0], timeoutMs: timeout) } } }
                } else {
                    ok = c.withUnsafeBytes { conn.writeBlocking([$0], timeoutMs: timeout) }
                }
                sent += c.count
            }
            if ok && chunked {
                ok = [UInt8]("0\r\n\r\n".utf8).withUnsafeBytes { conn.writeBlocking([$0], timeoutMs: timeout) }
            }
        }
        return (ok && keepAlive, r.status.code, sent)
    }
}

extension ResponseWriter.Framing: Equatable {}
