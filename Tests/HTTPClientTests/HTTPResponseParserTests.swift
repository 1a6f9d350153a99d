import Testing
@testable import HTTPClient

@Suite(.tags(.unit))
struct HTTPResponseParserTests {
    private func parseByteByByte(_ text: String, method: String = "GET") throws -> HTTPClientResponse? {
        var p = HTTPResponseParser(requestMethod: method)
        for b in Array(text.utf8) where try p.feed([b]) { break }
        if !p.isComplete { try p.finish() }
        return p.response
    }

    @Test func contentLength_byteByByte_givesBodyAndHeaders() throws {
        let r = try #require(try parseByteByByte("HTTP/1.1 201 Created\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhelloEXTRA"))
        #expect(r.status == 201)
        #expect(r.reason == "Created")
        #expect(r.headers["x-a"] == "b")
        #expect(r.text == "hello")
    }

    @Test func chunked_withExtensionsAndTrailers_isReassembled() throws {
        let text = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-T: 1\r\n\r\n"
        let r = try #require(try parseByteByByte(text))
        #expect(r.text == "Wikipedia in\r\n\r\nchunks.")
    }

    @Test func drainBody_handsOutEachPieceOnce_headKnownBeforeTheBodyEnds_limitCountsDrainedBytes() throws {
        var p = HTTPResponseParser(maxBodyBytes: 8)
        #expect(p.head == nil)
        #expect(try !p.feed(Array("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: b\r\n\r\n3\r\nabc\r\n".utf8)))
        #expect(p.head?.status == 200)
        #expect(p.head?.headers["X-A"] == "b")
        #expect(p.drainBody() == Array("abc".utf8))
        #expect(p.drainBody().isEmpty)
        #expect(try !p.feed(Array("4\r\ndefg\r\n".utf8)))
        #expect(p.drainBody() == Array("defg".utf8))
        // 3 + 4 drained already: a 2-byte chunk passes the 8-byte limit even though nothing is held now.
        #expect(throws: HTTPClientError.self) { try p.feed(Array("2\r\nhi\r\n".utf8)) }
    }

    @Test func chunked_inOneFeed_completes() throws {
        var p = HTTPResponseParser()
        let done = try p.feed(Array("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n".utf8))
        #expect(done)
        #expect(p.response?.text == "abc")
    }

    @Test func noLength_readsUntilClose() throws {
        var p = HTTPResponseParser()
        #expect(try !p.feed(Array("HTTP/1.0 200 OK\r\n\r\nall of ".utf8)))
        #expect(try !p.feed(Array("it".utf8)))
        try p.finish()
        #expect(p.response?.text == "all of it")
    }

    @Test func headResponse_hasNoBody_despiteContentLength() throws {
        let r = try #require(try parseByteByByte("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", method: "HEAD"))
        #expect(r.body.isEmpty)
    }

    @Test func continueHead_isSkipped() throws {
        let r = try #require(try parseByteByByte("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"))
        #expect(r.status == 204)
    }

    @Test func truncatedBody_isConnectionClosedError() throws {
        var p = HTTPResponseParser()
        try p.feed(Array("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc".utf8))
        #expect(throws: HTTPClientError(.connectionClosed, "the server closed the connection before the response was complete")) {
            try p.finish()
        }
    }

    @Test func garbageStatusLine_isMalformed() {
        var p = HTTPResponseParser()
        #expect(throws: HTTPClientError.self) { try p.feed(Array("SSH-2.0-OpenSSH\r\n\r\n".utf8)) }
    }

    @Test func badChunkSize_isMalformed() {
        var p = HTTPResponseParser()
        let e = #expect(throws: HTTPClientError.self) {
            try p.feed(Array("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".utf8))
        }
        #expect(e?.kind == .malformedResponse)
    }

    @Test func bodyOverLimit_isRefused() {
        var p = HTTPResponseParser(maxBodyBytes: 4)
        let e = #expect(throws: HTTPClientError.self) {
            try p.feed(Array("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n".utf8))
        }
        #expect(e?.kind == .responseTooLarge)
    }

    @Test func requestHead_addsHostLengthAndCredentialsFromURL() throws {
        let t = try HTTPClientTarget(URL(string: "http://bob:pw@example.org:8080/a%20b?x=1")!)
        let head = String(decoding: HTTPClient.requestHead(method: "POST", target: t, headers: ["X-Evil": "a\r\nInjected: 1"], bodyCount: 3), as: UTF8.self)
        #expect(head.hasPrefix("POST /a%20b?x=1 HTTP/1.1\r\n"))
        #expect(head.contains("Host: example.org:8080\r\n"))
        #expect(head.contains("Content-Length: 3\r\n"))
        #expect(head.contains("Authorization: \(basicAuthorization(user: "bob", password: "pw"))\r\n"))
        #expect(!head.contains("Injected"))
    }

    @Test func target_refusesNonHTTPSchemes() {
        #expect(throws: HTTPClientError.self) { try HTTPClientTarget(URL(string: "ftp://x/y")!) }
    }
}

import Foundation
