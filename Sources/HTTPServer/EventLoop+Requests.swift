import CHTTPSys
import Foundation
import OpenSSLKit
import Synchronization

// The loop's request path: reading and parsing, dispatching to the worker pool, taking completions back.

extension EventLoop {
    func handleEvent(_ conn: Connection, _ ev: UInt32) {
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
    func resume(_ conn: Connection) {
        if case .writingResponse = conn.machine.phase { flush(conn) } else { service(conn) }
    }

    /// Moves a readable connection forward: handshake, read, parse, until it blocks or is dispatched.
    func service(_ conn: Connection) {
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
    func process(_ conn: Connection) -> Bool {
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
    func beginRequest(_ conn: Connection, _ head: HTTPRequestHead) {
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
    func requestContext(_ conn: Connection) -> HTTPRequestContext {
        HTTPRequestContext(
            temporaryDirectory: config.temporaryDirectory, formLimits: config.formLimits,
            maxInMemoryBodyBytes: config.maxInMemoryBodyBytes, peerFD: conn.fd)
    }

    /// A request of `bodyIgnoredMethods` that declares a body: its handler runs now with an empty body, and the
    /// connection closes after the response, so whatever body bytes follow are never taken for a next request.
    func dispatchIgnoringBody(_ conn: Connection, _ received: HTTPRequestHead, path: String, handler: @escaping HTTPHandler,
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

    func dispatch(_ conn: Connection, _ pending: Connection.PendingRequest, body: HTTPBody, context: HTTPRequestContext) {
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

    var isStopping: Bool { shared.withLock { $0.shutdownGrace != nil } }

    /// Called by a worker when the handler for `conn` has returned: the loop writes the response.
    func complete(_ conn: Connection, _ outgoing: OutgoingResponse) {
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

    func drainCompletions() {
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
}
