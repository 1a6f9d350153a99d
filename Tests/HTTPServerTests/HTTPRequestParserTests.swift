import Testing
@testable import HTTPServer

/// Drives a parser over `input` delivered in pieces of `step` bytes; returns what it produced.
private struct ParseRun {
    var heads: [HTTPRequestHead] = []
    var bodies: [[UInt8]] = []
    var ends = 0
    var error: HTTPParseError?
    var leftover = 0

    init(_ input: String, step: Int = Int.max, limits: HTTPLimits = HTTPLimits()) {
        self.init(Array(input.utf8), step: step, limits: limits)
    }

    init(_ bytes: [UInt8], step: Int = Int.max, limits: HTTPLimits = HTTPLimits()) {
        var parser = HTTPRequestParser(limits: limits)
        var start = 0
        var available = 0
        var current: [UInt8] = []
        while true {
            available = min(bytes.count, available + max(1, min(step, bytes.count)))
            while true {
                let (action, consumed) = bytes.withUnsafeBytes { parser.next(UnsafeRawBufferPointer(rebasing: $0[start..<available])) }
                let window = start
                start += consumed
                switch action {
                case .needMore:
                    if consumed > 0 { continue }
                case .head(let h):
                    heads.append(h)
                    current = []
                    continue
                case .body(let r):
                    current.append(contentsOf: bytes[(window + r.lowerBound)..<(window + r.upperBound)])
                    continue
                case .end:
                    ends += 1
                    bodies.append(current)
                    current = []
                    continue
                case .error(let e):
                    error = e
                    return
                }
                break
            }
            if available == bytes.count { break }
        }
        leftover = bytes.count - start
    }
}

