import COpenSSL
import Foundation

/// base64url without padding (RFC 7515 section 2).
public enum Base64URL {
    public static func encode(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    public static func encode(_ text: String) -> String { encode(Array(text.utf8)) }

    /// nil when `text` holds characters outside the alphabet.
    public static func decode(_ text: Substring) -> [UInt8]? {
        var s = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        if s.contains("=") { return nil }
        switch s.count % 4 {
        case 0: break
        case 2: s += "=="
        case 3: s += "="
        default: return nil
        }
        return Data(base64Encoded: s).map { Array($0) }
    }
}

/// The signature algorithms accepted. HMAC and `none` are absent on purpose: a verifier holding a public key
/// must never treat it as a shared secret.
public enum JWTAlgorithm: String, Sendable, CaseIterable {
    case rs256 = "RS256"
    case es256 = "ES256"

    var keyKind: Int32 {
        switch self {
        case .rs256: Int32(COPENSSL_KEY_RSA)
        case .es256: Int32(COPENSSL_KEY_EC_P256)
        }
    }
}

/// An OpenSSL key (public, or a key pair) that can verify RS256 or ES256 signatures.
public final class SigningKey: @unchecked Sendable {
    // EVP_PKEY is reference counted and safe to use from several threads for verification and signing.
    let pointer: OpaquePointer

    private init(_ pointer: OpaquePointer) { self.pointer = pointer }
    deinit { copenssl_pkey_free(pointer) }

    /// A public key from PEM (`-----BEGIN PUBLIC KEY-----`), or a private key when `isPrivate`.
    public convenience init?(pem: String, isPrivate: Bool = false) {
        let bytes = Array(pem.utf8)
        guard let p = bytes.withUnsafeBufferPointer({ b in
            b.baseAddress.flatMap { base in
                base.withMemoryRebound(to: CChar.self, capacity: b.count) { copenssl_pkey_from_pem($0, b.count, isPrivate ? 1 : 0) }
            }
        }) else { return nil }
        self.init(p)
    }

    /// A public key from a JWK (RFC 7517): `kty` RSA with `n`/`e`, or EC P-256 with `x`/`y`.
    public convenience init?(jwk: [String: Any]) {
        func field(_ k: String) -> [UInt8]? { (jwk[k] as? String).flatMap { Base64URL.decode(Substring($0)) } }
        var made: OpaquePointer?
        switch jwk["kty"] as? String {
        case "RSA":
            guard let n = field("n"), let e = field("e") else { return nil }
            made = copenssl_pkey_rsa(n, n.count, e, e.count)
        case "EC":
            guard jwk["crv"] as? String == "P-256", let x = field("x"), let y = field("y") else { return nil }
            made = copenssl_pkey_ec_p256(x, x.count, y, y.count)
        default:
            return nil
        }
        guard let made else { return nil }
        self.init(made)
    }

    /// A fresh key pair for `algorithm`.
    public static func generate(_ algorithm: JWTAlgorithm) -> SigningKey? {
        copenssl_pkey_generate(algorithm.keyKind).map(SigningKey.init)
    }

    /// The algorithm this key signs and verifies, nil for keys of other types or sizes (RSA under 2048 bits).
    public var algorithm: JWTAlgorithm? {
        let kind = copenssl_pkey_kind(pointer)
        return JWTAlgorithm.allCases.first { $0.keyKind == kind }
    }

    /// PEM of the public key, or of the private key when `isPrivate`.
    public func pem(isPrivate: Bool) -> String? {
        var out: UnsafeMutablePointer<CChar>?
        let n = copenssl_pkey_to_pem(pointer, isPrivate ? 1 : 0, &out)
        guard n >= 0, let out else { return nil }
        defer { copenssl_free(out) }
        return String(cString: out)
    }

    /// The public key as a JWK with `kid`, for a JWKS document.
    public func publicJWK(kid: String) -> [String: String]? {
        var a = [UInt8](repeating: 0, count: 1024), b = [UInt8](repeating: 0, count: 1024)
        var alen = 0, blen = 0
        guard let alg = algorithm, copenssl_pkey_components(pointer, &a, &alen, &b, &blen) == 1 else { return nil }
        let first = Base64URL.encode(Array(a[..<alen])), second = Base64URL.encode(Array(b[..<blen]))
        switch alg {
        case .rs256: return ["kty": "RSA", "kid": kid, "alg": alg.rawValue, "use": "sig", "n": first, "e": second]
        case .es256: return ["kty": "EC", "kid": kid, "alg": alg.rawValue, "use": "sig", "crv": "P-256", "x": first, "y": second]
        }
    }

    /// Checks a SHA-256 signature in JWS form (PKCS#1 v1.5 for RSA, raw r||s for P-256).
    public func verify(_ data: [UInt8], signature: [UInt8]) -> Bool {
        copenssl_verify_sha256(pointer, data, data.count, signature, signature.count) == 1
    }

    /// Signs in JWS form; nil when this is not a private key.
    public func sign(_ data: [UInt8]) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: 512)
        var n = 0
        guard copenssl_sign_sha256(pointer, data, data.count, &out, &n) == 1 else { return nil }
        return Array(out[..<n])
    }
}

/// Salted scrypt (RFC 7914) password hashes through OpenSSL's EVP_PBE_scrypt.
public struct PasswordHash: Sendable, Equatable {
    public var n: UInt64
    public var r: UInt64
    public var p: UInt64
    public var salt: [UInt8]
    public var hash: [UInt8]

    public init(n: UInt64, r: UInt64, p: UInt64, salt: [UInt8], hash: [UInt8]) {
        self.n = n
        self.r = r
        self.p = p
        self.salt = salt
        self.hash = hash
    }

    /// 2^15 x 8 x 1: 32 MiB and a fraction of a second per check, OWASP's scrypt floor.
    public static let defaultN: UInt64 = 1 << 15

    /// A hash of `password` with a fresh 16-byte salt.
    public static func make(_ password: String, n: UInt64 = defaultN) -> PasswordHash? {
        var salt = [UInt8](repeating: 0, count: 16)
        guard copenssl_random(&salt, salt.count) == 1 else { return nil }
        var h = PasswordHash(n: n, r: 8, p: 1, salt: salt, hash: [])
        guard let d = h.derive(password) else { return nil }
        h.hash = d
        return h
    }

    private func derive(_ password: String) -> [UInt8]? {
        // Bounded so that a tampered file cannot ask for gigabytes.
        guard n >= 2, n <= 1 << 20, n & (n - 1) == 0, (1...32).contains(r), (1...4).contains(p) else { return nil }
        var out = [UInt8](repeating: 0, count: 32)
        let pw = Array(password.utf8)
        let ok = pw.withUnsafeBufferPointer { b in
            b.withMemoryRebound(to: CChar.self) { c in
                copenssl_scrypt(c.baseAddress, c.count, salt, salt.count, n, r, p, &out, out.count)
            }
        }
        return ok == 1 ? out : nil
    }

    /// Whether `password` gives this hash (compared in constant time).
    public func matches(_ password: String) -> Bool {
        guard hash.count == 32, let d = derive(password) else { return false }
        return copenssl_equal(d, hash, 32) == 1
    }
}
