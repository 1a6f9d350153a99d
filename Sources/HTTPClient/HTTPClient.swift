import Foundation
import OpenSSLKit

/// A small blocking HTTP/1.1 client over POSIX sockets, HTTPS through OpenSSL. One connection per request
/// (`Connection: close`): the callers (a PACS, a few requests per user action) gain nothing from pooling
/// that would be worth its failure modes. Safe to share between threads.
public final class HTTPClient: Sendable {
    public let configuration: HTTPClientConfiguration
    private let tlsContext: TLSClientContextBox

    public init(configuration: HTTPClientConfiguration = HTTPClientConfiguration()) {
        self.configuration = configuration
        tlsContext = TLSClientContextBox(configuration)
    }

    /// Sends one request and reads the whole response. HTTP error statuses are returned, not thrown; throws
    /// `HTTPClientError` when the exchange itself fails (refused, timed out, malformed, cut short).
    public func send(method: String, url: URL, headers: HTTPHeaders = HTTPHeaders(), body: [UInt8] = [])
        throws -> HTTPClientResponse
    {
        let target = try HTTPClientTarget(url)
        let tls = target.secure ? try tlsContext.get() : nil
        let conn = try Connection(host: target.host, port: target.port, tls: tls,
                                  connectTimeout: configuration.connectTimeout, ioTimeout: configuration.readTimeout)
        try conn.write(Self.requestHead(method: method, target: target, headers: headers, bodyCount: body.count) + body)
        var parser = HTTPResponseParser(requestMethod: method, maxBodyBytes: configuration.maxResponseBytes)
        var buf = [UInt8](repeating: 0, count: 256 * 1024)
        while true {
            let n = try conn.read(into: &buf)
            if n == 0 {
                try parser.finish()
                break
            }
            if try parser.feed(buf[0..<n]) { break }
        }
        guard let response = parser.response else {
            throw HTTPClientError(.malformedResponse, "incomplete response from \(target.host)")
        }
        return response
    }

    /// Sends one request whose body is `bodyFile` (read from disk in chunks, never whole) or `body`, and returns
    /// once the response head has arrived; the body is then read chunk by chunk from the returned stream. For
    /// relaying large responses (a DICOM series) without holding them. Throws as `send`.
    public func stream(method: String, url: URL, headers: HTTPHeaders = HTTPHeaders(), body: [UInt8] = [],
                       bodyFile: (path: String, length: Int)? = nil) throws -> HTTPClientStream
    {
        let target = try HTTPClientTarget(url)
        let tls = target.secure ? try tlsContext.get() : nil
        let conn = try Connection(host: target.host, port: target.port, tls: tls,
                                  connectTimeout: configuration.connectTimeout, ioTimeout: configuration.readTimeout)
        let length = bodyFile?.length ?? body.count
        try conn.write(Self.requestHead(method: method, target: target, headers: headers, bodyCount: length) + body)
        if let file = bodyFile {
            guard let handle = FileHandle(forReadingAtPath: file.path) else {
                throw HTTPClientError(.connectionClosed, "request body file could not be opened")
            }
            defer { try? handle.close() }
            var sent = 0
            while sent < file.length {
                let chunk = try handle.read(upToCount: min(256 * 1024, file.length - sent)) ?? Data()
                if chunk.isEmpty { throw HTTPClientError(.connectionClosed, "request body file ended early") }
                try conn.write(Array(chunk))
                sent += chunk.count
            }
        }
        let stream = HTTPClientStream(connection: conn, parser: HTTPResponseParser(
            requestMethod: method, maxBodyBytes: .max), host: target.host)
        try stream.readHead()
        return stream
    }

    public func get(_ url: URL, headers: HTTPHeaders = HTTPHeaders()) throws -> HTTPClientResponse {
        try send(method: "GET", url: url, headers: headers)
    }

    public func post(_ url: URL, headers: HTTPHeaders = HTTPHeaders(), body: [UInt8]) throws
        -> HTTPClientResponse
    {
        try send(method: "POST", url: url, headers: headers, body: body)
    }

    /// The request line and headers. Host, Content-Length, Connection and (for credentials in the URL)
    /// Authorization are added unless the caller set them.
    static func requestHead(method: String, target: HTTPClientTarget, headers: HTTPHeaders, bodyCount: Int)
        -> [UInt8]
    {
        var h = headers
        if !h.contains("Host") { h.add("Host", target.hostHeader) }
        if !h.contains("Authorization"), let u = target.userInfo {
            h.add("Authorization", basicAuthorization(user: u.user, password: u.password))
        }
        if bodyCount > 0 || ["POST", "PUT", "PATCH"].contains(method.uppercased()) {
            h.replace("Content-Length", String(bodyCount))
        }
        if !h.contains("Connection") { h.add("Connection", "close") }
        if !h.contains("User-Agent") { h.add("User-Agent", "monailabel-swift") }
        var text = "\(method) \(target.pathAndQuery) HTTP/1.1\r\n"
        for (n, v) in h where !n.contains("\r") && !n.contains("\n") && !v.contains("\r") && !v.contains("\n") {
            text += "\(n): \(v)\r\n"
        }
        text += "\r\n"
        return Array(text.utf8)
    }
}

/// A response whose body is read as it arrives (`HTTPClient.stream`). The connection closes when the body ends
/// or the stream is released. One reader at a time.
public final class HTTPClientStream: @unchecked Sendable {
    private var connection: Connection?
    private var parser: HTTPResponseParser
    private let host: String
    private var buf = [UInt8](repeating: 0, count: 256 * 1024)
    public private(set) var status = 0
    public private(set) var reason = ""
    public private(set) var headers = HTTPHeaders()

    init(connection: Connection, parser: HTTPResponseParser, host: String) {
        self.connection = connection
        self.parser = parser
        self.host = host
    }

    func readHead() throws {
        while parser.head == nil {
            guard try pump() else { break }
        }
        guard let head = parser.head else {
            throw HTTPClientError(.malformedResponse, "incomplete response from \(host)")
        }
        (status, reason, headers) = head
    }

    /// Reads one socket read's worth; false at end of stream.
    private func pump() throws -> Bool {
        guard let conn = connection else { return false }
        let n = try conn.read(into: &buf)
        if n == 0 {
            try parser.finish()
            connection = nil
            return false
        }
        if try parser.feed(buf[0..<n]) { connection = nil }
        return true
    }

    /// The next piece of the body (possibly empty), or nil once it is complete. Throws when the connection
    /// fails or ends before the body does.
    public func next() throws -> [UInt8]? {
        while true {
            let chunk = parser.drainBody()
            if !chunk.isEmpty { return chunk }
            if parser.isComplete { return nil }
            guard try pump() else {
                let rest = parser.drainBody()
                return rest.isEmpty ? nil : rest
            }
        }
    }
}

/// Creates the TLS context on first HTTPS use (plain-HTTP clients never touch OpenSSL) and keeps it.
final class TLSClientContextBox: @unchecked Sendable {
    private let lock = NSLock()
    private let config: HTTPClientConfiguration
    private var context: TLSClientContext?

    init(_ config: HTTPClientConfiguration) { self.config = config }

    func get() throws -> TLSClientContext {
        lock.lock()
        defer { lock.unlock() }
        if let c = context { return c }
        let c: TLSClientContext
        do {
            c = try TLSClientContext(verify: config.verifyCertificates, caFile: config.caFile)
        } catch {
            throw HTTPClientError(.tls, "\(error)")
        }
        context = c
        return c
    }
}
