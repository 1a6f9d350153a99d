import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A local HTTP/1.1 server for the download tests (pretrained weights, MONAI zoo bundles): answers `content(path)`
/// (404 when nil), honours `Range: bytes=N-` with a 206, cuts its first `cutResponses` answers to paths that
/// `cuttable` admits after `cutAfter` body bytes (a connection lost mid-download), and records every request head.
final class DownloadTestServer: @unchecked Sendable {
    let port: Int
    private let fd: Int32
    private let content: @Sendable (String) -> [UInt8]?
    private let cuttable: @Sendable (String) -> Bool
    private let lock = NSLock()
    private var heads: [String] = []
    private var cutsLeft: Int
    private let cutAfter: Int

    init(cutResponses: Int = 0, cutAfter: Int = 0, cuttable: @escaping @Sendable (String) -> Bool = { _ in true },
         content: @escaping @Sendable (String) -> [UInt8]?) throws {
        self.content = content
        self.cuttable = cuttable
        cutsLeft = cutResponses
        self.cutAfter = cutAfter
        let sock = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { s in
                bind(sock, s, len) == 0 && listen(sock, 16) == 0 && getsockname(sock, s, &len) == 0
            }
        }
        guard sock >= 0, bound else { throw CocoaError(.fileWriteUnknown) }
        fd = sock
        port = Int(UInt16(bigEndian: addr.sin_port))
        Thread { [self] in
            while true {
                let c = accept(fd, nil, nil)
                if c < 0 { return }
                serve(c)
                close(c)
            }
        }.start()
    }

    /// The pretrained-weights stand-in: `body` at every path but `*/missing.pt`; any answer may be cut.
    convenience init(body: [UInt8], cutResponses: Int = 0, cutAfter: Int = 0) throws {
        try self.init(cutResponses: cutResponses, cutAfter: cutAfter) { $0.hasSuffix("/missing.pt") ? nil : body }
    }

    /// The MONAI zoo stand-in (`MONAI_ZOO_BASE_URL`): the bodies of `routes` by exact path; only archive downloads
    /// (`.zip`, GitHub's `/zip`) are cut.
    convenience init(routes: [String: [UInt8]], cutResponses: Int = 0, cutAfter: Int = 0) throws {
        try self.init(cutResponses: cutResponses, cutAfter: cutAfter,
                      cuttable: { $0.hasSuffix(".zip") || $0.hasSuffix("/zip") }, content: { routes[$0] })
    }

    var base: String { "http://127.0.0.1:\(port)" }

    var requests: [String] {
        lock.lock()
        defer { lock.unlock() }
        return heads
    }

    /// The request lines' paths, in order.
    var paths: [String] { requests.map { String($0.split(separator: " ").dropFirst().first ?? "") } }

    func stop() {
        shutdown(fd, Int32(SHUT_RDWR))
        close(fd)
    }

    private func send(_ c: Int32, _ bytes: ArraySlice<UInt8>) {
        var off = bytes.startIndex
        while off < bytes.endIndex {
            let n = bytes[off...].withUnsafeBytes { Glibc.send(c, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            off += n
        }
    }

    private func serve(_ c: Int32) {
        // One connection at a time: a client that stalls must not hold the others off for ever.
        var timeout = timeval(tv_sec: 60, tv_usec: 0)
        setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var head: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while !head.suffix(4).elementsEqual([13, 10, 13, 10]) && head.count < 65536 {
            let n = read(c, &buf, buf.count)
            if n <= 0 { return }
            head += buf[0..<n]
        }
        let text = String(decoding: head, as: UTF8.self)
        let path = String(text.split(separator: " ").dropFirst().first ?? "")
        lock.lock()
        heads.append(text)
        let cut = cuttable(path) && cutsLeft > 0
        if cut { cutsLeft -= 1 }
        lock.unlock()
        guard let body = content(path) else {
            send(c, Array("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".utf8)[...])
            return
        }
        var start = 0
        if let r = text.range(of: "Range: bytes=") { start = min(body.count, Int(text[r.upperBound...].prefix { $0.isNumber }) ?? 0) }
        var h = "HTTP/1.1 \(start > 0 ? "206 Partial Content" : "200 OK")\r\nContent-Length: \(body.count - start)\r\nConnection: close\r\n"
        if start > 0 { h += "Content-Range: bytes \(start)-\(body.count - 1)/\(body.count)\r\n" }
        send(c, Array((h + "\r\n").utf8)[...])
        send(c, cut ? body[start..<min(body.count, start + cutAfter)] : body[start...])
    }
}
