import CHTTPSys
import Foundation
import OpenSSLKit
import Synchronization

// The loop's response path and its timers: writing responses, closing connections, sweeping timeouts and
// shutting down.

extension EventLoop {
    // MARK: writing responses

    func respondAndClose(_ conn: Connection, _ r: HTTPResponse, version: HTTPVersion) {
        writeFromLoop(conn, r, keepAlive: false, version: version, isHead: false, logInfo: nil)
    }

    /// Queues a small response made by the loop itself (an error, a redirect, a preflight answer).
    func writeFromLoop(
        _ conn: Connection, _ r: HTTPResponse, keepAlive: Bool, version: HTTPVersion, isHead: Bool,
        logInfo: OutgoingResponse.LogInfo?
    ) {
        conn.pending?.spool.discard()
        conn.pending = nil
        let bytes = ResponseWriter.serialize(r, keepAlive: keepAlive, requestVersion: version, isHead: isHead, serverName: serverNameBytes)
        queue(conn, OutgoingResponse(head: bytes, body: [], keepAlive: keepAlive, status: r.status.code, logInfo: logInfo,
                                     accessLog: config.accessLog))
    }

    func queue(_ conn: Connection, _ outgoing: OutgoingResponse) {
        conn.outgoing?.release()
        conn.outgoing = outgoing
        conn.machine.responseQueued(keepAlive: outgoing.keepAlive, now: monotonicNanos())
        flush(conn)
    }

    /// Writes what the socket takes now; called again on `EPOLLOUT` (or from the backlog) until done.
    func flush(_ conn: Connection) {
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

    func closeConnection(_ conn: Connection, lingering: Bool = false) {
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

    func sweep(_ now: UInt64) {
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

    func beginShutdown(grace: Double, now: UInt64) {
        stopping = true
        stopDeadline = now + nanos(grace)
        for fd in listeners {
            _ = chttp_epoll_del(epfd, fd)
            close(fd)
        }
        listeners = []
        for (_, c) in connections where c.machine.shouldCloseForShutdown(hasBufferedBytes: c.buffered > 0) { closeConnection(c) }
    }

    func finishShutdown() {
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
