import CHTTPSys
import OpenSSLKit
import Foundation
import Synchronization

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

/// Turns SIGINT/SIGTERM into a shutdown on a normal thread: the handler only writes to a pipe.
enum SignalRelay {
    nonisolated(unsafe) private static var writeFD: Int32 = -1
    nonisolated(unsafe) private static var count: Int32 = 0

    static func install(_ server: HTTPServer, grace: Double) {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { return }
        writeFD = fds[1]
        let readFD = fds[0]
        let handler: @convention(c) (Int32) -> Void = { _ in
            SignalRelay.count += 1
            if SignalRelay.count > 1 { _exit(130) }
            var b: UInt8 = 1
            _ = Glibc.write(SignalRelay.writeFD, &b, 1)
        }
        signal(SIGINT, handler)
        signal(SIGTERM, handler)
        let t = Thread {
            var b: UInt8 = 0
            while Glibc.read(readFD, &b, 1) < 0 && errno == EINTR {}
            server.shutdown(gracePeriod: grace)
        }
        t.name = "http-signals"
        t.start()
    }
}

/// The epoll loop and the connection table. Only the loop thread touches `connections` and connection state
/// (workers hold a connection only between dispatch and completion).
final class EventLoop: @unchecked Sendable {
    private let config: HTTPServerConfiguration
    private let router: HTTPRouter
    private var epfd: Int32 = -1
    private var wakeFD: Int32 = -1
    private var listeners: [Int32] = []
    private var connections: [Int32: Connection] = [:]
    /// Every connection a handler does not hold, least recently active first: what a full server closes.
    private var evictable = ActivityList(.all)
    /// Per client IP address.
    private var peers: [String: PeerConnections] = [:]
    /// `configuration.maxConnections`, lowered to what the open-file limit allows.
    private var maxConnections = 0
    private var pool: WorkerPool?
    private var tlsContext: TLSServerContext?
    private let serverNameBytes: [UInt8]?
    private let readCap: Int
    private let timeouts: ConnectionStateMachine.Timeouts

    private struct Shared {
        var completions: [(Connection, OutgoingResponse)] = []
        var shutdownGrace: Double?
        var loopExited = false
        var stopped = false
        var port: Int?
        var addresses: [String] = []
    }
    private let shared = Mutex(Shared())
    private let stopLock = ConditionLock()

    private var stopping = false
    private var stopDeadline: UInt64 = 0
    private var nextSweep: UInt64 = 0
    private var listenersPaused = false
    /// Connections that still had bytes to read or write when their budget ran out.
    private var backlog: [Connection] = []
    /// Response bytes the loop may still write in this turn; spent, writable connections wait in `backlog`, so
    /// new connections and small responses are served between the pieces of large ones.
    private var writeBudget = 0

    init(configuration: HTTPServerConfiguration, router: HTTPRouter) {
        self.config = configuration
        self.router = router
        self.serverNameBytes = configuration.serverName.map { Array($0.utf8) }
        self.readCap = max(configuration.limits.maxHeaderBytes + 1024, 64 * 1024)
        func ns(_ s: Double) -> UInt64 { UInt64(max(0, s) * 1e9) }
        self.timeouts = ConnectionStateMachine.Timeouts(
            header: ns(configuration.headerTimeout), body: ns(configuration.bodyTimeout),
            keepAlive: ns(configuration.keepAliveTimeout), write: ns(configuration.writeTimeout),
            minBodyRate: max(0, configuration.minBodyRate), bodyRateGrace: ns(configuration.bodyRateGracePeriod))
    }

    var boundPort: Int? { shared.withLock { $0.port } }
    var boundAddresses: [String] { shared.withLock { $0.addresses } }

