import Synchronization
import Testing
@testable import HTTPServer

private func request(_ method: HTTPMethod, _ target: String, headers: [(String, String)] = []) throws -> HTTPRequest {
    var h = HTTPHeaders(headers)
    if !h.contains("Host") { h.add("Host", "127.0.0.1:8000") }
    return try HTTPRequest(method: method, target: target, headers: h)
}

private func bodyText(_ r: HTTPResponse) -> String {
    if case .bytes(let b) = r.body { return String(decoding: b, as: UTF8.self) }
    return ""
}

@Suite(.tags(.router)) struct RouterTests {
    private func makeRouter(_ options: HTTPRouter.Options = HTTPRouter.Options()) -> HTTPRouter {
        var r = HTTPRouter(options: options)
        r.get("/info/") { _ in .text("info") }
        r.get("/datastore/image") { req in .text("get \(req.queryValue("image") ?? "-")") }
        r.head("/datastore/image") { _ in .text("") }
        r.post("/infer/{model}") { req in .text("infer \(req.pathParameters["model"] ?? "?")") }
        r.get("/static/{rest:path}") { req in .text("static \(req.pathParameters["rest"] ?? "?")") }
        r.get("/fail") { _ in throw HTTPError(.conflict, "busy") }
        r.get("/crash") { _ in throw CancellationError() }
        return r
    }

    @Test func headCheck_refusalAnswersWithoutTheHandler_nilLetsThrough() throws {
        var r = HTTPRouter()
        r.put("/upload/{id}") { _ in .text("handled") }
        r.get("/open") { _ in .text("open") }
        r.setHeadChecks { _, template -> HTTPHeadCheck? in
            if template == "/open" { return nil }
            return { headers in headers["X-Key"] == "k" ? nil : .detail("no", status: .unauthorized) }
        }
        let refused = r.resolve(method: .put, path: "/upload/1", rawQuery: nil,
                                headers: HTTPHeaders([("Host", "h"), ("Content-Length", "1000000000")]), isSecure: false)
        guard case .response(let resp) = refused else {
            Issue.record("the head check did not refuse")
            return
        }
        #expect(resp.status.code == 401)
        #expect(bodyText(r.respond(to: try request(.put, "/upload/1", headers: [("X-Key", "k")]))) == "handled")
        #expect(bodyText(r.respond(to: try request(.get, "/open"))) == "open")
        // Routing errors come before the check: a wrong method is still 405.
        #expect(r.respond(to: try request(.delete, "/upload/1")).status.code == 405)
    }

    @Test func loopResponder_answersWithoutTheHandler_nilOrAFileBodyRunsTheHandler() throws {
        let answer = Mutex<HTTPResponse?>(nil)
        var r = HTTPRouter()
        r.add(.get, "/doc", loopResponder: { _ in answer.withLock { $0 } }) { _ in .text("handler") }
        func resolved() -> HTTPRouter.Resolution {
            r.resolve(method: .get, path: "/doc", rawQuery: nil, headers: HTTPHeaders([("Host", "h")]), isSecure: false)
        }
        guard case .handler = resolved() else {
            Issue.record("a nil answer did not go to the handler")
            return
        }
        answer.withLock { $0 = .text("from the loop") }
        guard case .response(let resp) = resolved() else {
            Issue.record("the loop's answer was not used")
            return
        }
        #expect(bodyText(resp) == "from the loop")
        #expect(bodyText(r.respond(to: try request(.get, "/doc"))) == "from the loop")
        // The loop writes only bodies in memory.
        answer.withLock { $0 = HTTPResponse(body: .file(path: "/dev/null", deleteAfter: false)) }
        guard case .handler = resolved() else {
            Issue.record("a file body was left to the loop")
            return
        }
        // Other methods on the path are still routed as before.
        #expect(r.respond(to: try request(.post, "/doc")).status.code == 405)
    }

    /// The head check runs first; a policy wrapped around the handlers drops the responder, which would skip it.
    @Test func loopResponder_afterTheHeadCheck_droppedByWrapHandlers() throws {
        var r = HTTPRouter()
        r.add(.get, "/doc", loopResponder: { _ in .text("cached") }) { _ in .text("handler") }
        r.setHeadChecks { _, _ in { headers in headers["X-Key"] == "k" ? nil : .detail("no", status: .unauthorized) } }
        #expect(r.respond(to: try request(.get, "/doc")).status.code == 401)
        #expect(bodyText(r.respond(to: try request(.get, "/doc", headers: [("X-Key", "k")]))) == "cached")
        r.wrapHandlers { _, _, handler in
            { req in req.headers["X-Key"] == "k" ? try handler(req) : .detail("wrapped", status: .forbidden) }
        }
        #expect(bodyText(r.respond(to: try request(.get, "/doc", headers: [("X-Key", "k")]))) == "handler")
    }

    @Test func parameterSegment_isCapturedAndDecoded() throws {
        let r = makeRouter().respond(to: try request(.post, "/infer/seg%20spleen"))
        #expect(bodyText(r) == "infer seg spleen")
    }

    @Test func pathCatchAll_takesTheRest() throws {
        #expect(bodyText(makeRouter().respond(to: try request(.get, "/static/js/app.js"))) == "static js/app.js")
    }

    @Test func unknownPath_returns404Detail() throws {
        let r = makeRouter().respond(to: try request(.get, "/nope"))
        #expect(r.status.code == 404)
        #expect(bodyText(r) == #"{"detail":"Not Found"}"#)
    }

    @Test func wrongMethod_returns405WithAllow() throws {
        let r = makeRouter().respond(to: try request(.delete, "/datastore/image"))
        #expect(r.status.code == 405)
        #expect(bodyText(r) == #"{"detail":"Method Not Allowed"}"#)
        #expect(r.headers["Allow"] == "GET, HEAD")
    }

    @Test func headOnGetRoute_is405ByDefault_andServedWithAutomaticHead() throws {
        #expect(makeRouter().respond(to: try request(.head, "/info/")).status.code == 405)
        var o = HTTPRouter.Options()
        o.automaticHead = true
        #expect(makeRouter(o).respond(to: try request(.head, "/info/")).status.code == 200)
    }

    @Test func missingTrailingSlash_redirects307_keepingQuery() throws {
        let r = makeRouter().respond(to: try request(.get, "/info?token=abc"))
        #expect(r.status.code == 307)
        #expect(r.headers["Location"] == "http://127.0.0.1:8000/info/?token=abc")
    }

    @Test func extraTrailingSlash_redirectsToRegisteredForm() throws {
        let r = makeRouter().respond(to: try request(.put, "/datastore/image/"))
        #expect(r.status.code == 307)
        #expect(r.headers["Location"] == "http://127.0.0.1:8000/datastore/image")
    }

    @Test func thrownHTTPError_becomesDetail_otherErrorsPlain500() throws {
        let r = makeRouter().respond(to: try request(.get, "/fail"))
        #expect(r.status.code == 409)
        #expect(bodyText(r) == #"{"detail":"busy"}"#)
        let c = makeRouter().respond(to: try request(.get, "/crash"))
        #expect(c.status.code == 500)
        #expect(bodyText(c) == "Internal Server Error")
        #expect(c.headers["Content-Type"] == "text/plain; charset=utf-8")
    }

    @Test func cors_echoesOriginWithCredentials_andVary() throws {
        let r = makeRouter().respond(to: try request(.get, "/info/", headers: [("Origin", "http://example.org")]))
        #expect(r.headers["Access-Control-Allow-Origin"] == "http://example.org")
        #expect(r.headers["Access-Control-Allow-Credentials"] == "true")
        #expect(r.headers["Vary"] == "Origin")
    }

    @Test func corsPreflight_isAnsweredWithoutRoute() throws {
        let r = makeRouter().respond(to: try request(.options, "/info/", headers: [
            ("Origin", "http://example.org"), ("Access-Control-Request-Method", "GET"),
            ("Access-Control-Request-Headers", "x-token"),
        ]))
        #expect(r.status.code == 200)
        #expect(bodyText(r) == "OK")
        #expect(r.headers["Access-Control-Allow-Origin"] == "http://example.org")
        #expect(r.headers["Access-Control-Allow-Headers"] == "x-token")
        #expect(r.headers["Access-Control-Allow-Methods"]?.contains("PUT") == true)
    }

    @Test func corsOriginList_refusesOthers() throws {
        var o = HTTPRouter.Options()
        o.cors = CORSPolicy(allowedOrigins: ["http://good.org"])
        let bad = makeRouter(o).respond(to: try request(.options, "/info/", headers: [
            ("Origin", "http://evil.org"), ("Access-Control-Request-Method", "GET"),
        ]))
        #expect(bad.status.code == 400)
        let simple = makeRouter(o).respond(to: try request(.get, "/info/", headers: [("Origin", "http://evil.org")]))
        #expect(simple.headers["Access-Control-Allow-Origin"] == nil)
    }

    @Test func queryString_isDecodedWithPlus() throws {
        let req = try request(.get, "/datastore/image?image=a+b%2Fc&x&image=2")
        #expect(req.queryValue("image") == "a b/c")
        #expect(req.queryValues("image") == ["a b/c", "2"])
        #expect(req.queryValue("x") == "")
    }

    @Test func detail_escapesJSON() {
        #expect(bodyText(.detail("a \"quoted\"\nline", status: .badRequest)) == #"{"detail":"a \"quoted\"\nline"}"#)
    }
}
