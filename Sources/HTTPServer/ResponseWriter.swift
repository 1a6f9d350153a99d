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

/// Turns an `HTTPResponse` into bytes on the wire (the writing itself is `OutgoingResponse`'s).
enum ResponseWriter {
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
}

extension ResponseWriter.Framing: Equatable {}