    func start() throws {
        // A peer that vanishes must give EPIPE, not kill the process (OpenSSL writes with plain write()).
        signal(SIGPIPE, SIG_IGN)
        guard epfd < 0 else { throw HTTPServerError("The server was already started") }
        if let tls = config.tls { tlsContext = try TLSServerContext.make(tls) }
        let fileLimit = config.raiseOpenFileLimit ? HTTPServer.raiseOpenFileLimit() : HTTPServer.openFileLimit
        // A connection may hold two descriptors (its socket and a response file or body spool); the rest of the
        // process (listeners, logs, models, the datastore) keeps a reserve.
        let reserve = min(1024, fileLimit / 4)
        maxConnections = max(1, min(config.maxConnections, max(16, (fileLimit - reserve) / 2)))
        let (fds, addresses, port) = try Listener.bind(host: config.host, port: config.port)
        epfd = chttp_epoll_create()
        wakeFD = chttp_eventfd()
        guard epfd >= 0, wakeFD >= 0 else {
            let error = HTTPServerError.errno("epoll/eventfd")
            for fd in fds + [epfd, wakeFD] where fd >= 0 { close(fd) }
            throw error
        }
        _ = chttp_epoll_add(epfd, wakeFD, CHTTP_EV_IN, UInt64(UInt32(bitPattern: wakeFD)))
        listeners = fds
        for fd in fds { _ = chttp_epoll_add(epfd, fd, CHTTP_EV_IN, UInt64(UInt32(bitPattern: fd))) }
        shared.withLock {
            $0.port = port
            $0.addresses = addresses
        }
        pool = WorkerPool(threads: config.workerCount, capacity: config.queueCapacity, name: "http-worker")
        let t = Thread { [self] in self.run() }
        t.name = "http-loop"
        t.stackSize = 4 << 20
        t.start()
    }

    func requestShutdown(grace: Double) {
        let first = shared.withLock { s -> Bool in
            if s.shutdownGrace != nil || s.loopExited { return false }
            s.shutdownGrace = grace
            return true
        }
        if first { _ = chttp_eventfd_signal(wakeFD) }
    }

    func waitUntilStopped() {
        stopLock.lock()
        while !shared.withLock({ $0.stopped }) { stopLock.wait() }
        stopLock.unlock()
    }

    // MARK: loop

    private func run() {
        var tokens = [UInt64](repeating: 0, count: 256)
        var events = [UInt32](repeating: 0, count: 256)
        while true {
            let timeout: Int32 = backlog.isEmpty ? 100 : 0
            writeBudget = 16 << 20
            let n = tokens.withUnsafeMutableBufferPointer { t in
                events.withUnsafeMutableBufferPointer { e in chttp_epoll_wait(epfd, t.baseAddress, e.baseAddress, 256, timeout) }
            }
            if n < 0 && errno != EINTR { config.errorLog?("epoll_wait failed: \(String(cString: strerror(errno)))") }
            for i in 0..<max(0, Int(n)) {
                let fd = Int32(truncatingIfNeeded: tokens[i])
                let ev = events[i]
                if fd == wakeFD {
                    chttp_eventfd_drain(wakeFD)
                    drainCompletions()
                } else if listeners.contains(fd) {
                    acceptConnections(fd)
                } else if let conn = connections[fd] {
                    handleEvent(conn, ev)
                }
            }
            if !backlog.isEmpty {
                let pending = backlog
                backlog.removeAll(keepingCapacity: true)
                for c in pending where connections[c.fd] === c { resume(c) }
            }
            let now = monotonicNanos()
            if now >= nextSweep {
                nextSweep = now + 100_000_000
                sweep(now)
            }
            if !stopping, let grace = shared.withLock({ $0.shutdownGrace }) { beginShutdown(grace: grace, now: now) }
            if stopping {
                if connections.isEmpty || now >= stopDeadline { break }
            }
        }
        finishShutdown()
    }

    private func nanos(_ seconds: Double) -> UInt64 { UInt64(max(0, seconds) * 1e9) }

