import Foundation
import HTTPClient
import MONAILabel
import WebToken

/// An OpenID Connect provider reached through upstream's `MONAI_LABEL_AUTH_REALM_URI`: the realm document
/// (Keycloak's `public_key`), `<realm>/.well-known/openid-configuration`, its `jwks_uri` and `token_endpoint`.
final class IdentityProvider: Sendable {
    let realm: String
    let client: HTTPClient
    /// Seconds one exchange with the provider may take in all.
    let timeout: Double

    /// The most bytes a provider answer may have: discovery documents, key sets and token answers are a few KB.
    static let maxResponseBytes = 1 << 20

    init(settings: AuthSettings) {
        realm = settings.realmURI
        timeout = Double(settings.timeout)
        client = HTTPClient(configuration: HTTPClientConfiguration(connectTimeout: timeout, readTimeout: timeout))
    }

    /// One request to the provider, bounded in time as a whole (not only per read: a provider trickling bytes
    /// cannot hold a worker) and in size (a huge answer is refused, not buffered).
    private func exchange(_ method: String, _ url: URL, headers: HTTPHeaders = HTTPHeaders(),
                          body: [UInt8] = []) throws -> HTTPClientResponse {
        let deadline = Date().addingTimeInterval(timeout)
        let stream = try client.stream(method: method, url: url, headers: headers, body: body)
        var bytes: [UInt8] = []
        while let chunk = try stream.next() {
            bytes += chunk
            guard bytes.count <= Self.maxResponseBytes else {
                throw MONAILabelError.invalid("identity provider sent more than \(Self.maxResponseBytes) bytes for \(url)")
            }
            guard Date() < deadline else {
                throw MONAILabelError.invalid("identity provider took more than \(Int(timeout)) s for \(url)")
            }
        }
        return HTTPClientResponse(status: stream.status, reason: stream.reason, headers: stream.headers, body: bytes)
    }

    private func json(_ url: String) throws -> [String: Any] {
        guard let u = URL(string: url) else { throw MONAILabelError.invalid("bad identity provider URL") }
        let r = try exchange("GET", u)
        guard r.status == 200 else { throw MONAILabelError.invalid("identity provider answered \(r.status) for \(url)") }
        guard let obj = (try? JSONSerialization.jsonObject(with: Data(r.body))) as? [String: Any] else {
            throw MONAILabelError.invalid("identity provider sent no JSON object for \(url)")
        }
        return obj
    }

    func configuration() throws -> [String: Any] { try json(realm + "/.well-known/openid-configuration") }

    /// The provider's token endpoint, for the password grant.
    func tokenEndpoint() throws -> URL {
        guard let s = try configuration()["token_endpoint"] as? String, let u = URL(string: s) else {
            throw MONAILabelError.invalid("openid-configuration has no token_endpoint")
        }
        return u
    }

    /// The realm key and the JWKS; either alone is enough.
    func keys() throws -> KeySet {
        var set = KeySet()
        var errors: [String] = []
        do {
            if let pk = try json(realm)["public_key"] as? String {
                set.realmKey = SigningKey(pem: "-----BEGIN PUBLIC KEY-----\n\(pk)\n-----END PUBLIC KEY-----")
            }
        } catch { errors.append("\(error)") }
        do {
            if let uri = try configuration()["jwks_uri"] as? String {
                for jwk in try json(uri)["keys"] as? [[String: Any]] ?? [] {
                    if jwk["use"] as? String == "enc" { continue }
                    if let kid = jwk["kid"] as? String, let k = SigningKey(jwk: jwk) { set.byKid[kid] = k }
                }
            }
        } catch { errors.append("\(error)") }
        if set.realmKey == nil, set.byKid.isEmpty {
            throw MONAILabelError.invalid("no signing keys from \(realm): \(errors.joined(separator: "; "))")
        }
        return set
    }

    /// Upstream's `POST /auth/token`: a password grant for `client_id`, the provider's answer passed back.
    /// `clientSecret` and `scope` are sent only when not empty.
    func passwordGrant(username: String, password: String, clientID: String, clientSecret: String = "", scope: String = "") throws -> HTTPClientResponse {
        func enc(_ s: String) -> String {
            s.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? ""
        }
        var fields = [("client_id", clientID), ("username", username), ("password", password), ("grant_type", "password")]
        if !clientSecret.isEmpty { fields.append(("client_secret", clientSecret)) }
        if !scope.isEmpty { fields.append(("scope", scope)) }
        let form = fields.map { "\($0.0)=\(enc($0.1))" }.joined(separator: "&")
        var headers = HTTPHeaders()
        headers.add("Content-Type", "application/x-www-form-urlencoded")
        headers.add("Accept", "application/json")
        return try exchange("POST", try tokenEndpoint(), headers: headers, body: Array(form.utf8))
    }
}
