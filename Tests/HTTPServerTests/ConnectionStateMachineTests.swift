import Testing
@testable import HTTPServer

private let timeouts = ConnectionStateMachine.Timeouts(header: 10, body: 20, keepAlive: 30, write: 40)

private func head(_ text: String) throws -> HTTPRequestHead {
    let bytes = Array(text.utf8)
    var parser = HTTPRequestParser()
    let (action, _) = bytes.withUnsafeBytes { parser.next($0) }
    guard case .head(let h) = action else { throw HTTPError(.badRequest, "no head in \(text)") }
    return h
}

@Suite(.tags(.unit)) struct ConnectionStateMachineTests {
    @Test func newConnection_silentPastHeaderTimeout_isClosedWithoutAnswer() {
        let m = ConnectionStateMachine(tls: false, timeouts: timeouts, now: 100)
        #expect(m.phase == .readingHead(idle: true))
        #expect(m.timeout(now: 109) == .none)
        #expect(m.timeout(now: 110) == .close)
    }

    @Test func tlsConnection_startsInHandshake_withHeaderDeadline() {
        var m = ConnectionStateMachine(tls: true, timeouts: timeouts, now: 0)
        #expect(m.phase == .handshaking)
        #expect(m.timeout(now: 10) == .close)
        m.handshakeCompleted()
        #expect(m.phase == .readingHead(idle: true))
    }

    @Test func partialHead_pastDeadline_gets408() {
        var m = ConnectionStateMachine(tls: false, timeouts: timeouts, now: 0)
        m.bytesReceived(now: 3)
        #expect(m.phase == .readingHead(idle: false))
        #expect(m.deadline == 13)
        m.bytesReceived(now: 9)
        #expect(m.deadline == 13, "later bytes of the same head do not extend the header deadline")
        #expect(m.timeout(now: 13) == .respondRequestTimeoutAndClose)
    }

    @Test func routedRequestWithBody_readsBody_andProgressRestartsBodyDeadline() throws {
        var m = ConnectionStateMachine(tls: false, timeouts: timeouts, now: 0)
        let h = try head("PUT /u HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        #expect(m.headReceived(h, routed: true, bodyAlreadyBuffered: false, stopping: false, now: 1) == .readBody(sendContinue: true))
        #expect(m.phase == .readingBody)
        m.bytesReceived(now: 15)
        #expect(m.deadline == 35)
        #expect(m.timeout(now: 35) == .respondRequestTimeoutAndClose)
    }

    @Test func expectContinue_isNotSentWhenBodyAlreadyArrived() throws {
        var m = ConnectionStateMachine(tls: false, timeouts: timeouts, now: 0)
        let h = try head("PUT /u HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        #expect(m.headReceived(h, routed: true, bodyAlreadyBuffered: true, stopping: false, now: 1) == .readBody(sendContinue: false))
    }

    @Test func unroutedRequest_keepsConnectionOnlyWithoutBody() throws {
        var a = ConnectionStateMachine(tls: false, timeouts: timeouts, now: 0)
        #expect(a.headReceived(try head("GET /x HTTP/1.1\r\nHost: x\r\n\r\n"), routed: false, bodyAlreadyBuffered: false, stopping: false, now: 0) == .respond(keepAlive: true))
        var b = ConnectionStateMachine(tls: false, timeouts: timeouts, now: 0)
        let withBody = try head("POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
        #expect(b.headReceived(withBody, routed: false, bodyAlreadyBuffered: false, stopping: false, now: 0) == .respond(keepAlive: false))
        var c = ConnectionStateMachine(tls: false, timeouts: timeouts, now: 0)
        #expect(c.headReceived(try head("GET /x HTTP/1.1\r\nHost: x\r\n\r\n"), routed: false, bodyAlreadyBuffered: false, stopping: true, now: 0) == .respond(keepAlive: false))
    }

    @Test func ownResponse_thenKeepAlive_goesIdleWithKeepAliveDeadline() throws {
        var m = ConnectionStateMachine(tls: false, timeouts: timeouts, now: 0)
        _ = m.headReceived(try head("GET /x HTTP/1.1\r\nHost: x\r\n\r\n"), routed: false, bodyAlreadyBuffered: false, stopping: false, now: 0)
        m.responseQueued(keepAlive: true, now: 2)
        #expect(m.phase == .writingResponse(closeAfter: false))
        #expect(m.timeout(now: 42) == .close, "a client that never reads the response is dropped")
        #expect(m.responseFlushed(stopping: false, peerClosed: false, hasBufferedBytes: false, now: 5) == .readNext)
        #expect(m.phase == .readingHead(idle: true))
        #expect(m.deadline == 35)
        #expect(m.timeout(now: 35) == .close)
    }

    @Test func workerResponse_keepAlive_pipelinedBytesGetHeaderDeadline() throws {
        var m = ConnectionStateMachine(tls: false, timeouts: timeouts, now: 0)
        _ = m.headReceived(try head("GET /x HTTP/1.1\r\nHost: x\r\n\r\n"), routed: true, bodyAlreadyBuffered: false, stopping: false, now: 0)
        m.requestCompleted()
        #expect(m.phase == .dispatched)
        #expect(m.timeout(now: 1_000_000) == .none, "a running handler is never timed out by the loop")
        m.responseQueued(keepAlive: true, now: 45)
        #expect(m.responseFlushed(stopping: false, peerClosed: false, hasBufferedBytes: true, now: 50) == .readNext)
        #expect(m.phase == .readingHead(idle: false))
        #expect(m.deadline == 60)
    }

    @Test func workerResponse_closesWhenAskedStoppingOrPeerGone() throws {
        for (keep, stopping, peerClosed) in [(false, false, false), (true, true, false), (true, false, true)] {
            var m = ConnectionStateMachine(tls: false, timeouts: timeouts, now: 0)
            _ = m.headReceived(try head("GET /x HTTP/1.1\r\nHost: x\r\n\r\n"), routed: true, bodyAlreadyBuffered: false, stopping: false, now: 0)
            m.requestCompleted()
            m.responseQueued(keepAlive: keep, now: 1)
            #expect(m.responseFlushed(stopping: stopping, peerClosed: peerClosed, hasBufferedBytes: false, now: 1) == .close)
            #expect(m.phase == .closed)
        }
    }

    @Test func responseWrite_timeoutIsIdle_restartsWhenClientTakesBytes() throws {
        var m = ConnectionStateMachine(tls: false, timeouts: timeouts, now: 0)
        _ = m.headReceived(try head("GET /x HTTP/1.1\r\nHost: x\r\n\r\n"), routed: true, bodyAlreadyBuffered: false, stopping: false, now: 0)
        m.requestCompleted()
        m.responseQueued(keepAlive: true, now: 10)
        #expect(m.deadline == 50)
        m.bytesSent(now: 45)
        #expect(m.timeout(now: 60) == .none, "a slow reader that keeps reading is not cut off")
        #expect(m.timeout(now: 85) == .close, "one that stops reading is")
    }

    @Test func body_slowerThanMinimumRateAfterGrace_getsRequestTimeout() throws {
        // 100 bytes/s after a grace of 5 s; the per-read body timeout of 60 s alone would never fire here.
        let rated = ConnectionStateMachine.Timeouts(
            header: 10, body: 60_000_000_000, keepAlive: 30, write: 40, minBodyRate: 100, bodyRateGrace: 5_000_000_000)
        var m = ConnectionStateMachine(tls: false, timeouts: rated, now: 0)
        _ = m.headReceived(try head("PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"), routed: true, bodyAlreadyBuffered: false, stopping: false, now: 0)
        m.bytesReceived(3, now: 1_000_000_000)
        #expect(m.timeout(now: 4_000_000_000) == .none, "within the grace period a slow start is fine")
        m.bytesReceived(2_000, now: 5_500_000_000)
        #expect(m.timeout(now: 6_000_000_000) == .none, "2,003 bytes in 6 s is above 100 bytes/s")
        m.bytesReceived(1, now: 19_000_000_000)
        #expect(m.timeout(now: 21_000_000_000) == .respondRequestTimeoutAndClose, "2,004 bytes in 21 s is below it")
    }

    @Test func shutdown_closesOnlyIdleAndHandshakingConnections() throws {
        let idle = ConnectionStateMachine(tls: false, timeouts: timeouts, now: 0)
        #expect(idle.shouldCloseForShutdown(hasBufferedBytes: false))
        #expect(!idle.shouldCloseForShutdown(hasBufferedBytes: true))
        #expect(ConnectionStateMachine(tls: true, timeouts: timeouts, now: 0).shouldCloseForShutdown(hasBufferedBytes: false))
        var busy = ConnectionStateMachine(tls: false, timeouts: timeouts, now: 0)
        _ = busy.headReceived(try head("PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\n"), routed: true, bodyAlreadyBuffered: false, stopping: false, now: 0)
        #expect(!busy.shouldCloseForShutdown(hasBufferedBytes: false))
    }
}
