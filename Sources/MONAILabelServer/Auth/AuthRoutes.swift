import Foundation
import HTTPClient
import HTTPServer
import MONAILabel

/// Upstream's `/auth` routes (monailabel/endpoints/login.py), registered only when auth is enabled, as
/// upstream: with auth off `GET /auth/` is 404, which clients read as "no sign-in".
enum AuthRoutes {
    static func register(_ r: inout HTTPRouter, _ ctx: RouteContext, _ auth: Authenticator) {
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
            guard username.count <= 256 else {
                throw ValidationFailure(type: "string_too_long", loc: ["body", "username"],
                                        msg: "String should have at most 256 characters", input: .null)
            }
            let address = clientHost(req.remoteAddress)
            if let wait = auth.limiter.retryAfter(username: username, address: address) {
                ctx.log.warning("Sign-in for \(username) from \(address) refused: too many failures", source: "auth")
                var resp = HTTPResponse.detail("Too many failed sign-ins; try again in \(wait) s", status: .tooManyRequests)
                resp.headers.add("Retry-After", String(wait))
                return resp
            }
            func refused(_ why: String) -> HTTPResponse {
                auth.limiter.failed(username: username, address: address)
                ctx.log.warning("Sign-in for \(username) from \(address) refused: \(why)", source: "auth")
                var resp = HTTPResponse.detail("Incorrect username or password", status: .unauthorized)
                resp.headers.add("WWW-Authenticate", "Bearer")
                return resp
            }
            switch auth.source {
            case .provider(let provider):
                let reply: HTTPClientResponse
                do {
                    reply = try provider.passwordGrant(username: username, password: password, clientID: s.clientID,
                                                       clientSecret: s.clientSecret, scope: s.scope)
                } catch {
                    ctx.log.error("Sign-in for \(username): identity provider failed: \(error)", source: "auth")
                    return .detail("Identity provider is not reachable", status: HTTPStatus(502))
                }
                guard reply.status == 200 else { return refused("identity provider answered \(reply.status)") }
                // Passed on as the provider sent it (as upstream), but only when it is a token answer.
                guard let answer = (try? JSONSerialization.jsonObject(with: Data(reply.body))) as? [String: Any],
                    answer["access_token"] is String
                else {
                    ctx.log.error("Sign-in for \(username): identity provider answered 200 without an access_token", source: "auth")
                    return .detail("Identity provider sent no token", status: HTTPStatus(502))
                }
                auth.limiter.succeeded(username: username)
                ctx.log.info("Signed in: \(username)", source: "auth")
                return .bytes(reply.body, contentType: "application/json")
            case .builtin(let accounts, let kid, let key):
                guard let account = try accounts.check(username, password) else { return refused("wrong username or password") }
                let token = try auth.issueToken(username: username, roles: account.roles, kid: kid, key: key)
                auth.limiter.succeeded(username: username)
                ctx.log.info("Signed in: \(username)", source: "auth")
                return .json(.object([
                    "access_token": .string(token), "token_type": .string("bearer"), "expires_in": .int(s.tokenLifetime),
                ]))
            }
        })
        r.get("/auth/token/valid", route { _ in
            .json(CurrentUser.user?.json ?? .null)
        })
    }
}

/// The host part of the server's "host:port" / "[v6]:port" peer text: a client's new connections share it.
func clientHost(_ remote: String) -> String {
    if remote.hasPrefix("["), let end = remote.firstIndex(of: "]") {
        return String(remote[remote.index(after: remote.startIndex)..<end])
    }
    if let colon = remote.lastIndex(of: ":") { return String(remote[..<colon]) }
    return remote
}
