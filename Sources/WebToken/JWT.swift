import Foundation

/// Why a token was refused. The descriptions are for the server log; clients only learn "invalid".
public enum JWTError: Error, Equatable, CustomStringConvertible {
    case malformed(String)
    case unsupportedAlgorithm(String)
    case unknownKey(String?)
    case badSignature
    case expired
    case notYetValid
    case missingExpiry
    case wrongIssuer(String?)

    public var description: String {
        switch self {
        case .malformed(let why): "malformed token: \(why)"
        case .unsupportedAlgorithm(let alg): "algorithm '\(alg)' is not accepted"
        case .unknownKey(let kid): "no key for kid \(kid.map { "'\(Self.clip($0))'" } ?? "(none)")"
        case .badSignature: "signature does not verify"
        case .expired: "token has expired"
        case .notYetValid: "token is not valid yet (nbf)"
        case .missingExpiry: "token has no exp claim"
        case .wrongIssuer(let iss): "issuer \(iss.map { "'\(Self.clip($0))'" } ?? "(none)") is not the configured one"
        }
    }

    /// Token text as it may appear in a log line: short, one line.
    static func clip(_ s: String) -> String {
        String(s.prefix(64).map { $0.isNewline || $0.asciiValue.map { $0 < 32 } == true ? "?" : $0 })
    }
}

/// A signed token taken apart: its header and claims as decoded JSON objects.
public struct JWT: @unchecked Sendable {
    // The dictionaries hold only JSONSerialization's immutable value types.
    public let header: [String: Any]
    public let claims: [String: Any]

    /// The most characters a token may have; real ones are a few KB.
    public static let maxLength = 16 * 1024

    /// Splits and decodes a compact JWS without checking it.
    public static func decode(_ token: String) throws -> (jwt: JWT, signingInput: [UInt8], signature: [UInt8]) {
        guard token.utf8.count <= maxLength else { throw JWTError.malformed("longer than \(maxLength) bytes") }
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3 else { throw JWTError.malformed("expected 3 parts, got \(parts.count)") }
        guard let h = Base64URL.decode(parts[0]), let p = Base64URL.decode(parts[1]), let s = Base64URL.decode(parts[2])
        else { throw JWTError.malformed("not base64url") }
        guard let header = (try? JSONSerialization.jsonObject(with: Data(h))) as? [String: Any],
            let claims = (try? JSONSerialization.jsonObject(with: Data(p))) as? [String: Any]
        else { throw JWTError.malformed("header or payload is not a JSON object") }
        let input = Array(token.utf8.prefix(parts[0].utf8.count + 1 + parts[1].utf8.count))
        return (JWT(header: header, claims: claims), input, s)
    }

    /// Signs `claims` with `key` (whose type picks RS256 or ES256), adding `kid` to the header when given.
    public static func sign(claims: [String: Any], key: SigningKey, kid: String?) throws -> String {
        guard let alg = key.algorithm else { throw JWTError.unsupportedAlgorithm("key type") }
        var header: [String: Any] = ["alg": alg.rawValue, "typ": "JWT"]
        if let kid { header["kid"] = kid }
        let h = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        let p = try JSONSerialization.data(withJSONObject: claims, options: [.sortedKeys])
        let input = Base64URL.encode(Array(h)) + "." + Base64URL.encode(Array(p))
        guard let sig = key.sign(Array(input.utf8)) else { throw JWTError.badSignature }
        return input + "." + Base64URL.encode(sig)
    }
}

/// Checks compact JWS tokens: an allow-listed algorithm, a key of the matching type, the signature, `exp`
/// (required) and `nbf` with `leeway`, and `iss` when an issuer is configured. Audience is not checked, as upstream.
public struct JWTVerifier: Sendable {
    public var issuer: String?
    public var leeway: TimeInterval

    public init(issuer: String? = nil, leeway: TimeInterval = 30) {
        self.issuer = issuer
        self.leeway = leeway
    }

    /// The verified token. `key` gets the header's `kid` (nil when absent) and the algorithm; it returns nil
    /// when it knows no such key.
    public func verify(_ token: String, now: Date = Date(), key: (String?, JWTAlgorithm) throws -> SigningKey?) throws -> JWT {
        let (jwt, input, signature) = try JWT.decode(token)
        let algName = jwt.header["alg"] as? String ?? "(none)"
        guard let alg = JWTAlgorithm(rawValue: algName) else { throw JWTError.unsupportedAlgorithm(algName) }
        // RFC 7515 4.1.11: extensions this verifier does not understand make the token invalid.
        if jwt.header["crit"] != nil { throw JWTError.malformed("critical header extensions are not supported") }
        let kid = jwt.header["kid"] as? String
        // The key's own type must be the header's algorithm: an RSA key never checks an ES256 token or vice versa.
        guard let k = try key(kid, alg), k.algorithm == alg else { throw JWTError.unknownKey(kid) }
        guard k.verify(input, signature: signature) else { throw JWTError.badSignature }
        let t = now.timeIntervalSince1970
        guard let exp = Self.number(jwt.claims["exp"]) else { throw JWTError.missingExpiry }
        guard t <= exp + leeway else { throw JWTError.expired }
        if let v = jwt.claims["nbf"] {
            guard let nbf = Self.number(v) else { throw JWTError.malformed("nbf is not a number") }
            guard t + leeway >= nbf else { throw JWTError.notYetValid }
        }
        if let issuer {
            let iss = jwt.claims["iss"] as? String
            guard iss == issuer else { throw JWTError.wrongIssuer(iss) }
        }
        return jwt
    }

    /// A finite JSON number.
    static func number(_ v: Any?) -> Double? {
        guard let n = v as? NSNumber else { return nil }
        let d = n.doubleValue
        return d.isFinite ? d : nil
    }
}
