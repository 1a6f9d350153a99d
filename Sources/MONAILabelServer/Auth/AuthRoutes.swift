import Foundation
import HTTPClient
import HTTPServer
import MONAILabel

/// Upstream's `/auth` routes (monailabel/endpoints/login.py), registered only when auth is enabled, as
/// upstream: with auth off `GET /auth/` is 404, which clients read as "no sign-in".
enum AuthRoutes {
    static func register(_ r: inout HTTPRouter, _ ctx: RouteContext, _ auth: Authenticator) {
        let provider = auth.provider
        let s = auth.settings
        r.get("/auth/", route { _ in
            .json(.object(["enabled": .bool(s.enable), "client_id": .string(s.clientID), "realm": .string(s.realmURI)]))
        })
        r.post("/auth/token", route { req in
            var limits = HTTPFormLimits()
            limits.maxFieldBytes = 64 * 1024
            let form = try req.form(limits: limits)
            guard let username = form.value("username"), !username.isEmpty else { throw ValidationFailure.missing("body", "username") }
            guard let password = form.value("password") else { throw ValidationFailure.missing("body", "password") }
            let reply: HTTPClientResponse
            do {
                reply = try provider.passwordGrant(username: username, password: password, clientID: s.clientID)
            } catch {
                ctx.log.error("Sign-in for \(username): identity provider failed: \(error)", source: "auth")
                return .detail("Identity provider is not reachable", status: HTTPStatus(502))
            }
            guard reply.status == 200 else {
                ctx.log.warning("Sign-in for \(username) refused by the identity provider (\(reply.status))", source: "auth")
                var resp = HTTPResponse.detail("Incorrect username or password", status: .unauthorized)
                resp.headers.add("WWW-Authenticate", "Bearer")
                return resp
            }
            ctx.log.info("Signed in: \(username)", source: "auth")
            return .bytes(reply.body, contentType: "application/json")
        })
        r.get("/auth/token/valid", route { _ in
            .json(CurrentUser.user?.json ?? .null)
        })
    }
}
