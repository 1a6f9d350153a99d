import Foundation
import HTTPServer
import MONAILabel
import WebToken

/// Who made a request, from the token's claims (upstream's `User`).
public struct AuthUser: Sendable, Equatable {
    public var username: String
    public var email: String?
    public var name: String?
    public var roles: [String]

    var json: JSONValue {
        .object([
            "username": .string(username), "email": email.map(JSONValue.string) ?? .null,
            "name": name.map(JSONValue.string) ?? .null, "roles": .array(roles.map(JSONValue.string)),
        ])
    }
}

/// The signed-in user of the request being handled; nil with auth off.
enum CurrentUser {
    @TaskLocal static var user: AuthUser?
}

/// A refused request: 401 with `WWW-Authenticate: Bearer` (FastAPI's wording), or 503 when the identity
/// provider's keys cannot be had.
struct AuthFailure: Error {
    let response: HTTPResponse

    static let notAuthenticated = AuthFailure(response: unauthorized("Not authenticated"))
    static let invalid = AuthFailure(response: unauthorized("Could not validate credentials"))
    static let providerDown = AuthFailure(response: .detail("Identity provider is not reachable", status: .serviceUnavailable))

    private static func unauthorized(_ detail: String) -> HTTPResponse {
        var r = HTTPResponse.detail(detail, status: .unauthorized)
        r.headers.add("WWW-Authenticate", "Bearer")
        return r
    }
}

/// Checks bearer tokens and roles for every route (`RouteRoles`). Tokens are never logged.
public final class Authenticator: Sendable {
    /// Who checks passwords and signs tokens.
    enum Source: Sendable {
        /// An OpenID Connect provider (upstream's Keycloak realm).
        case provider(IdentityProvider)
        /// This server: accounts in the app folder, tokens signed with its own key.
        case builtin(BuiltinAccounts, kid: String, key: SigningKey)
    }

    let settings: AuthSettings
    let source: Source
    let keys: KeyCache
    let verifier: JWTVerifier
    let limiter = LoginLimiter()
    let log: Logger

    /// `keys` defaults to the source's: the provider's, fetched when first needed, or the server's own.
    init(settings: AuthSettings, source: Source, keys: KeyCache? = nil, log: Logger) {
        self.settings = settings
        self.source = source
        switch source {
        case .provider(let p):
            self.keys = keys ?? KeyCache(fetch: p.keys)
            self.verifier = JWTVerifier(issuer: settings.issuer.isEmpty ? nil : settings.issuer)
        case .builtin(_, let kid, let key):
            self.keys = keys ?? KeyCache { KeySet(byKid: [kid: key]) }
            self.verifier = JWTVerifier(issuer: BuiltinAccounts.issuer)
        }
        self.log = log
    }

    /// The authenticator `settings` ask for, nil with auth disabled. Built-in accounts create the signing key
    /// in `appDir` at first start.
    public static func make(settings: AuthSettings, appDir: URL, log: Logger) throws -> Authenticator? {
        guard settings.enable else { return nil }
        if settings.builtin {
            let accounts = BuiltinAccounts(appDir: appDir)
            let (kid, key) = try accounts.signingKey()
            return Authenticator(settings: settings, source: .builtin(accounts, kid: kid, key: key), log: log)
        }
        return Authenticator(settings: settings, source: .provider(IdentityProvider(settings: settings)), log: log)
    }

    /// A built-in token for `username` with `roles`, its claims where `settings` look for them.
    func issueToken(username: String, roles: [String], kid: String, key: SigningKey) throws -> String {
        let now = Date().timeIntervalSince1970
        var claims: [String: Any] = [
            "iss": BuiltinAccounts.issuer, "sub": username, "iat": Int(now), "exp": Int(now) + settings.tokenLifetime,
            settings.tokenUsername: username, settings.tokenName: username,
        ]
        let path = settings.tokenRoles.split(separator: "#").map(String.init)
        var node: Any = roles
        for k in path.dropFirst().reversed() { node = [k: node] }
        claims[path.first ?? "roles"] = node
        return try JWT.sign(claims: claims, key: key, kid: kid)
    }

