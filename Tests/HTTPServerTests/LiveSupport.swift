import Foundation
import TestSupport
import HTTPServer

/// A server on 127.0.0.1 with an ephemeral port, stopped when released.
final class LiveServer: @unchecked Sendable {
    let server: HTTPServer
    let port: Int
    let logLines = LockedList<HTTPAccessLogEntry>()

    init(
        host: String = "127.0.0.1", tls: TLSConfiguration? = nil,
        configure: (inout HTTPServerConfiguration) -> Void = { _ in },
        routerOptions: HTTPRouter.Options = HTTPRouter.Options(),
        routes: (inout HTTPRouter) -> Void = LiveServer.standardRoutes
    ) throws {
        var config = HTTPServerConfiguration(host: host, port: 0, tls: tls)
        config.workerCount = 2
        let log = logLines
        config.accessLog = { log.append($0) }
        configure(&config)
        var router = HTTPRouter(options: routerOptions)
        routes(&router)
        server = HTTPServer(configuration: config, router: router)
        try server.start()
        guard let p = server.port else { throw HTTPError(.internalServerError, "no port") }
        port = p
    }

    deinit {
        server.shutdown(gracePeriod: 0)
        server.wait()
    }

    /// Routes most live tests use.
    static func standardRoutes(_ r: inout HTTPRouter) {
        r.get("/hello") { _ in .text("hello") }
        r.post("/echo") { req in
            var resp = HTTPResponse.bytes(try req.bodyBytes(limit: 1 << 30), contentType: "application/octet-stream")
            if case .file = req.body { resp.headers.add("X-Body-Kind", "file") } else { resp.headers.add("X-Body-Kind", "memory") }
            return resp
        }
        r.put("/echo") { req in .text("\(req.body.count)") }
        r.post("/form") { req in
            let form = try req.form()
            var lines = form.fields.map { "field \($0.name)=\($0.value)" }
            for f in form.files {
                let size = (try? FileManager.default.attributesOfItem(atPath: f.path)[.size] as? Int) ?? -1
                lines.append("file \(f.fieldName) \(f.filename) \(f.contentType ?? "-") \(f.size) \(size)")
            }
            return .text(lines.joined(separator: "\n"))
        }
        r.get("/query") { req in .text(req.query.map { "\($0.name)=\($0.value)" }.joined(separator: ";")) }
        r.get("/stream") { _ in HTTPResponse(body: .stream(CountingStream(chunks: 5))) }
    }
}

/// Emits `chunks` chunks "chunk-0" ... then ends.
final class CountingStream: HTTPBodyStream, @unchecked Sendable {
    private let lock = NSLock()
    private var next_ = 0
    let chunks: Int
    init(chunks: Int) { self.chunks = chunks }
    func next() throws -> [UInt8]? {
        lock.lock()
        defer { lock.unlock() }
        guard next_ < chunks else { return nil }
        next_ += 1
        return Array("chunk-\(next_ - 1);".utf8)
    }
}

final class LockedList<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [T] = []
    func append(_ t: T) {
        lock.lock()
        items.append(t)
        lock.unlock()
    }
    var all: [T] {
        lock.lock()
        defer { lock.unlock() }
        return items
    }
}

struct RawResponse {
    var status: Int
    var reason: String
    var headers: HTTPHeaders
    var body: [UInt8]
    var text: String { String(decoding: body, as: UTF8.self) }
}

struct ClientError: Error, CustomStringConvertible {
    let description: String
}

/// A blocking TCP client that speaks raw bytes, with a receive timeout so a broken server fails the test.
final class RawClient {
    let fd: Int32
    private var pending: [UInt8] = []

