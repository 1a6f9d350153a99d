import CHTTPSys
import Foundation
import OpenSSLKit
import Synchronization

/// The epoll loop and the connection table. Only the loop thread touches `connections` and connection state
/// (workers hold a connection only between dispatch and completion).
final class EventLoop: @unchecked Sendable {
    let config: HTTPServerConfiguration
    let router: HTTPRouter
    var epfd: Int32 = -1
    var wakeFD: Int32 = -1
    var listeners: [Int32] = []
    var connections: [Int32: Connection] = [:]
    /// Every connection a handler does not hold, least recently active first: what a full server closes.
    var evictable = ActivityList(.all)
    /// Per client IP address.
    var peers: [String: PeerConnections] = [:]
    /// `configuration.maxConnections`, lowered to what the open-file limit allows.
    var maxConnections = 0
    var pool: WorkerPool?
    var tlsContext: TLSServerContext?
    let serverNameBytes: [UInt8]?
    let readCap: Int
    let timeouts: ConnectionStateMachine.Timeouts

    struct Shared {
        var completions: [(Connection, OutgoingResponse)] = []
        var shutdownGrace: Double?
        var loopExited = false
        var stopped = false
        var port: Int?
        var addresses: [String] = []
    }
    let shared = Mutex(Shared())
    let stopLock = ConditionLock()

    var stopping = false
    var stopDeadline: UInt64 = 0
    var nextSweep: UInt64 = 0
    var listenersPaused = false
    /// Connections that still had bytes to read or write when their budget ran out.
    var backlog: [Connection] = []
    /// Response bytes the loop may still write in this turn; spent, writable connections wait in `backlog`, so
    /// new connections and small responses are served between the pieces of large ones.
    var writeBudget = 0

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

    func run() {
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

    func nanos(_ seconds: Double) -> UInt64 { UInt64(max(0, seconds) * 1e9) }

    func acceptConnections(_ lfd: Int32) {
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
    func makeRoom(forPeer peer: String) -> Bool {
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
    func setEvictable(_ conn: Connection, _ yes: Bool) {
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
    func touch(_ conn: Connection, now: UInt64) {
        guard now &- conn.lastTouched > 50_000_000 else { return }
        conn.lastTouched = now
        evictable.moveToBack(conn)
        conn.peerConnections?.evictable.moveToBack(conn)
    }
}