    /// The caller behind an `Authorization` header value.
    func authenticate(_ authorization: String?) throws(AuthFailure) -> AuthUser {
        guard let token = Self.bearer(authorization) else { throw .notAuthenticated }
        let jwt: JWT
        do {
            jwt = try verifier.verify(token) { kid, alg in try keys.key(kid: kid, algorithm: alg) }
        } catch let e as JWTError {
            log.warning("Token refused: \(e)", source: "auth")
            throw .invalid
        } catch {
            log.error("Token keys unavailable: \(error)", source: "auth")
            throw .providerDown
        }
        return user(from: jwt.claims)
    }

    /// The token of an `Authorization: Bearer ...` header value.
    static func bearer(_ authorization: String?) -> String? {
        guard let header = authorization?.trimmingCharacters(in: .whitespaces), header.count > 7,
            header.prefix(7).lowercased() == "bearer "
        else { return nil }
        return header.dropFirst(7).trimmingCharacters(in: .whitespaces)
    }

    /// The header-phase verdict for a route needing `access` (see `headCheck`): a 401 or 403 decided from the
    /// `Authorization` header and the keys already fetched, or nil to let the request through to `guarded`, which
    /// checks again and may fetch keys (a token naming an unknown `kid` while a refetch is allowed).
    func refusal(_ authorization: String?, access: Access) -> HTTPResponse? {
        guard let token = Self.bearer(authorization) else { return AuthFailure.notAuthenticated.response }
        let jwt: JWT
        do {
            jwt = try verifier.verify(token) { kid, alg in try keys.cachedKey(kid: kid, algorithm: alg) }
        } catch is KeyCache.FetchNeeded {
            return nil
        } catch {
            log.warning("Token refused: \(error)", source: "auth")
            return AuthFailure.invalid.response
        }
        return roleRefusal(user(from: jwt.claims), access)
    }

    /// 403 naming the role `access` needs when `user` lacks it.
    func roleRefusal(_ user: AuthUser, _ access: Access) -> HTTPResponse? {
        guard case .role(let role) = access else { return nil }
        let needed = settings.name(of: role)
        guard !user.roles.contains(needed) else { return nil }
        return .detail("Role \"\(needed)\" is required to perform this action", status: .forbidden)
    }

    /// The check `RouteRoles` gives `method template`, run by the HTTP server as soon as a request's headers are
    /// read: a request without a valid token or role is refused before its body is read (an unauthenticated
    /// 1 GB upload is answered 401 at once and its connection closed). Nil for open routes.
    func headCheck(_ method: HTTPMethod, _ template: String) -> HTTPHeadCheck? {
        let access = RouteRoles.access(method, template)
        if access == .open { return nil }
        return { headers in self.refusal(headers["Authorization"], access: access) }
    }

    /// Upstream's `from_token`: the username, email, name and roles claims, roles through the `#` path. A string
    /// there is a space-separated list, as OAuth's `scope` claim (RFC 9068): providers that grant roles as scopes
    /// are configured with `MONAI_LABEL_AUTH_TOKEN_ROLES=scope`. Each word must match a role exactly.
    func user(from claims: [String: Any]) -> AuthUser {
        var node: Any? = claims
        for key in settings.tokenRoles.split(separator: "#") { node = (node as? [String: Any])?[String(key)] }
        let roles: [String]
        if let list = node as? String {
            roles = list.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        } else {
            roles = (node as? [Any])?.compactMap { $0 as? String } ?? []
        }
        return AuthUser(
            username: claims[settings.tokenUsername] as? String ?? "", email: claims[settings.tokenEmail] as? String,
            name: claims[settings.tokenName] as? String, roles: roles)
    }

    /// `handler` behind the access `RouteRoles` gives `method template`.
    func guarded(_ method: HTTPMethod, _ template: String, _ handler: @escaping HTTPHandler) -> HTTPHandler {
        let access = RouteRoles.access(method, template)
        if access == .open { return handler }
        return { request in
            let user: AuthUser
            do throws(AuthFailure) {
                user = try self.authenticate(request.headers["Authorization"])
            } catch {
                return error.response
            }
            if let refused = self.roleRefusal(user, access) { return refused }
            let response = try CurrentUser.$user.withValue(user) { try handler(request) }
            // Who changed what: every write is logged with its user (never the token).
            if request.method != .get, request.method != .head {
                self.log.info("\(user.username) \(request.method.rawValue) \(request.target) -> \(response.status.code)", source: "audit")
            }
            return response
        }
    }
}