    private func acceptConnections(_ lfd: Int32) {
        for _ in 0..<64 {
            var storage = sockaddr_storage()
            var len = UInt32(MemoryLayout<sockaddr_storage>.size)
            let fd = withUnsafeMutablePointer(to: &storage) { chttp_accept(lfd, $0, &len) }
            if fd < 0 {
                if errno == EMFILE || errno == ENFILE {
                    // Out of descriptors: stop listening briefly instead of spinning on a ready listener.
                    config.errorLog?("accept: \(String(cString: strerror(errno))); pausing accepts")
                    for l in listeners { _ = chttp_epoll_del(epfd, l) }
                    listenersPaused = true
                }
                return
            }
            if stopping {
                close(fd)
                continue
            }
            var one: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            // Keep at most 128 KiB queued beyond what the client's window lets out. Without it the kernel grows
            // each send buffer towards 4 MiB for a client that never reads: a thousand slow readers took 2.2 GB of
            // kernel memory (past tcp_mem's pressure mark) and the loop spent seconds copying it. Bytes in flight
            // are not limited, so fast downloads keep their speed.
            var lowat: Int32 = 128 * 1024
            setsockopt(fd, Int32(IPPROTO_TCP), 25 /* TCP_NOTSENT_LOWAT */, &lowat, socklen_t(MemoryLayout<Int32>.size))
            var text = [CChar](repeating: 0, count: 64)
            withUnsafePointer(to: &storage) { p in text.withUnsafeMutableBufferPointer { chttp_format_address(p, $0.baseAddress, 64) } }
            let remote = text.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
            let now = monotonicNanos()
            let peerKey = Connection.peerKey(remote)
            guard makeRoom(forPeer: peerKey) else {
                close(fd)
                continue
            }
            var session: TLSServerSession?
            if let ctx = tlsContext {
                guard let s = TLSServerSession(context: ctx, fd: fd) else {
                    close(fd)
                    continue
                }
                session = s
            }
            let conn = Connection(fd: fd, tls: session, remoteAddress: remote, limits: config.limits, timeouts: timeouts, now: now)
            let interest = CHTTP_EV_IN | CHTTP_EV_OUT | CHTTP_EV_RDHUP | CHTTP_EV_ET
            if chttp_epoll_add(epfd, fd, interest, UInt64(UInt32(bitPattern: fd))) != 0 {
                close(fd)
                continue
            }
            connections[fd] = conn
            let peer: PeerConnections
            if let p = peers[conn.peer] {
                peer = p
            } else {
                peer = PeerConnections()
                peers[conn.peer] = peer
            }
            peer.open += 1
            conn.peerConnections = peer
            setEvictable(conn, true)
        }
    }

    // MARK: connection caps

    // Why eviction and not refusal: a cap that refuses new connections hands the server to whoever fills it
    // first, and per-peer caps cannot tell an attacker from a colleague behind the same address (the probes and
    // their attacker are both 127.0.0.1). So a new connection always gets in while anything can make room: over
    // the per-peer cap it closes that peer's least recently active connection, over the global cap the server's
    // least recently active one. Connections whose handler runs are never chosen. A flood of stalled connections
    // thus churns through itself, and a client's next request is the newest, last in line to be closed.

    /// Closes connections until `peer` may open one more; false when only busy (dispatched) ones are left.
    private func makeRoom(forPeer peer: String) -> Bool {
        let perPeer = max(1, config.maxConnectionsPerPeer)
        if let p = peers[peer] {
            while p.open >= perPeer {
                guard let victim = p.evictable.oldest else { return false }
                closeConnection(victim)
            }
        }
        while connections.count >= maxConnections {
            guard let victim = evictable.oldest else { return false }
            closeConnection(victim)
        }
        return true
    }

    /// Adds `conn` to (or takes it out of) the lists eviction chooses from.
    private func setEvictable(_ conn: Connection, _ yes: Bool) {
        if yes {
            evictable.append(conn)
            conn.peerConnections?.evictable.append(conn)
        } else {
            evictable.remove(conn)
            conn.peerConnections?.evictable.remove(conn)
        }
    }