@Suite(.tags(.unit)) struct HTTPRequestParserTests {
    @Test func simpleGet_givesHeadAndEnd() {
        let r = ParseRun("GET /info/?a=1 HTTP/1.1\r\nHost: x\r\nUser-Agent: t\r\n\r\n")
        #expect(r.heads.count == 1)
        #expect(r.ends == 1)
        #expect(r.heads.first?.method == .get)
        #expect(r.heads.first?.target == "/info/?a=1")
        #expect(r.heads.first?.framing == HTTPBodyFraming.none)
        #expect(r.heads.first?.keepAlive == true)
        #expect(r.heads.first?.headers["user-agent"] == "t")
    }

    @Test func headerLookup_isCaseInsensitive_andKeepsOrder() {
        let r = ParseRun("GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nx-a: 2\r\n\r\n")
        #expect(r.heads.first?.headers.values("X-A") == ["1", "2"])
        #expect(r.heads.first?.headers["HOST"] == "x")
    }

    @Test func byteByByteDelivery_givesTheSameRequest() {
        let text = "POST /u HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world"
        let whole = ParseRun(text)
        let split = ParseRun(text, step: 1)
        #expect(whole.bodies == [Array("hello world".utf8)])
        #expect(split.bodies == whole.bodies)
        #expect(split.heads.first?.target == "/u")
    }

    @Test func chunkedBody_withExtensionsAndTrailers_isDecoded() {
        let text = "POST /u HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + "5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
        for step in [1, 3, 1000] {
            let r = ParseRun(text, step: step)
            #expect(r.error == nil)
            #expect(r.bodies == [Array("hello world".utf8)], "step \(step)")
        }
    }

    @Test func pipelinedRequests_areParsedInOrder() {
        let r = ParseRun("GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhiGET /c HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(r.heads.map(\.target) == ["/a", "/b", "/c"])
        #expect(r.bodies == [[], Array("hi".utf8), []])
    }

    @Test func leadingEmptyLines_areIgnored() {
        let r = ParseRun("\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(r.heads.count == 1)
    }

    @Test func http10_closesUnlessKeepAlive() {
        #expect(ParseRun("GET / HTTP/1.0\r\n\r\n").heads.first?.keepAlive == false)
        #expect(ParseRun("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").heads.first?.keepAlive == true)
        #expect(ParseRun("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").heads.first?.keepAlive == false)
    }

    @Test func absoluteForm_isReducedToPathAndQuery() {
        #expect(ParseRun("GET http://example.org:8000/info/?x=1 HTTP/1.1\r\nHost: example.org\r\n\r\n").heads.first?.target == "/info/?x=1")
        #expect(ParseRun("GET http://example.org HTTP/1.1\r\nHost: example.org\r\n\r\n").heads.first?.target == "/")
    }

    @Test func expect100Continue_isReported_otherExpectationsGet417() {
        #expect(ParseRun("PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n").heads.first?.expectsContinue == true)
        #expect(ParseRun("PUT / HTTP/1.1\r\nHost: x\r\nExpect: something\r\n\r\n").error?.status == .expectationFailed)
    }

    private func status(_ text: String, limits: HTTPLimits = HTTPLimits()) -> Int? {
        ParseRun(text, limits: limits).error?.status.code
    }

    @Test func obsFold_isRejected() {
        #expect(status("GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n  b\r\n\r\n") == 400)
    }

    @Test func bareCR_andBareLF_areRejected() {
        #expect(status("GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n") == 400)
        #expect(status("GET / HTTP/1.1\nHost: x\r\n\r\n") == 400)
    }

    @Test func invalidTokens_areRejected() {
        #expect(status("G(T / HTTP/1.1\r\nHost: x\r\n\r\n") == 400)
        #expect(status("GET / HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n") == 400)
        #expect(status("GET / HTTP/1.1\r\nHost: x\r\nName : v\r\n\r\n") == 400)
        #expect(status("GET /a b HTTP/1.1\r\nHost: x\r\n\r\n") == 400)
        #expect(status("GET  / HTTP/1.1\r\nHost: x\r\n\r\n") == 400)
        #expect(status("GET / HTTP/1.1\r\nHost: x\r\nX: a\u{01}b\r\n\r\n") == 400)
    }

    @Test func unsupportedVersion_gets505_garbageVersion400() {
        #expect(status("GET / HTTP/2.0\r\nHost: x\r\n\r\n") == 505)
        #expect(status("GET / HTTX/1.1\r\nHost: x\r\n\r\n") == 400)
    }

    @Test func missingOrDuplicateHost_isRejectedIn11() {
        #expect(status("GET / HTTP/1.1\r\n\r\n") == 400)
        #expect(status("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n") == 400)
        #expect(status("GET / HTTP/1.0\r\n\r\n") == nil)
    }

    @Test func duplicateOrConflictingContentLength_isRejected() {
        #expect(status("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab") == 400)
        #expect(status("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\na") == 400)
        #expect(status("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1, 2\r\n\r\nab") == 400)
        #expect(status("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n") == 400)
        #expect(status("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n") == 400)
    }

    @Test func contentLengthWithTransferEncoding_isRejected() {
        #expect(status("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n") == 400)
    }

    @Test func unknownTransferCoding_gets501_chunkedNotLast400() {
        #expect(status("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n") == 501)
        #expect(status("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n") == 400)
        #expect(status("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n") == 400)
    }

    @Test func chunkSizeOverflow_andGarbage_areRejected() {
        let head = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        #expect(status(head + "fffffffffffffffff\r\n") == 400)
        #expect(status(head + "zz\r\n") == 400)
        #expect(status(head + "5\r\nhelloXX") == 400)
        var limits = HTTPLimits()
        limits.maxBodyBytes = 10
        #expect(status(head + "b\r\n", limits: limits) == 413)
    }

    @Test func limits_give414_431_413() {
        var limits = HTTPLimits()
        limits.maxURILength = 100
        limits.maxHeaderBytes = 1000
        limits.maxHeaderCount = 5
        limits.maxBodyBytes = 10
        #expect(status("GET /" + String(repeating: "a", count: 200) + " HTTP/1.1\r\nHost: x\r\n\r\n", limits: limits) == 414)
        #expect(status("GET /" + String(repeating: "a", count: 2000), limits: limits) == 414)
        #expect(status("GET / HTTP/1.1\r\nHost: x\r\nX: " + String(repeating: "v", count: 2000) + "\r\n\r\n", limits: limits) == 431)
        let many = (0..<6).map { "X-\($0): v\r\n" }.joined()
        #expect(status("GET / HTTP/1.1\r\nHost: x\r\n" + many + "\r\n", limits: limits) == 431)
        #expect(status("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n", limits: limits) == 413)
    }

    @Test func incompleteHead_needsMore_andConsumesNothing() {
        let r = ParseRun("GET / HTTP/1.1\r\nHost: x\r\n")
        #expect(r.heads.isEmpty)
        #expect(r.error == nil)
        #expect(r.leftover == "GET / HTTP/1.1\r\nHost: x\r\n".utf8.count)
    }

    @Test func failedParser_staysFailed() {
        var p = HTTPRequestParser()
        let bad = Array("BAD\r\n\r\n".utf8)
        _ = bad.withUnsafeBytes { p.next($0) }
        let good = Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
        let (action, _) = good.withUnsafeBytes { p.next($0) }
        guard case .error = action else {
            Issue.record("expected the parser to stay failed, got \(action)")
            return
        }
    }
}
