import Foundation
import Synchronization
import HTTPServer
import MONAILabel
import Testing
import WebToken
@testable import MONAILabelServer

/// Access control over the real route list: every route x every role, then a few routes end to end.
@Suite(.tags(.router)) struct AuthRouterTests {
    static let key = SigningKey.generate(.es256)!
    static let settings: AuthSettings = {
        var s = AuthSettings()
        s.enable = true
        s.realmURI = "http://127.0.0.1:9/realms/test"
        return s
    }()

    /// Upstream 0.8.5's RBAC(...) per route, written out from monailabel/endpoints/*.py independently of
    /// `RouteRoles` ("-" open, "*" any valid token).
    static let upstream: [String: String] = [
        "GET /": "-", "GET /auth/": "-", "POST /auth/token": "-", "GET /auth/token/valid": "*",
        "GET /info/": "monailabel-user", "POST /activelearning/{strategy}": "monailabel-user",
        "POST /infer/{model}": "monailabel-user",
        "GET /infer/": "monailabel-user",  // not upstream's: the queue report, a status read like GET /train/
        "GET /batch/infer": "monailabel-user", "POST /batch/infer/{model}": "monailabel-admin",
        "DELETE /batch/infer": "monailabel-admin",
        "GET /datastore/": "monailabel-user", "PUT /datastore/": "monailabel-annotator",
        "PUT /datastore/image": "monailabel-annotator", "DELETE /datastore/": "monailabel-admin",
        "DELETE /datastore/image": "monailabel-admin", "GET /datastore/image": "monailabel-user",
        "HEAD /datastore/image": "monailabel-user", "HEAD /datastore/label": "monailabel-user",
        "GET /datastore/image/info": "monailabel-user", "PUT /datastore/image/info": "monailabel-annotator",
        "PUT /datastore/label": "monailabel-annotator", "DELETE /datastore/label": "monailabel-admin",
        "GET /datastore/label": "monailabel-user", "GET /datastore/label/info": "monailabel-user",
        "PUT /datastore/label/info": "monailabel-annotator", "PUT /datastore/updatelabelinfo": "monailabel-annotator",
        "GET /datastore/dataset": "monailabel-annotator",
        "GET /logs/": "monailabel-admin", "GET /logs/gpu": "monailabel-admin",
        "GET /model/{model}": "monailabel-admin", "GET /model/info/{model}": "monailabel-admin",
        "PUT /model/{model}": "monailabel-annotator", "DELETE /model/{model}": "monailabel-annotator",
        "GET /scoring/": "monailabel-user", "POST /scoring/": "monailabel-annotator",
        "POST /scoring/{method}": "monailabel-annotator", "DELETE /scoring/": "monailabel-annotator",
        "PUT /session/": "monailabel-user", "GET /session/{session_id}": "monailabel-user",
        "DELETE /session/{session_id}": "monailabel-user",
        "GET /train/": "monailabel-user", "POST /train/": "monailabel-admin", "POST /train/{model}": "monailabel-admin",
        "DELETE /train/": "monailabel-admin",
        "GET /ohif": "monailabel-user", "GET /ohif/{path:path}": "monailabel-user",
        "GET /proxy/dicom/qido/{path:path}": "monailabel-user", "POST /proxy/dicom/qido/{path:path}": "monailabel-user",
        "GET /proxy/dicom/wado/{path:path}": "monailabel-user", "POST /proxy/dicom/wado/{path:path}": "monailabel-user",
        "GET /proxy/dicom/stow/{path:path}": "monailabel-user", "POST /proxy/dicom/stow/{path:path}": "monailabel-user",
        // Not upstream's: previews read images like GET /datastore/image; the API description is open as FastAPI's.
        "GET /datastore/image/preview": "monailabel-user", "GET /docs": "-", "GET /openapi.json": "-",
    ]
    static let roles = ["monailabel-admin", "monailabel-reviewer", "monailabel-annotator", "monailabel-user"]

    static func authenticator(keys: KeyCache = KeyCache { KeySet(byKid: ["k1": key]) }) -> Authenticator {
        Authenticator(settings: settings, source: .provider(IdentityProvider(settings: settings)), keys: keys, log: .silent)
    }

    static func token(roles: [String], user: String = "alice", key: SigningKey = key, kid: String = "k1",
                      exp: TimeInterval = Date().timeIntervalSince1970 + 300) -> String
    {
        try! JWT.sign(claims: ["preferred_username": user, "email": "\(user)@x", "name": user.capitalized, "exp": exp,
                               "realm_access": ["roles": roles]], key: key, kid: kid)
    }

    /// The production route list with handlers that only say "reached", guarded as `makeRouter` guards them.
    static func stubRouter() throws -> (HTTPRouter, [(HTTPMethod, String)]) {
        let c = try TestClient()
        var r = makeRouter(app: c.app, log: .silent, corsOrigins: [], authenticator: authenticator())
        let routes = r.registeredRoutes.map { ($0.method, $0.template) }
        var stub = HTTPRouter()
        for (m, t) in routes { stub.add(m, t) { _ in .json(.string("reached")) } }
        let a = authenticator()
        stub.wrapHandlers(a.guarded)
        stub.setHeadChecks(a.headCheck)
        r = stub
        return (r, routes)
    }

    static func path(_ template: String) -> String {
        template.split(separator: "/", omittingEmptySubsequences: false).map { s in
            s.hasPrefix("{") ? (s.hasSuffix(":path}") ? "a/b" : "x1") : String(s)
        }.joined(separator: "/")
    }

    static func send(_ r: HTTPRouter, _ m: HTTPMethod, _ target: String, token: String?) throws -> HTTPResponse {
        var headers: [(String, String)] = [("Host", "test")]
        if let token { headers.append(("Authorization", "Bearer \(token)")) }
        return r.respond(to: try HTTPRequest(method: m, target: target, headers: HTTPHeaders(headers)))
    }

    @Test func routeTable_everyRegisteredRouteHasUpstreamsRole() throws {
        let (_, routes) = try Self.stubRouter()
        let registered = Set(routes.map { "\($0.0.rawValue) \($0.1)" })
        #expect(registered.subtracting(Self.upstream.keys).sorted() == [], "routes without an upstream role")
        #expect(Set(Self.upstream.keys).subtracting(registered).sorted() == [], "upstream routes not registered")
    }

    @Test func everyProtectedRoute_withoutToken_returns401WithBearerChallenge() throws {
        let (r, routes) = try Self.stubRouter()
        for (m, t) in routes where Self.upstream["\(m.rawValue) \(t)"] != "-" {
            let resp = try Self.send(r, m, Self.path(t), token: nil)
            #expect(resp.status.code == 401, "\(m.rawValue) \(t)")
            #expect(resp.headers["WWW-Authenticate"] == "Bearer", "\(m.rawValue) \(t)")
            let bad = try Self.send(r, m, Self.path(t), token: "not.a.token")
            #expect(bad.status.code == 401, "\(m.rawValue) \(t)")
        }
    }

    @Test func eachRole_reachesExactlyUpstreamsRoutes() throws {
        let (r, routes) = try Self.stubRouter()
        for role in Self.roles + [""] {
            let token = Self.token(roles: role.isEmpty ? [] : [role])
            for (m, t) in routes {
                let need = Self.upstream["\(m.rawValue) \(t)"] ?? "?"
                let expected = need == "-" || need == "*" || need == role ? 200 : 403
                let resp = try Self.send(r, m, Self.path(t), token: token)
                #expect(resp.status.code == expected, "role '\(role)' on \(m.rawValue) \(t)")
            }
        }
    }

    /// The head check decides from the headers alone, before any body is read: the router answers without a
    /// handler (the server then never reads the body).
    @Test func headCheck_refusesMissingTokenOrRole_beforeTheHandlerRuns() throws {
        let a = Self.authenticator()
        _ = try a.authenticate("Bearer \(Self.token(roles: []))")  // keys fetched once, as after a first request
        var r = HTTPRouter()
        r.put("/datastore/image") { _ in Issue.record("handler ran"); return .text("") }
        r.setHeadChecks(a.headCheck)
        func resolve(_ token: String?) -> HTTPRouter.Resolution {
            var h = HTTPHeaders([("Host", "t"), ("Content-Length", "1073741824")])
            if let token { h.add("Authorization", "Bearer \(token)") }
            return r.resolve(method: .put, path: "/datastore/image", rawQuery: nil, headers: h, isSecure: false)
        }
        for (token, status) in [(nil, 401), ("x.y.z", 401), (Self.token(roles: [], exp: 1), 401),
                                (Self.token(roles: ["monailabel-user"]), 403)] as [(String?, Int)] {
            guard case .response(let resp) = resolve(token) else {
                Issue.record("token \(token ?? "none") reached the handler")
                continue
            }
            #expect(resp.status.code == status)
            if status == 401 { #expect(resp.headers["WWW-Authenticate"] == "Bearer") }
        }
        guard case .handler = resolve(Self.token(roles: ["monailabel-annotator"])) else {
            Issue.record("a valid annotator token was refused")
            return
        }
    }

    /// A kid the cached keys do not know, while a refetch is allowed: only a worker may fetch, so the head check
    /// lets the request through and the handler's check (which fetches) decides.
    @Test func headCheck_unknownKidWhileRefetchAllowed_defersToTheGuardedHandler() throws {
        let fetched = Mutex(0)
        let a = Self.authenticator(keys: KeyCache(minRefresh: 0) {
            fetched.withLock { $0 += 1 }
            return KeySet(byKid: ["k1": Self.key])
        })
        var r = HTTPRouter()
        r.get("/info/") { _ in .text("info") }
        r.wrapHandlers(a.guarded)
        r.setHeadChecks(a.headCheck)
        let unknown = Self.token(roles: ["monailabel-user"], key: SigningKey.generate(.es256)!, kid: "k7")
        let headers = HTTPHeaders([("Host", "t"), ("Authorization", "Bearer \(unknown)")])
        guard case .handler = r.resolve(method: .get, path: "/info/", rawQuery: nil, headers: headers, isSecure: false) else {
            Issue.record("refused before the keys could be fetched")
            return
        }
        #expect(fetched.withLock { $0 } == 0, "the head check fetched on the event loop")
        #expect(try Self.send(r, .get, "/info/", token: unknown).status.code == 401)
        #expect(fetched.withLock { $0 } == 1)
    }

    /// glewlwyd and other OAuth servers put granted roles in the `scope` claim, a space-separated string.
    @Test func rolesClaimAsSpaceSeparatedString_isSplitIntoWholeRoles() throws {
        var s = Self.settings
        s.tokenRoles = "scope"
        let a = Authenticator(settings: s, source: .provider(IdentityProvider(settings: s)), log: .silent)
        let u = a.user(from: ["preferred_username": "eve", "scope": "openid monailabel-user  monailabel-annotatorx"])
        #expect(u.roles == ["openid", "monailabel-user", "monailabel-annotatorx"])
        #expect(a.roleRefusal(u, .role(.annotator))?.status.code == 403)
        #expect(a.roleRefusal(u, .role(.user)) == nil)
    }

    @Test func missingRole_detailNamesTheRole() throws {
        let (r, _) = try Self.stubRouter()
        let resp = try Self.send(r, .delete, "/datastore/image?id=x", token: Self.token(roles: ["monailabel-user"]))
        #expect(resp.status.code == 403)
        #expect(String(decoding: try bodyBytes(resp), as: UTF8.self) == #"{"detail":"Role \"monailabel-admin\" is required to perform this action"}"#)
    }

    @Test func expiredWrongKeyOrUnknownKid_return401() throws {
        let (r, _) = try Self.stubRouter()
        let all = Self.roles
        let expired = Self.token(roles: all, exp: Date().timeIntervalSince1970 - 120)
        let wrongKey = Self.token(roles: all, key: SigningKey.generate(.es256)!)
        let unknownKid = Self.token(roles: all, key: SigningKey.generate(.es256)!, kid: "k9")
        for t in [expired, wrongKey, unknownKid] {
            #expect(try Self.send(r, .get, "/info/", token: t).status.code == 401)
        }
        #expect(try Self.send(r, .get, "/info/", token: Self.token(roles: all)).status.code == 200)
    }

    @Test func keyRotation_newKidFetchedWithoutRestart() throws {
        let rotated = SigningKey.generate(.rs256)!
        let published = Mutex(KeySet(byKid: ["k1": Self.key]))
        let cache = KeyCache(minRefresh: 0) { published.withLock { $0 } }
        let a = Self.authenticator(keys: cache)
        let old = Self.token(roles: [], kid: "k1")
        let new = Self.token(roles: [], key: rotated, kid: "k2")
        _ = try a.authenticate("Bearer \(old)")
        #expect(throws: AuthFailure.self) { try a.authenticate("Bearer \(new)") }
        // The provider rotates: k2 published, k1 withdrawn.
        published.withLock { $0 = KeySet(byKid: ["k2": rotated]) }
        #expect(try a.authenticate("Bearer \(new)").username == "alice")
        // k1 stays cached until a refresh replaces the set; that refresh happened above.
        #expect(throws: AuthFailure.self) { try a.authenticate("Bearer \(old)") }
    }

    @Test func keySet_unknownKidNeverFallsBackToTheRealmKey_unlessThereIsNoJWKS() {
        let realm = SigningKey.generate(.rs256)!
        let both = KeySet(byKid: ["k1": Self.key], realmKey: realm)
        #expect(both.find(kid: "k1") === Self.key)
        #expect(both.find(kid: "k2") == nil)
        #expect(both.find(kid: nil) === realm)
        #expect(KeySet(byKid: [:], realmKey: realm).find(kid: "k2") === realm)
        #expect(KeySet(byKid: ["k1": Self.key]).find(kid: nil) === Self.key)
    }

    @Test func providerUnreachable_returns503NotAServerPath() throws {
        let a = Self.authenticator(keys: KeyCache { throw MONAILabelError.invalid("down") })
        do {
            _ = try a.authenticate("Bearer \(Self.token(roles: []))")
            Issue.record("accepted without keys")
        } catch {
            #expect(error.response.status.code == 503)
        }
    }

    @Test func tokenClaims_mapToUpstreamsUser_throughTheRolesPath() throws {
        let a = Self.authenticator()
        let u = try a.authenticate("bearer \(Self.token(roles: ["monailabel-user", "x"], user: "bob"))")
        #expect(u == AuthUser(username: "bob", email: "bob@x", name: "Bob", roles: ["monailabel-user", "x"]))
    }

    @Test func realRouter_authOn_authRoutesAnswerAndSavedLabelRecordsTheUser() throws {
        let c = try TestClient()
        let r = makeRouter(app: c.app, log: .silent, corsOrigins: [], authenticator: Self.authenticator())
        let info = try Self.send(r, .get, "/auth/", token: nil)
        #expect(try JSONValue.parse(try bodyBytes(info)) == .object([
            "enabled": .bool(true), "client_id": .string("monailabel-app"), "realm": .string("http://127.0.0.1:9/realms/test"),
        ]))
        let valid = try Self.send(r, .get, "/auth/token/valid", token: Self.token(roles: ["monailabel-user"], user: "carol"))
        #expect(try JSONValue.parse(try bodyBytes(valid))["username"]?.stringValue == "carol")
        let token = Self.token(roles: ["monailabel-annotator"], user: "dave")
        let form = TestClient.multipart(fields: [("params", "{}")], files: [("label", "/tmp/l.nii.gz", [1, 2, 3])])
        let resp = r.respond(to: try HTTPRequest(
            method: .put, target: "/datastore/label?image=spleen_01&tag=final",
            headers: HTTPHeaders(form.headers + [("Host", "t"), ("Authorization", "Bearer \(token)")]), body: .bytes(form.body)))
        #expect(resp.status.code == 200)
        let labelInfo = c.app.datastore.labelInfo("spleen_01", tag: "final")
        #expect(labelInfo?["user"]?.stringValue == "dave")
    }

    @Test func authOff_noAuthRoutesAndNoChecks() throws {
        let c = try TestClient()
        let off = try Authenticator.make(settings: AuthSettings(), appDir: c.tmp.url, log: .silent)
        #expect(off == nil)
        let r = makeRouter(app: c.app, log: .silent, corsOrigins: [], authenticator: off)
        #expect(try Self.send(r, .get, "/auth/", token: nil).status.code == 404)
        #expect(try Self.send(r, .get, "/info/", token: nil).status.code == 200)
        #expect(try Self.send(r, .get, "/info/", token: "garbage").status.code == 200)
    }
}
