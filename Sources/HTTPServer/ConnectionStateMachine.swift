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
        /// A worker runs the handler and writes the response; the loop must not touch the socket.
        case dispatched
        /// The loop writes a response it made itself (an error, a redirect, a preflight answer).
        case writingOwnResponse(closeAfter: Bool)
        case closed
    }

    /// Timeouts in nanoseconds.
    struct Timeouts: Sendable, Equatable {
        var header: UInt64
        var body: UInt64
        var keepAlive: UInt64
        var write: UInt64
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

    init(tls: Bool, timeouts: Timeouts, now: UInt64) {
        self.timeouts = timeouts
        // A new connection must deliver its head (or handshake) within the header timeout.
        phase = tls ? .handshaking : .readingHead(idle: true)
        deadline = now + timeouts.header
    }

    var isReading: Bool {
        switch phase {
        case .readingHead, .readingBody: return true
        case .handshaking, .dispatched, .writingOwnResponse, .closed: return false
        }
    }

    mutating func handshakeCompleted() {
        guard phase == .handshaking else { return }
        phase = .readingHead(idle: true)
    }

    /// Bytes arrived: a request starts (header deadline) or a body progresses (body deadline restarts).
    mutating func bytesReceived(now: UInt64) {
        switch phase {
        case .readingHead(idle: true):
            phase = .readingHead(idle: false)
            deadline = now + timeouts.header
        case .readingBody:
            deadline = now + timeouts.body
        case .readingHead(idle: false), .handshaking, .dispatched, .writingOwnResponse, .closed:
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
        return .readBody(sendContinue: hasBody && head.expectsContinue && !bodyAlreadyBuffered)
    }

    /// The body is complete: hand the request to a worker.
    mutating func requestCompleted() {
        phase = .dispatched
        deadline = nil
    }

    /// The loop starts writing its own response.
    mutating func ownResponseQueued(keepAlive: Bool, now: UInt64) {
        phase = .writingOwnResponse(closeAfter: !keepAlive)
        deadline = now + timeouts.write
    }

    /// The loop finished writing its own response.
    mutating func ownResponseFlushed(stopping: Bool, hasBufferedBytes: Bool, now: UInt64) -> AfterResponse {
        guard case .writingOwnResponse(let closeAfter) = phase else { return .close }
        if closeAfter || stopping { return close() }
        return awaitNext(hasBufferedBytes: hasBufferedBytes, now: now)
    }

    /// A worker finished writing the response; `keepAlive` is false when it had to close (or the write failed).
    mutating func responseFinished(keepAlive: Bool, stopping: Bool, peerClosed: Bool, hasBufferedBytes: Bool, now: UInt64) -> AfterResponse {
        guard phase == .dispatched else { return .close }
        if !keepAlive || stopping || (peerClosed && !hasBufferedBytes) { return close() }
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
        case .readingBody, .dispatched, .writingOwnResponse, .closed: return false
        }
    }

    func timeout(now: UInt64) -> TimeoutAction {
        guard let d = deadline, now >= d else { return .none }
        switch phase {
        case .readingHead(idle: false), .readingBody: return .respondRequestTimeoutAndClose
        case .readingHead(idle: true), .handshaking, .writingOwnResponse, .closed: return .close
        case .dispatched: return .none
        }
    }

    mutating func closed() {
        phase = .closed
        deadline = nil
    }
}