    /// Bytes moved on `conn`: it becomes the last candidate for eviction. At most every 50 ms per connection, so a
    /// busy keep-alive connection does not relink itself on every request; eviction needs no finer order.
    private func touch(_ conn: Connection, now: UInt64) {
        guard now &- conn.lastTouched > 50_000_000 else { return }
        conn.lastTouched = now
        evictable.moveToBack(conn)
        conn.peerConnections?.evictable.moveToBack(conn)
    }

    private func handleEvent(_ conn: Connection, _ ev: UInt32) {
        if ev & (CHTTP_EV_IN | CHTTP_EV_RDHUP | CHTTP_EV_HUP | CHTTP_EV_ERR) != 0 { conn.mayRead = true }
        switch conn.machine.phase {
        case .dispatched, .closed:
            return
        case .writingResponse:
            flush(conn)
        case .handshaking, .readingHead, .readingBody:
            service(conn)
        }
    }

    /// Continues a connection whose per-event budget ran out.
    private func resume(_ conn: Connection) {
        if case .writingResponse = conn.machine.phase { flush(conn) } else { service(conn) }
    }

    /// Moves a readable connection forward: handshake, read, parse, until it blocks or is dispatched.
    private func service(_ conn: Connection) {
        // Re-entry (a response flushed while parsing) would recurse once per pipelined request; the outer call's
        // loop picks the connection up again instead.
        if conn.inService { return }
        conn.inService = true
        defer { conn.inService = false }
        if conn.machine.phase == .handshaking {
            guard let tls = conn.tls else { return }
            switch tls.handshake() {
            case .ok: conn.machine.handshakeCompleted()
            case .wantRead, .wantWrite: return
            case .closed, .error:
                closeConnection(conn)
                return
            }
        }
        var budget = 16
        while conn.machine.isReading {
            // Parse what is buffered before reading more, so pipelined requests are served in order.
            if conn.buffered > 0 || conn.parser.isInBody {
                if !process(conn) { return }
            }
            if !conn.mayRead { return }
            if budget == 0 {
                backlog.append(conn)
                return
            }
            budget -= 1
            let before = conn.buffered
            // Only a body that is actually flowing (the last read filled the buffer) gets the large buffer: ten
            // thousand stalled bodies must not cost 64 KiB each.
            let flowing = conn.machine.phase == .readingBody && conn.lastReadFilled
            switch conn.readIntoBuffer(maxCapacity: readCap, preferredCapacity: flowing ? readCap : 0) {
            case .bytes(let n, let drained):
                // A full buffer with nothing consumed can only be a head past the limit, which the parser reports.
                if n == 0 && conn.buffered == before { return }
                if drained { conn.mayRead = false }
                let now = monotonicNanos()
                conn.machine.bytesReceived(n, now: now)
                touch(conn, now: now)
            case .wouldBlock:
                conn.mayRead = false
                return
            case .eof:
                conn.peerClosed = true
                conn.mayRead = false
                if conn.buffered > 0 && !process(conn) { return }
                closeConnection(conn)
                return
            case .failed:
                closeConnection(conn)
                return
            }
        }
    }

    /// Runs the parser over the buffer. Returns false when the connection left the reading phases.
    private func process(_ conn: Connection) -> Bool {
        while conn.machine.isReading && (conn.buffered > 0 || conn.parser.isInBody) {
            var spoolFailed = false
            let (action, consumed): (HTTPRequestParser.Action, Int) = conn.buffer.withUnsafeBytes { p in
                let slice = UnsafeRawBufferPointer(rebasing: p[conn.start..<conn.end])
                let r = conn.parser.next(slice)
                if case .body(let range) = r.action {
                    do {
                        try conn.pending?.spool.append(UnsafeRawBufferPointer(rebasing: slice[range]))
                    } catch {
                        spoolFailed = true
                    }
                }
                return r
            }
            conn.start += consumed
            if spoolFailed {
                config.errorLog?("Cannot spool a request body to \(config.temporaryDirectory)")
                respondAndClose(conn, .detail("Internal Server Error", status: .internalServerError), version: .http1_1)
                return false
            }
            switch action {
            case .needMore:
                return true
            case .head(let head):
                beginRequest(conn, head)
            case .body:
                continue
            case .end:
                // No pending request: the loop answered this one itself; go on with the next.
                guard var pending = conn.pending else { continue }
                conn.pending = nil
                let context = requestContext(conn)
                let body = pending.spool.finish(context: context)
                conn.machine.requestCompleted()
                dispatch(conn, pending, body: body, context: context)
                return false
            case .error(let e):
                respondAndClose(conn, .detail(e.reason, status: e.status), version: .http1_1)
                return false
            }
        }
        return conn.machine.isReading
    }

