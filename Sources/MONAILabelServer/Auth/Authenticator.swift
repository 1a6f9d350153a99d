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
    let settings: AuthSettings
    let provider: IdentityProvider
    let keys: KeyCache
    let verifier: JWTVerifier
    let log: Logger

    /// `keys` defaults to the provider's, fetched when first needed.
    init(settings: AuthSettings, provider: IdentityProvider, keys: KeyCache? = nil, log: Logger) {
        self.settings = settings
        self.provider = provider
        self.keys = keys ?? KeyCache(fetch: provider.keys)
        self.verifier = JWTVerifier(issuer: settings.issuer.isEmpty ? nil : settings.issuer)
        self.log = log
    }

    /// The caller behind an `Authorization` header value.
    func authenticate(_ authorization: String?) throws(AuthFailure) -> AuthUser {
        guard let header = authorization?.trimmingCharacters(in: .whitespaces), header.count > 7,
            header.prefix(7).lowercased() == "bearer "
        else { throw .notAuthenticated }
        let token = header.dropFirst(7).trimmingCharacters(in: .whitespaces)
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

    /// Upstream's `from_token`: the username, email, name and roles claims, roles through the `#` path.
    func user(from claims: [String: Any]) -> AuthUser {
        var node: Any? = claims
        for key in settings.tokenRoles.split(separator: "#") { node = (node as? [String: Any])?[String(key)] }
        let roles = (node as? [Any])?.compactMap { $0 as? String } ?? []
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
            if case .role(let role) = access {
                let needed = self.settings.name(of: role)
                guard user.roles.contains(needed) else {
                    return .detail("Role \"\(needed)\" is required to perform this action", status: .forbidden)
                }
            }
            let response = try CurrentUser.$user.withValue(user) { try handler(request) }
            // Who changed what: every write is logged with its user (never the token).
            if request.method != .get, request.method != .head {
                self.log.info("\(user.username) \(request.method.rawValue) \(request.target) -> \(response.status.code)", source: "audit")
            }
            return response
        }
    }
}
