import Foundation
import Testing
@testable import HTTPServer

/// `HTTPRequestContext.isPeerGone`: what long handlers (inference) poll to stop work for a client that left.
@Suite(.tags(.unit)) struct PeerGoneTests {
    func connectedPair() throws -> (Int32, Int32) {
        var fds: [Int32] = [-1, -1]
        try #require(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0)
        return (fds[0], fds[1])
    }

    @Test func isPeerGone_whileTheClientIsConnected_isFalse() throws {
        let (server, client) = try connectedPair()
        defer { close(server); close(client) }
        let context = HTTPRequestContext(peerFD: server)
        #expect(!context.isPeerGone)
        // Pipelined bytes waiting to be read are no disconnect.
        _ = send(client, "GET", 3, 0)
        #expect(!context.isPeerGone)
    }

    @Test func isPeerGone_afterTheClientClosed_isTrue() throws {
        let (server, client) = try connectedPair()
        defer { close(server) }
        let context = HTTPRequestContext(peerFD: server)
        close(client)
        #expect(context.isPeerGone)
    }

    @Test func isPeerGone_forARequestBuiltInCode_isFalse() {
        #expect(!HTTPRequestContext().isPeerGone)
    }
}
