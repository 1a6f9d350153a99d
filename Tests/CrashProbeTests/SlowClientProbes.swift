import Foundation
import Testing
import TestSupport

/// Slow and stalled clients against the real binary (issue 14 part 4): they must not delay `/info/` past 100 ms,
/// and the server must serve a normal inference afterwards. Traffic goes only to 127.0.0.1; every socket is closed
/// when its probe ends.
@Suite(.serialized) struct SlowClientProbes {
    @Test func thousandSlowReaders_ofADatastoreImage_doNotDelayInfo() throws {
        let s = try ProbeServer()
        try #require(raiseOwnFileLimit() >= 1_200, "the test process cannot open 1,000 sockets")
        var readers: [ProbeSocket] = []
        for _ in 0..<1_000 {
            // A 4 KiB receive window and no reads: the server can only write as fast as nothing.
            let c = try ProbeSocket(port: s.port, receiveBuffer: 4096)
            try c.send("GET /datastore/image?image=spleen_00 HTTP/1.1\r\nHost: probe\r\n\r\n")
            readers.append(c)
        }
        // Until every reader has the start of its response, these are just 1,000 concurrent requests; from then
        // on they are what the probe is about: responses the server cannot get rid of.
        #expect(ProbeSocket.waitUntilReadable(readers, seconds: 30), "not every reader got the start of its response")
        let millis = try (0..<5).map { _ in try timedInfo(port: s.port) }
        #expect(median(millis) <= 100, "/info/ took \(millis) ms beside 1,000 slow readers")
        readers.removeAll()
        try s.expectAlive("1,000 slow readers")
    }

    @Test func tenThousandIdleHalfSentBodies_doNotDelayInfo() throws {
        let s = try ProbeServer()
        // The figure; the test process needs a descriptor for each.
        let count = min(10_000, raiseOwnFileLimit() - 512)
        try #require(count >= 10_000, "the test process's open-file limit is too low for 10,000 sockets")
        var stalled: [ProbeSocket] = []
        stalled.reserveCapacity(count)
        var millis: [Double] = []
        let rssBefore = residentMegabytes(pid: s.pid)
        for i in 0..<count {
            let c = try ProbeSocket(port: s.port)
            // Headers and 3 bytes of a body that never comes.
            try c.send("POST /activelearning/random HTTP/1.1\r\nHost: probe\r\nContent-Type: application/json\r\n"
                       + "Content-Length: 1000000\r\n\r\n{\"a")
            stalled.append(c)
            if i % 2_500 == 2_499 { millis.append(try timedInfo(port: s.port)) }
        }
        millis += try (0..<5).map { _ in try timedInfo(port: s.port) }
        #expect(median(millis) <= 100, "/info/ took \(millis) ms beside \(count) half-sent bodies")
        #expect(millis.max() ?? 0 <= 1_000, "/info/ took \(millis) ms beside \(count) half-sent bodies")
        // Each stalled connection costs a socket and a few KiB, not a read buffer or a reserved body.
        let grown = residentMegabytes(pid: s.pid) - rssBefore
        #expect(grown <= 200, "the server grew by \(grown) MB holding \(count) half-sent bodies")
        stalled.removeAll()
        try s.expectAlive("10,000 idle half-sent bodies")
    }

    @Test func oversizedJSONBody_andTextFields_get413NamingTheLimit() throws {
        let s = try ProbeServer()
        let dir = TempDir()
        // 9 MiB of JSON (the limit is 8 MiB) and, for the form, nine 1 MiB text fields.
        let json = dir.write("big.json", Array(("{\"a\": \"" + String(repeating: "x", count: 9 << 20) + "\"}").utf8))
        let r = try s.curl("POST", "/activelearning/random", ["-H", "Content-Type: application/json", "--data-binary", "@\(json.path)"])
        #expect(r.status == 413, "\(r.status) \(r.body.prefix(200))")
        #expect(detail(r.body).contains("\(8 << 20) bytes"), "\(r.body.prefix(200))")
        let field = dir.write("field.txt", Array(String(repeating: "y", count: 1 << 20).utf8))
        let fields = (0..<9).flatMap { ["-F", "f\($0)=<\(field.path)"] }
        let f = try s.curl("PUT", "/datastore/label?image=spleen_00", fields)
        #expect(f.status == 413, "\(f.status) \(f.body.prefix(200))")
        #expect(detail(f.body).contains("\(8 << 20) bytes"), "\(f.body.prefix(200))")
        try s.expectAlive("oversized JSON body and form fields")
    }
}

/// Raises this process's soft open-file limit to the hard limit; returns the soft limit in force.
func raiseOwnFileLimit() -> Int {
    var rl = rlimit()
    guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl) == 0 else { return 1024 }
    if rl.rlim_cur < rl.rlim_max {
        rl.rlim_cur = min(rl.rlim_max, 1 << 20)
        _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl)
        _ = getrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl)
    }
    return Int(clamping: min(rl.rlim_cur, 1 << 24))
}

/// A process's resident set in MB (0 when it cannot be read).
func residentMegabytes(pid: Int32) -> Int {
    guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
          let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
          let kb = Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
    else { return 0 }
    return kb / 1024
}

func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    return sorted.isEmpty ? 0 : sorted[sorted.count / 2]
}

/// One loopback TCP connection that writes raw bytes (curl would need a process per connection).
final class ProbeSocket {
    let fd: Int32

    /// `receiveBuffer` sets `SO_RCVBUF` before connecting.
    init(port: Int, receiveBuffer: Int32? = nil, timeoutSeconds: Int = 10) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ProbeError("socket: \(String(cString: strerror(errno)))") }
        var tv = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        if var size = receiveBuffer { setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size)) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = UInt16(port).bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else {
            let e = String(cString: strerror(errno))
            close(fd)
            throw ProbeError("connect: \(e)")
        }
    }

    deinit { close(fd) }

    /// Waits (without reading) until every socket has bytes to read; false after `seconds`.
    static func waitUntilReadable(_ sockets: [ProbeSocket], seconds: Double) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        var waiting = sockets.map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
        while !waiting.isEmpty && Date() < deadline {
            _ = poll(&waiting, nfds_t(waiting.count), 100)
            waiting = waiting.filter { $0.revents == 0 }.map { pollfd(fd: $0.fd, events: $0.events, revents: 0) }
        }
        return waiting.isEmpty
    }

    func send(_ s: String) throws {
        let bytes = Array(s.utf8)
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + off, $0.count - off, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { throw ProbeError("send: \(String(cString: strerror(errno)))") }
            off += n
        }
    }

    /// Everything until the server closes (bounded by the receive timeout and 16 MiB).
    func readToEnd() throws -> [UInt8] {
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while out.count < 16 << 20 {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
            if n == 0 { return out }
            if n < 0 { throw ProbeError("recv: \(String(cString: strerror(errno)))") }
            out += buf[0..<n]
        }
        return out
    }
}

/// A fresh connection's `GET /info/`, connect to last byte, in milliseconds; throws unless it is a 200.
func timedInfo(port: Int) throws -> Double {
    let started = Date()
    let c = try ProbeSocket(port: port)
    try c.send("GET /info/ HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")
    let response = try c.readToEnd()
    let ms = Date().timeIntervalSince(started) * 1000
    guard response.starts(with: Array("HTTP/1.1 200".utf8)) else {
        throw ProbeError("/info/ answered \(String(decoding: response.prefix(200), as: UTF8.self))")
    }
    return ms
}