    /// Routes a fresh head and acts on the state machine's decision.
    private func beginRequest(_ conn: Connection, _ head: HTTPRequestHead) {
        let (rawPath, rawQuery) = HTTPRequest.split(target: head.target)
        guard let path = PercentEncoding.decode(rawPath, plusAsSpace: false) else {
            respondAndClose(conn, .detail("Invalid percent-encoding in path", status: .badRequest), version: head.version)
            return
        }
        let now = monotonicNanos()
        let resolution = router.resolve(method: head.method, path: path, rawQuery: rawQuery, headers: head.headers, isSecure: conn.tls != nil)
        if case .handler(let handler, let params) = resolution, config.bodyIgnoredMethods.contains(head.method),
           head.framing != .none, head.framing != .length(0)
        {
            dispatchIgnoringBody(conn, head, path: path, handler: handler, parameters: params, now: now)
            return
        }
        var routed = false
        if case .handler(let handler, let params) = resolution {
            routed = true
            var expected: Int?
            if case .length(let n) = head.framing { expected = n }
            let spool = BodySpool(threshold: config.spoolThreshold, directory: config.temporaryDirectory, expected: expected)
            conn.pending = Connection.PendingRequest(head: head, path: path, handler: handler, parameters: params, spool: spool, started: now)
        }
        switch conn.machine.headReceived(head, routed: routed, bodyAlreadyBuffered: conn.buffered > 0, stopping: stopping, now: now) {
        case .respond(let keepAlive):
            guard case .response(var r) = resolution else { return }
            router.finish(&r, requestHeaders: head.headers)
            let info = OutgoingResponse.LogInfo(method: head.method, target: head.target, remoteAddress: conn.remoteAddress, started: now)
            writeFromLoop(conn, r, keepAlive: keepAlive, version: head.version, isHead: head.method == .head, logInfo: info)
        case .readBody(let sendContinue):
            if sendContinue {
                // No response is pending, so the socket buffer has room for 25 bytes; if not, the stream is
                // unusable and the client retries.
                let interim = Array("HTTP/1.1 100 Continue\r\n\r\n".utf8)
                let w = interim.withUnsafeBytes { conn.writeNonBlocking($0.baseAddress!, $0.count) }
                if w != interim.count { closeConnection(conn) }
            }
        }
    }

    /// The per-request context: temp folder, body limits, and the socket a running handler may poll.
    private func requestContext(_ conn: Connection) -> HTTPRequestContext {
        HTTPRequestContext(
            temporaryDirectory: config.temporaryDirectory, formLimits: config.formLimits,
            maxInMemoryBodyBytes: config.maxInMemoryBodyBytes, peerFD: conn.fd)
    }

