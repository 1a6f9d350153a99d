import Foundation
import HTTPClient
import MONAILabel
import WebToken

/// An OpenID Connect provider reached through upstream's `MONAI_LABEL_AUTH_REALM_URI`: the realm document
/// (Keycloak's `public_key`), `<realm>/.well-known/openid-configuration`, its `jwks_uri` and `token_endpoint`.
final class IdentityProvider: Sendable {
    let realm: String
    let client: HTTPClient

    init(settings: AuthSettings) {
        realm = settings.realmURI
        let t = Double(settings.timeout)
        client = HTTPClient(configuration: HTTPClientConfiguration(connectTimeout: t, readTimeout: t))
    }

    private func json(_ url: String) throws -> [String: Any] {
        guard let u = URL(string: url) else { throw MONAILabelError.invalid("bad identity provider URL") }
        let r = try client.get(u)
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
    func passwordGrant(username: String, password: String, clientID: String) throws -> HTTPClientResponse {
        func enc(_ s: String) -> String {
            s.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? ""
        }
        let form = [("client_id", clientID), ("username", username), ("password", password), ("grant_type", "password")]
            .map { "\($0.0)=\(enc($0.1))" }.joined(separator: "&")
        var headers = HTTPHeaders()
        headers.add("Content-Type", "application/x-www-form-urlencoded")
        headers.add("Accept", "application/json")
        return try client.post(try tokenEndpoint(), headers: headers, body: Array(form.utf8))
    }
}
