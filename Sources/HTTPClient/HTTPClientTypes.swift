import Foundation

/// Timeouts and TLS settings of an `HTTPClient`.
public struct HTTPClientConfiguration: Sendable {
    /// Seconds to establish the TCP connection (and the TLS handshake's first bytes).
    public var connectTimeout: Double
    /// Seconds any single read or write may block; a silent server fails the request after this.
    public var readTimeout: Double
    /// Check the server's certificate chain and host name (HTTPS only).
    public var verifyCertificates: Bool
    /// PEM file of trusted CAs instead of the system store.
    public var caFile: String?
    /// Responses larger than this fail with `.responseTooLarge` rather than exhausting memory.
    public var maxResponseBytes: Int

    public init(connectTimeout: Double = 10, readTimeout: Double = 60, verifyCertificates: Bool = true,
                caFile: String? = nil, maxResponseBytes: Int = 8 << 30) {
        self.connectTimeout = connectTimeout
        self.readTimeout = readTimeout
        self.verifyCertificates = verifyCertificates
        self.caFile = caFile
        self.maxResponseBytes = maxResponseBytes
    }
}

/// Why a request failed before a complete response arrived. HTTP error statuses are not errors here: they
/// come back as responses.
public struct HTTPClientError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case invalidURL
        /// The host name does not resolve.
        case cannotResolve
        /// Nothing listens on the port.
        case connectionRefused
        /// The connection was not established in time.
        case connectTimeout
        /// No route to the host.
        case unreachable
        /// The TLS handshake or certificate check failed.
        case tls
        /// The server sent nothing for longer than the read timeout.
        case readTimeout
        /// The server closed the connection before the response was complete.
        case connectionClosed
        /// The response is not valid HTTP/1.1.
        case malformedResponse
        case responseTooLarge
        case io
    }

    public let kind: Kind
    public let message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }

    /// True when no connection could be made at all: the request certainly did not reach the server, so
    /// retrying it is safe even when it is not idempotent.
    public var isConnectFailure: Bool {
        [.cannotResolve, .connectionRefused, .connectTimeout, .unreachable].contains(kind)
    }
}

/// A complete response.
public struct HTTPClientResponse: Sendable {
    public var status: Int
    public var reason: String
    public var headers: HTTPHeaders
    public var body: [UInt8]

    public init(status: Int, reason: String, headers: HTTPHeaders, body: [UInt8]) {
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
    }

    /// The body as UTF-8 text (lossy), for messages.
    public var text: String { String(decoding: body, as: UTF8.self) }
}

/// The parts of an `http(s)://` URL a request needs.
public struct HTTPClientTarget: Sendable, Equatable {
    public var secure: Bool
    public var host: String
    public var port: Int
    /// Path and query, starting with "/".
    public var pathAndQuery: String
    /// `user:password` given in the URL, if any.
    public var userInfo: (user: String, password: String)?

    public init(_ url: URL) throws {
        guard let c = URLComponents(url: url, resolvingAgainstBaseURL: false), let scheme = c.scheme?.lowercased(),
              scheme == "http" || scheme == "https", let host = c.host, !host.isEmpty
        else { throw HTTPClientError(.invalidURL, "not an http(s) URL: \(url.absoluteString)") }
        secure = scheme == "https"
        self.host = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        port = c.port ?? (secure ? 443 : 80)
        let path = c.percentEncodedPath.isEmpty ? "/" : c.percentEncodedPath
        pathAndQuery = c.percentEncodedQuery.map { path + "?" + $0 } ?? path
        if let u = c.user { userInfo = (u.removingPercentEncoding ?? u, (c.password ?? "").removingPercentEncoding ?? "") }
    }

    /// The `Host` header value.
    public var hostHeader: String {
        let h = host.contains(":") ? "[\(host)]" : host
        return (secure && port == 443) || (!secure && port == 80) ? h : "\(h):\(port)"
    }

    public static func == (a: HTTPClientTarget, b: HTTPClientTarget) -> Bool {
        a.secure == b.secure && a.host == b.host && a.port == b.port && a.pathAndQuery == b.pathAndQuery
            && a.userInfo?.user == b.userInfo?.user && a.userInfo?.password == b.userInfo?.password
    }
}

/// `Authorization: Basic ...` for a user and password.
public func basicAuthorization(user: String, password: String) -> String {
    "Basic " + Data("\(user):\(password)".utf8).base64EncodedString()
}