    /// A request of `bodyIgnoredMethods` that declares a body: its handler runs now with an empty body, and the
    /// connection closes after the response, so whatever body bytes follow are never taken for a next request.
    private func dispatchIgnoringBody(_ conn: Connection, _ received: HTTPRequestHead, path: String, handler: @escaping HTTPHandler,
                                      parameters: [String: String], now: UInt64) {
        var head = received
        head.framing = .length(0)
        head.expectsContinue = false
        head.keepAlive = false
        _ = conn.machine.headReceived(head, routed: true, bodyAlreadyBuffered: false, stopping: stopping, now: now)
        let spool = BodySpool(threshold: config.spoolThreshold, directory: config.temporaryDirectory, expected: 0)
        var pending = Connection.PendingRequest(head: head, path: path, handler: handler, parameters: parameters, spool: spool, started: now)
        let context = requestContext(conn)
        let body = pending.spool.finish(context: context)
        conn.machine.requestCompleted()
        dispatch(conn, pending, body: body, context: context)
    }

    private func dispatch(_ conn: Connection, _ pending: Connection.PendingRequest, body: HTTPBody, context: HTTPRequestContext) {
        let head = pending.head
        guard let query = PercentEncoding.parseQuery(HTTPRequest.split(target: head.target).query ?? "") else {
            context.cleanUp()
            respondAndClose(conn, .detail("Invalid percent-encoding in query", status: .badRequest), version: head.version)
            return
        }
        let request = HTTPRequest(
            method: head.method, target: head.target, path: pending.path, query: query, version: head.version,
            headers: head.headers, body: body, pathParameters: pending.parameters, remoteAddress: conn.remoteAddress,
            isSecure: conn.tls != nil, context: context)
        let handler = pending.handler
        let router = self.router
        let config = self.config
        let serverName = serverNameBytes
        let keepAliveWanted = head.keepAlive && !stopping
        let info = OutgoingResponse.LogInfo(method: head.method, target: head.target, remoteAddress: conn.remoteAddress,
                                            started: pending.started)
        // While the handler runs the connection cannot be closed to make room: its descriptor stays valid, so the
        // handler may poll it to learn whether the client has gone.
        setEvictable(conn, false)
        let accepted = pool?.submit { [self] in
            var response = HTTPRouter.run(handler, request) { error in
                config.errorLog?("Handler for \(request.method) \(request.path) failed: \(error)")
            }
            router.finish(&response, requestHeaders: request.headers)
            let outgoing = OutgoingResponse.prepare(
                response, requestVersion: request.version, isHead: request.method == .head,
                keepAlive: keepAliveWanted && !self.isStopping, serverName: serverName, context: request.context,
                logInfo: info, accessLog: config.accessLog, errorLog: config.errorLog)
            // One non-blocking attempt here: most responses fit the socket buffer and leave at once, sparing the
            // single loop thread every send. Whatever remains is the loop's, so a slow reader never holds a worker.
            let (progress, _) = outgoing.write(to: conn, budget: 256 << 10)
            if progress == .done { outgoing.release() }
            self.complete(conn, outgoing)
        } ?? false
        if !accepted {
            setEvictable(conn, true)
            context.cleanUp()
            respondAndClose(conn, .detail("Service Unavailable", status: .serviceUnavailable), version: head.version)
        }
    }

    private var isStopping: Bool { shared.withLock { $0.shutdownGrace != nil } }

    /// Called by a worker when the handler for `conn` has returned: the loop writes the response.
    private func complete(_ conn: Connection, _ outgoing: OutgoingResponse) {
        let (signal, loopGone) = shared.withLock { s -> (Bool, Bool) in
            if s.loopExited { return (false, true) }
            s.completions.append((conn, outgoing))
            return (s.completions.count == 1, false)
        }
        if loopGone {
            outgoing.release()
            conn.tls?.shutdown()
            close(conn.fd)
            conn.machine.closed()
        } else if signal {
            _ = chttp_eventfd_signal(wakeFD)
        }
    }

    private func drainCompletions() {
        let done = shared.withLock { s -> [(Connection, OutgoingResponse)] in
            defer { s.completions.removeAll(keepingCapacity: true) }
            return s.completions
        }
        for (conn, outgoing) in done {
            guard connections[conn.fd] === conn, conn.machine.phase == .dispatched else {
                outgoing.release()
                continue
            }
            setEvictable(conn, true)
            queue(conn, outgoing)
        }
    }

