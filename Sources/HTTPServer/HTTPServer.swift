import Foundation


/// Why the server could not start.
public struct HTTPServerError: Error, CustomStringConvertible {
    public let description: String
    init(_ d: String) { description = d }
    static func errno(_ what: String) -> HTTPServerError { HTTPServerError("\(what): \(String(cString: strerror(Glibc.errno)))") }
}

/// An HTTP/1.1 server over POSIX sockets (and OpenSSL for HTTPS).
///
/// One event-loop thread (epoll) accepts connections, performs TLS handshakes, reads and parses requests, spools
/// bodies and writes responses (files with `sendfile`, or in 16 KiB pieces over TLS), all non-blocking; it never
/// runs handler code. Complete requests go to a bounded pool of worker threads that only run the handler and
/// hand the response back, so a client that sends or reads slowly never holds a worker; a full queue gets 503.
/// Slow and stalled clients are bounded by timeouts, a minimum body rate, and connection caps (global and per
/// peer) that close the least recently active connection instead of refusing a new one.
///
/// ```swift
/// var router = HTTPRouter()
/// router.get("/info/") { _ in .json(Array(#"{"ok":true}"#.utf8)) }
/// var config = HTTPServerConfiguration(host: "0.0.0.0", port: 8000,
///                                      tls: TLSConfiguration(certificateFile: "c.pem", keyFile: "k.pem"))
/// config.accessLog = { print($0.line) }
/// let server = HTTPServer(configuration: config, router: router)
/// try server.start()                    // binds; `server.port` is the real port (for port 0)
/// HTTPServer.stopOnSignals(server)      // SIGINT/SIGTERM -> shutdown(gracePeriod: 10)
/// server.wait()                         // returns once stopped
/// ```
public final class HTTPServer: Sendable {
    public let configuration: HTTPServerConfiguration
    private let loop: EventLoop

    public init(configuration: HTTPServerConfiguration, router: HTTPRouter) {
        self.configuration = configuration
        self.loop = EventLoop(configuration: configuration, router: router)
    }

    /// Binds every address of `configuration.host`, loads TLS material and starts the threads.
    public func start() throws { try loop.start() }

    /// The bound port (the ephemeral one when configured with 0); nil before `start()`.
    public var port: Int? { loop.boundPort }

    /// The bound addresses, e.g. `["127.0.0.1:8000"]`.
    public var boundAddresses: [String] { loop.boundAddresses }

    /// Stops accepting, lets in-flight requests finish for up to `gracePeriod` seconds, then closes everything.
    /// Returns at once; `wait()` returns when it is done. Safe to call from any thread, more than once.
    public func shutdown(gracePeriod: Double = 10) { loop.requestShutdown(grace: gracePeriod) }

    /// Blocks until the server has stopped (after `shutdown`). Call only after a successful `start()`.
    public func wait() { loop.waitUntilStopped() }

    /// `start()` then `wait()`.
    public func run() throws {
        try start()
        wait()
    }

    /// The process's soft open-file limit (`RLIMIT_NOFILE`).
    public static var openFileLimit: Int {
        var rl = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl) == 0 else { return 1024 }
        return Int(clamping: min(rl.rlim_cur, 1 << 24))
    }

    /// Raises the soft open-file limit to the hard limit (at most 2^20) and returns the soft limit now in force.
    /// Every connection needs a descriptor, and the usual soft limit of 1024 would cap the server far below
    /// `maxConnections`; `start()` calls this unless `HTTPServerConfiguration.raiseOpenFileLimit` is false.
    @discardableResult
    public static func raiseOpenFileLimit() -> Int {
        var rl = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl) == 0 else { return 1024 }
        let target = min(rl.rlim_max, 1 << 20)
        if rl.rlim_cur < target {
            var raised = rl
            raised.rlim_cur = target
            _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised)
        }
        return openFileLimit
    }

    /// Makes SIGINT and SIGTERM call `server.shutdown(gracePeriod:)`. A second signal exits at once.
    public static func stopOnSignals(_ server: HTTPServer, gracePeriod: Double = 10) {
        SignalRelay.install(server, grace: gracePeriod)
    }
}