    /// `receiveBuffer` sets `SO_RCVBUF` before connecting (a tiny one makes a slow reader).
    init(port: Int, ipv6: Bool = false, timeoutSeconds: Int = 10, receiveBuffer: Int32? = nil) throws {
        fd = socket(ipv6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ClientError(description: "socket failed: \(String(cString: strerror(errno)))") }
        var tv = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        if var size = receiveBuffer {
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        var rc: Int32
        if ipv6 {
            var addr = sockaddr_in6()
            addr.sin6_family = sa_family_t(AF_INET6)
            addr.sin6_port = UInt16(port).bigEndian
            addr.sin6_addr = in6addr_loopback
            rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) } }
        } else {
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = UInt16(port).bigEndian
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        }
        guard rc == 0 else {
            close(fd)
            throw ClientError(description: "connect failed: \(String(cString: strerror(errno)))")
        }
    }

    deinit { close(fd) }

    func send(_ s: String) throws { try send(Array(s.utf8)) }

    func send(_ bytes: [UInt8]) throws {
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + off, $0.count - off, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { throw ClientError(description: "send failed: \(String(cString: strerror(errno)))") }
            off += n
        }
    }

    /// Reads more bytes; false at EOF (or reset).
    private func fill() throws -> Bool {
        // Small reads keep `pending` short, so consuming from its front stays cheap.
        var buf = [UInt8](repeating: 0, count: 4096)
        let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
        if n > 0 {
            pending += buf[0..<n]
            return true
        }
        if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { throw ClientError(description: "receive timed out") }
        return false
    }

    private func line() throws -> String {
        var scanned = 0
        while true {
            if let i = pending[scanned...].firstIndex(of: 10), i > 0, pending[i - 1] == 13 {
                let l = String(decoding: pending[0..<(i - 1)], as: UTF8.self)
                pending.removeFirst(i + 1)
                return l
            }
            scanned = pending.count
            guard try fill() else { throw ClientError(description: "connection closed mid-line") }
        }
    }

    private func take(_ n: Int) throws -> [UInt8] {
        while pending.count < n {
            guard try fill() else { throw ClientError(description: "connection closed mid-body") }
        }
        let out = Array(pending[0..<n])
        pending.removeFirst(n)
        return out
    }

    /// Reads one response (interim 1xx responses are returned too). `noBody` for HEAD requests.
    func readResponse(noBody: Bool = false) throws -> RawResponse {
        let statusLine = try line()
        let parts = statusLine.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, parts[0] == "HTTP/1.1", let status = Int(parts[1]) else {
            throw ClientError(description: "bad status line \(statusLine)")
        }
        var headers = HTTPHeaders()
        while true {
            let l = try line()
            if l.isEmpty { break }
            guard let colon = l.firstIndex(of: ":") else { throw ClientError(description: "bad header \(l)") }
            headers.add(String(l[..<colon]), String(l[l.index(after: colon)...]).trimmingCharacters(in: .whitespaces))
        }
        var body: [UInt8] = []
        if noBody || status < 200 || status == 204 || status == 304 {
        } else if headers["Transfer-Encoding"] == "chunked" {
            while true {
                let sizeLine = try line()
                guard let size = Int(sizeLine.split(separator: ";").first.map(String.init) ?? "", radix: 16) else {
                    throw ClientError(description: "bad chunk size \(sizeLine)")
                }
                if size == 0 {
                    while try !line().isEmpty {}
                    break
                }
                body += try take(size)
                _ = try take(2)
            }
        } else if let cl = headers["Content-Length"].flatMap({ Int($0) }) {
            body = try take(cl)
        } else {
            while try fill() {}
            body = pending
            pending = []
        }
        return RawResponse(status: status, reason: parts.count > 2 ? String(parts[2]) : "", headers: headers, body: body)
    }

    /// The first client with bytes (or EOF) to read within the timeout, or nil.
    static func firstReadable(_ clients: [RawClient], timeoutMs: Int32) -> RawClient? {
        if let c = clients.first(where: { !$0.pending.isEmpty }) { return c }
        var fds = clients.map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
        guard poll(&fds, nfds_t(fds.count), timeoutMs) > 0 else { return nil }
        return zip(clients, fds).first { $0.1.revents != 0 }?.0
    }

    /// True when the server closed the connection (EOF) with nothing more to read.
    func isClosedByServer() throws -> Bool {
        if !pending.isEmpty { return false }
        return try !fill()
    }
}

/// Runs a command line; returns exit status and combined output. Under `timeout` (TestSupport's `bounded`), so a
/// hung command is killed instead of holding the run.
@discardableResult
func runProcess(_ args: [String], input: Data? = nil, environment: [String: String]? = nil) throws -> (status: Int32, output: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/timeout")
    p.arguments = bounded("/usr/bin/env", args)
    if let environment { p.environment = environment }
    let out = Pipe()
    p.standardOutput = out
    p.standardError = out
    let inPipe = Pipe()
    p.standardInput = inPipe
    try p.run()
    if let input { inPipe.fileHandleForWriting.write(input) }
    try inPipe.fileHandleForWriting.close()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    return (exitStatus(of: p), String(decoding: data, as: UTF8.self))
}

func toolExists(_ name: String) -> Bool {
    (try? runProcess(["sh", "-c", "command -v \(name)"]).status) == 0
}

func temporaryDirectory() throws -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("httptest-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}