    // MARK: writing responses

    private func respondAndClose(_ conn: Connection, _ r: HTTPResponse, version: HTTPVersion) {
        writeFromLoop(conn, r, keepAlive: false, version: version, isHead: false, logInfo: nil)
    }

    /// Queues a small response made by the loop itself (an error, a redirect, a preflight answer).
    private func writeFromLoop(
        _ conn: Connection, _ r: HTTPResponse, keepAlive: Bool, version: HTTPVersion, isHead: Bool,
        logInfo: OutgoingResponse.LogInfo?
    ) {
        conn.pending?.spool.discard()
        conn.pending = nil
        let bytes = ResponseWriter.serialize(r, keepAlive: keepAlive, requestVersion: version, isHead: isHead, serverName: serverNameBytes)
        queue(conn, OutgoingResponse(head: bytes, body: [], keepAlive: keepAlive, status: r.status.code, logInfo: logInfo,
                                     accessLog: config.accessLog))
    }

    private func queue(_ conn: Connection, _ outgoing: OutgoingResponse) {
        conn.outgoing?.release()
        conn.outgoing = outgoing
        conn.machine.responseQueued(keepAlive: outgoing.keepAlive, now: monotonicNanos())
        flush(conn)
    }

    /// Writes what the socket takes now; called again on `EPOLLOUT` (or from the backlog) until done.
    private func flush(_ conn: Connection) {
        guard case .writingResponse = conn.machine.phase, let outgoing = conn.outgoing else { return }
        // A fast client of a large file could otherwise keep the loop to itself.
        guard writeBudget > 0 else {
            backlog.append(conn)
            return
        }
        let (progress, wrote) = outgoing.write(to: conn, budget: min(writeBudget, 1 << 20))
        writeBudget -= wrote
        if wrote > 0 {
            let now = monotonicNanos()
            conn.machine.bytesSent(now: now)
            touch(conn, now: now)
        }
        switch progress {
        case .blocked:
            return
        case .yielded:
            backlog.append(conn)
            return
        case .failed:
            closeConnection(conn)
            return
        case .done:
            break
        }
        conn.outgoing = nil
        outgoing.release()
        let next = conn.machine.responseFlushed(
            stopping: stopping, peerClosed: conn.peerClosed, hasBufferedBytes: conn.buffered > 0, now: monotonicNanos())
        switch next {
        case .close: closeConnection(conn, lingering: true)
        case .readNext: if conn.buffered > 0 || conn.mayRead { service(conn) }
        }
    }

    private func closeConnection(_ conn: Connection, lingering: Bool = false) {
        conn.pending?.spool.discard()
        conn.pending = nil
        conn.outgoing?.release()
        conn.outgoing = nil
        conn.machine.closed()
        connections[conn.fd] = nil
        setEvictable(conn, false)
        if let p = conn.peerConnections {
            p.open -= 1
            if p.open == 0 { peers[conn.peer] = nil }
            conn.peerConnections = nil
        }
        _ = chttp_epoll_del(epfd, conn.fd)
        if lingering, conn.tls == nil {
            // Half-close first so an error response is not destroyed by a reset for unread request bytes.
            shutdown(conn.fd, Int32(SHUT_WR))
            var scratch = [UInt8](repeating: 0, count: 4096)
            _ = scratch.withUnsafeMutableBytes { read(conn.fd, $0.baseAddress!, $0.count) }
        }
        conn.tls?.shutdown()
        close(conn.fd)
    }

    // MARK: timers and shutdown

