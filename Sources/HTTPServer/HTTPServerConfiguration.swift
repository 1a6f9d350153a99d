/// One access-log record, produced after a response has been written (or abandoned).
public struct HTTPAccessLogEntry: Sendable {
    public var method: String
    /// The path with the query dropped, so tokens and other secrets in it never reach the log.
    public var path: String
    public var status: Int
    /// Response body bytes written (headers excluded).
    public var bytes: Int
    public var durationMilliseconds: Double
    public var remoteAddress: String

    /// `127.0.0.1:5000 "GET /info/" 200 123B 1.2ms`.
    public var line: String {
        let ms = (durationMilliseconds * 10).rounded() / 10
        return "\(remoteAddress) \"\(method) \(path)\" \(status) \(bytes)B \(ms)ms"
    }
}

/// Everything a server needs; every limit and timeout has a default suited to MONAI Label's traffic
/// (hundreds-of-MB uploads, few concurrent clients) and to the open internet.
public struct HTTPServerConfiguration: Sendable {
    /// `0.0.0.0`, `::`, `127.0.0.1`, `localhost` or any name getaddrinfo resolves; every address is bound.
    public var host: String = "127.0.0.1"
    /// 0 picks an ephemeral port; read it back from `HTTPServer.port`.
    public var port: Int = 8000
    /// HTTPS when set.
    public var tls: TLSConfiguration?
    public var limits = HTTPLimits()
    /// Threads running handlers.
    public var workerCount: Int = 4
    /// Requests waiting for a worker beyond which new requests get 503.
    public var queueCapacity: Int = 256
    /// Most open connections (lowered to what the open-file limit allows). A new connection beyond it, or beyond
    /// `maxConnectionsPerPeer`, closes the least recently active connection (of that peer) that no handler holds,
    /// so a flood of stalled connections cannot lock out a client's next request.
    public var maxConnections: Int = 10_000
    /// Raise the process's soft open-file limit to its hard limit at `start()` (see `HTTPServer.raiseOpenFileLimit`).
    public var raiseOpenFileLimit = true
    /// Most open connections from one IP address; see `maxConnections` for what happens beyond it.
    public var maxConnectionsPerPeer: Int = 1024
    /// Time to receive a complete request head (and the TLS handshake) once it has started: against slowloris.
    public var headerTimeout: Double = 10
    /// Longest wait for the next body bytes.
    public var bodyTimeout: Double = 60
    /// Bytes per second a request body must average once `bodyRateGracePeriod` has passed, or the request gets
    /// 408 and the connection closes (against bodies trickled to hold a connection); 0 turns the check off.
    public var minBodyRate: Int = 256
    /// Seconds a body may take before `minBodyRate` applies.
    public var bodyRateGracePeriod: Double = 10
    /// How long an idle keep-alive connection is kept.
    public var keepAliveTimeout: Double = 15
    /// Longest wait for the client to accept more response bytes (the event loop writes responses; a client
    /// that stops reading holds only its socket and, for a file, one descriptor, until this passes).
    public var writeTimeout: Double = 60
    /// Request bodies larger than this are spooled to a temporary file while they arrive.
    public var spoolThreshold: Int = 1 << 20
    /// Methods whose handlers never read a body: such a request is dispatched as soon as its head arrives, even
    /// when it declares a body, and the connection is closed after the response (the unread body leaves its
    /// framing unknown). Clients that send stale `Content-Length` headers on GETs (the MONAI Label 0.8.5 Python
    /// client does, once it carries an `Authorization` header) are then answered at once, as uvicorn answers them,
    /// instead of timing out waiting for a body that never comes.
    public var bodyIgnoredMethods: Set<HTTPMethod> = []
    /// What `HTTPRequest.form()` accepts: text fields are held in memory, file parts go to disk.
    public var formLimits = HTTPFormLimits()
    /// The largest body `HTTPRequest.bodyBytes()` (JSON, urlencoded) reads into memory; larger ones get 413.
    public var maxInMemoryBodyBytes: Int = HTTPRequestContext.defaultMaxInMemoryBodyBytes
    /// Where spooled bodies and uploaded files go.
    public var temporaryDirectory: String = HTTPRequestContext.defaultTemporaryDirectory
    /// The `Server` header; nil omits it.
    public var serverName: String? = "swift-httpserver"
    /// Called once per request from the thread that finished it.
    public var accessLog: (@Sendable (HTTPAccessLogEntry) -> Void)?
    /// Called with unexpected errors: handler errors that became 500, socket failures worth knowing about.
    public var errorLog: (@Sendable (String) -> Void)?

    public init(host: String = "127.0.0.1", port: Int = 8000, tls: TLSConfiguration? = nil) {
        self.host = host
        self.port = port
        self.tls = tls
    }
}
