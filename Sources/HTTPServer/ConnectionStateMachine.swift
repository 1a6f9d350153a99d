/// The lifecycle of one connection as a pure state machine: its phase, its deadline, and what the event loop must
/// do at each event (swift-nio style: transitions return actions, the loop performs the I/O). Byte-level request
/// parsing is `HTTPRequestParser`'s job; this machine decides keep-alive, `100 Continue`, dispatch and timeouts.
struct ConnectionStateMachine: Sendable, Equatable {
    enum Phase: Sendable, Equatable {
        /// TLS handshake in progress.
        case handshaking
        /// Waiting for (the rest of) a request head. `idle` until the first byte of the request arrives.
        case readingHead(idle: Bool)
        /// A routed request whose body is arriving.
        case readingBody
        /// A worker runs the handler; the loop neither reads nor closes the socket meanwhile, so the handler may
        /// poll it to learn whether its client has gone.
        case dispatched
        /// The loop writes a response (a handler's, or its own: an error, a redirect, a preflight answer) as fast
        /// as the client takes it, holding no worker.
        case writingResponse(closeAfter: Bool)
        case closed
    }

    /// Timeouts in nanoseconds; `write` is an idle timeout (it restarts whenever the client takes bytes).
    struct Timeouts: Sendable, Equatable {
        var header: UInt64
        var body: UInt64
        var keepAlive: UInt64
        var write: UInt64
        /// Bytes per second a body must average once `bodyRateGrace` has passed since its head; 0 is off.
        var minBodyRate: Int = 0
        var bodyRateGrace: UInt64 = 0
    }

    /// What to do with a request head the router has seen.
    enum HeadAction: Sendable, Equatable {
        /// Read the body (the parser ends at once when there is none); send `100 Continue` first when asked.
        case readBody(sendContinue: Bool)
        /// Answer with the router's own response (404, 405, 307, preflight); keep the connection when `keepAlive`.
        case respond(keepAlive: Bool)
    }

    /// What to do once a response has gone out.
    enum AfterResponse: Sendable, Equatable {
        case close
        /// Parse what is buffered / read the next request.
        case readNext
    }

    /// What to do when the deadline has passed.
    enum TimeoutAction: Sendable, Equatable {
        case none
        /// Close without a word (idle keep-alive, a silent connection, a stalled write or handshake).
        case close
        /// Answer 408 and close (a request was under way).
        case respondRequestTimeoutAndClose
    }

    let timeouts: Timeouts
    private(set) var phase: Phase
    /// Monotonic nanoseconds after which `timeout(now:)` acts; nil while a worker holds the connection.
    private(set) var deadline: UInt64?
    /// The current request allows reuse of the connection.
    private var requestKeepAlive = false
    /// When the current body started (its head arrived) and how many bytes of it came since.
    private var bodyStarted: UInt64 = 0
    private var bodyReceived = 0

    init(tls: Bool, timeouts: Timeouts, now: UInt64) {
        self.timeouts = timeouts
        // A new connection must deliver its head (or handshake) within the header timeout.
        phase = tls ? .handshaking : .readingHead(idle: true)
        deadline = now + timeouts.header
    }

    var isReading: Bool {
        switch phase {
        case .readingHead, .readingBody: return true
        case .handshaking, .dispatched, .writingResponse, .closed: return false
        }
    }

    mutating func handshakeCompleted() {
        guard phase == .handshaking else { return }
        phase = .readingHead(idle: true)
    }

    /// `count` bytes arrived: a request starts (header deadline) or a body progresses (body deadline restarts).
    mutating func bytesReceived(_ count: Int = 1, now: UInt64) {
        switch phase {
        case .readingHead(idle: true):
            phase = .readingHead(idle: false)
            deadline = now + timeouts.header
        case .readingBody:
            deadline = now + timeouts.body
            bodyReceived += count
        case .readingHead(idle: false), .handshaking, .dispatched, .writingResponse, .closed:
            break
        }
    }

    /// A complete head arrived. `routed` says a handler will run (and so read the body); `stopping` says the
    /// server is shutting down.
    mutating func headReceived(_ head: HTTPRequestHead, routed: Bool, bodyAlreadyBuffered: Bool, stopping: Bool, now: UInt64) -> HeadAction {
        let hasBody = head.framing != .none && head.framing != .length(0)
        requestKeepAlive = head.keepAlive && !stopping
        guard routed else {
            // The body is not read, so the connection can only be reused when there is none.
            let keep = requestKeepAlive && !hasBody
            requestKeepAlive = keep
            return .respond(keepAlive: keep)
        }
        phase = .readingBody
        deadline = now + timeouts.body
        bodyStarted = now
        bodyReceived = 0
        return .readBody(sendContinue: hasBody && head.expectsContinue && !bodyAlreadyBuffered)
    }

    /// The body is complete: hand the request to a worker.
    mutating func requestCompleted() {
        phase = .dispatched
        deadline = nil
    }

    /// A response is ready (the handler returned, or the loop made its own): the loop starts writing it.
    mutating func responseQueued(keepAlive: Bool, now: UInt64) {
        phase = .writingResponse(closeAfter: !keepAlive)
        deadline = now + timeouts.write
    }

    /// The client took response bytes: the write idle timeout restarts.
    mutating func bytesSent(now: UInt64) {
        guard case .writingResponse = phase else { return }
        deadline = now + timeouts.write
    }

    /// The response has gone out. The connection is closed when the response said so, the server is stopping,
    /// or the client half-closed and sent nothing more.
    mutating func responseFlushed(stopping: Bool, peerClosed: Bool, hasBufferedBytes: Bool, now: UInt64) -> AfterResponse {
        guard case .writingResponse(let closeAfter) = phase else { return .close }
        if closeAfter || stopping || (peerClosed && !hasBufferedBytes) { return close() }
        return awaitNext(hasBufferedBytes: hasBufferedBytes, now: now)
    }

    private mutating func awaitNext(hasBufferedBytes: Bool, now: UInt64) -> AfterResponse {
        // A pipelined request already buffered is under way: it gets the header timeout, not the idle one.
        phase = .readingHead(idle: !hasBufferedBytes)
        deadline = now + (hasBufferedBytes ? timeouts.header : timeouts.keepAlive)
        return .readNext
    }

    private mutating func close() -> AfterResponse {
        phase = .closed
        deadline = nil
        return .close
    }

    /// The server begins shutting down: idle connections go at once; others finish their exchange.
    func shouldCloseForShutdown(hasBufferedBytes: Bool) -> Bool {
        switch phase {
        case .handshaking: return true
        case .readingHead(let idle): return idle && !hasBufferedBytes
        case .readingBody, .dispatched, .writingResponse, .closed: return false
        }
    }

    func timeout(now: UInt64) -> TimeoutAction {
        if phase == .readingBody, timeouts.minBodyRate > 0, now > bodyStarted, now - bodyStarted > timeouts.bodyRateGrace {
            // The average since the head: bursts are fine, a trickle that keeps the per-read deadline alive is not.
            let elapsed = Double(now - bodyStarted) / 1e9
            if Double(bodyReceived) < Double(timeouts.minBodyRate) * elapsed { return .respondRequestTimeoutAndClose }
        }
        guard let d = deadline, now >= d else { return .none }
        switch phase {
        case .readingHead(idle: false), .readingBody: return .respondRequestTimeoutAndClose
        case .readingHead(idle: true), .handshaking, .writingResponse, .closed: return .close
        case .dispatched: return .none
        }
    }

    mutating func closed() {
        phase = .closed
        deadline = nil
    }
}