    private func sweep(_ now: UInt64) {
        if listenersPaused && !stopping {
            for fd in listeners { _ = chttp_epoll_add(epfd, fd, CHTTP_EV_IN, UInt64(UInt32(bitPattern: fd))) }
            listenersPaused = false
        }
        var expired: [(Connection, ConnectionStateMachine.TimeoutAction)] = []
        for (_, c) in connections {
            let action = c.machine.timeout(now: now)
            if action != .none { expired.append((c, action)) }
        }
        for (c, action) in expired {
            switch action {
            case .none:
                break
            case .close:
                closeConnection(c)
            case .respondRequestTimeoutAndClose:
                respondAndClose(c, .detail("Request Timeout", status: .requestTimeout), version: .http1_1)
                // One attempt only: a client too slow to send is not waited for again.
                if connections[c.fd] === c { closeConnection(c) }
            }
        }
    }

    private func beginShutdown(grace: Double, now: UInt64) {
        stopping = true
        stopDeadline = now + nanos(grace)
        for fd in listeners {
            _ = chttp_epoll_del(epfd, fd)
            close(fd)
        }
        listeners = []
        for (_, c) in connections where c.machine.shouldCloseForShutdown(hasBufferedBytes: c.buffered > 0) { closeConnection(c) }
    }

    private func finishShutdown() {
        let leftovers = shared.withLock { s -> [(Connection, OutgoingResponse)] in
            s.loopExited = true
            defer { s.completions.removeAll() }
            return s.completions
        }
        for (c, outgoing) in leftovers {
            outgoing.release()
            if connections[c.fd] === c { closeConnection(c) }
        }
        for (_, c) in connections {
            if c.machine.phase == .dispatched {
                // A handler still runs (and may poll the descriptor); the worker closes it when it returns.
                shutdown(c.fd, Int32(SHUT_RDWR))
            } else {
                closeConnection(c)
            }
        }
        connections.removeAll()
        pool?.stop()
        close(epfd)
        close(wakeFD)
        shared.withLock { $0.stopped = true }
        stopLock.lock()
        stopLock.broadcast()
        stopLock.unlock()
    }
}

/// Binding listening sockets.
enum Listener {
    static func bind(host: String, port: Int) throws -> (fds: [Int32], addresses: [String], port: Int) {
        var hints = addrinfo()
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var fds: [Int32] = []
        var addresses: [String] = []
        var chosenPort = port
        var result: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &result)
        guard rc == 0, let first = result else {
            throw HTTPServerError("Cannot resolve host \(host): \(String(cString: gai_strerror(rc)))")
        }
        defer { freeaddrinfo(first) }
        var lastError = ""
        var ai: UnsafeMutablePointer<addrinfo>? = first
        while let a = ai {
            ai = a.pointee.ai_next
            let family = a.pointee.ai_family
            let fd = chttp_socket(family)
            if fd < 0 { lastError = String(cString: strerror(errno)); continue }
            var one: Int32 = 1
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
            if family == AF_INET6, host != "::" {
                setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &one, socklen_t(MemoryLayout<Int32>.size))
            }
            // All addresses of one name share the port chosen for the first when the caller asked for 0.
            if chosenPort != port || port == 0 && !fds.isEmpty {
                let p = UInt16(chosenPort).bigEndian
                if family == AF_INET {
                    a.pointee.ai_addr.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_port = p }
                } else if family == AF_INET6 {
                    a.pointee.ai_addr.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { $0.pointee.sin6_port = p }
                }
            }
            if Glibc.bind(fd, a.pointee.ai_addr, a.pointee.ai_addrlen) != 0 || listen(fd, 1024) != 0 {
                lastError = String(cString: strerror(errno))
                close(fd)
                continue
            }
            chosenPort = Int(chttp_local_port(fd))
            var text = [CChar](repeating: 0, count: 64)
            text.withUnsafeMutableBufferPointer { chttp_format_address(a.pointee.ai_addr, $0.baseAddress, 64) }
            var addr = text.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
            if let colon = addr.lastIndex(of: ":") { addr = String(addr[..<colon]) + ":\(chosenPort)" }
            addresses.append(addr)
            fds.append(fd)
        }
        guard !fds.isEmpty else { throw HTTPServerError("Cannot listen on \(host):\(port): \(lastError)") }
        return (fds, addresses, chosenPort)
    }
}
