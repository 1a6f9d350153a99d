import COpenSSL
import Foundation
import Testing
@testable import WebToken

/// Tokens minted here with fresh OpenSSL keys, then checked the way the server checks bearer tokens.
@Suite(.tags(.unit)) struct JWTTests {
    let ec = SigningKey.generate(.es256)!
    let rsa = SigningKey.generate(.rs256)!
    let now = Date(timeIntervalSince1970: 1_800_000_000)

    func claims(exp: Double = 1_800_000_300, extra: [String: Any] = [:]) -> [String: Any] {
        var c: [String: Any] = ["sub": "u1", "preferred_username": "alice", "exp": exp, "iss": "https://idp/realms/r"]
        for (k, v) in extra { c[k] = v }
        return c
    }

    func verify(_ token: String, with key: SigningKey, issuer: String? = nil) throws -> JWT {
        try JWTVerifier(issuer: issuer).verify(token, now: now) { _, _ in key }
    }

    /// The same token with its header replaced (the signature kept).
    func withHeader(_ token: String, _ header: [String: Any]) throws -> String {
        let parts = token.split(separator: ".")
        let h = try JSONSerialization.data(withJSONObject: header)
        return Base64URL.encode(Array(h)) + "." + parts[1] + "." + parts[2]
    }

    @Test func verify_es256AndRs256Tokens_acceptedWithTheirClaims() throws {
        for key in [ec, rsa] {
            let t = try JWT.sign(claims: claims(), key: key, kid: "k1")
            let jwt = try verify(t, with: key, issuer: "https://idp/realms/r")
            #expect(jwt.claims["preferred_username"] as? String == "alice")
            #expect(jwt.header["kid"] as? String == "k1")
        }
    }

    @Test func verify_expiredToken_refused_butWithinLeewayAccepted() throws {
        let old = try JWT.sign(claims: claims(exp: now.timeIntervalSince1970 - 31), key: ec, kid: nil)
        #expect(throws: JWTError.expired) { try verify(old, with: ec) }
        let skewed = try JWT.sign(claims: claims(exp: now.timeIntervalSince1970 - 5), key: ec, kid: nil)
        _ = try verify(skewed, with: ec)
    }

    @Test func verify_missingExp_refused() throws {
        var c = claims()
        c["exp"] = nil
        let t = try JWT.sign(claims: c, key: ec, kid: nil)
        #expect(throws: JWTError.missingExpiry) { try verify(t, with: ec) }
    }

    @Test func verify_notBeforeInTheFuture_refused() throws {
        let t = try JWT.sign(claims: claims(extra: ["nbf": now.timeIntervalSince1970 + 120]), key: ec, kid: nil)
        #expect(throws: JWTError.notYetValid) { try verify(t, with: ec) }
    }

    @Test func verify_wrongIssuer_refused_andUncheckedWhenNoneConfigured() throws {
        let t = try JWT.sign(claims: claims(), key: rsa, kid: nil)
        #expect(throws: JWTError.wrongIssuer("https://idp/realms/r")) { try verify(t, with: rsa, issuer: "https://other/realms/r") }
        _ = try verify(t, with: rsa, issuer: nil)
    }

    @Test func verify_tokenSignedByAnotherKey_refused() throws {
        let other = SigningKey.generate(.es256)!
        let t = try JWT.sign(claims: claims(), key: other, kid: nil)
        #expect(throws: JWTError.badSignature) { try verify(t, with: ec) }
        let r = try JWT.sign(claims: claims(), key: SigningKey.generate(.rs256)!, kid: nil)
        #expect(throws: JWTError.badSignature) { try verify(r, with: rsa) }
    }

    @Test func verify_tamperedPayload_refused() throws {
        let t = try JWT.sign(claims: claims(), key: ec, kid: nil)
        let parts = t.split(separator: ".")
        let forged = try JSONSerialization.data(withJSONObject: claims(extra: ["realm_access": ["roles": ["monailabel-admin"]]]))
        let tampered = parts[0] + "." + Base64URL.encode(Array(forged)) + "." + parts[2]
        #expect(throws: JWTError.badSignature) { try verify(String(tampered), with: ec) }
    }

    @Test func verify_algNone_refused() throws {
        let payload = try JSONSerialization.data(withJSONObject: claims())
        let t = Base64URL.encode("{\"alg\":\"none\",\"typ\":\"JWT\"}") + "." + Base64URL.encode(Array(payload)) + "."
        #expect(throws: JWTError.unsupportedAlgorithm("none")) { try verify(t, with: rsa) }
    }

    @Test func verify_hmacSignedWithThePublicKeyPEM_refused() throws {
        // The classic confusion attack: HS256 keyed with the server's own public key.
        let pem = Array(rsa.pem(isPrivate: false)!.utf8)
        let input = Base64URL.encode("{\"alg\":\"HS256\",\"typ\":\"JWT\"}") + "."
            + Base64URL.encode(Array(try JSONSerialization.data(withJSONObject: claims())))
        var mac = [UInt8](repeating: 0, count: 32)
        let data = Array(input.utf8)
        #expect(copenssl_hmac_sha256(pem, pem.count, data, data.count, &mac) == 1)
        let t = input + "." + Base64URL.encode(mac)
        #expect(throws: JWTError.unsupportedAlgorithm("HS256")) { try verify(t, with: rsa) }
    }

    @Test func verify_headerAlgNotMatchingTheKeyType_refused() throws {
        // An ES256 token relabelled RS256 must not reach the EC key, and the RSA key never checks ES256.
        let t = try JWT.sign(claims: claims(), key: ec, kid: nil)
        let relabelled = try withHeader(t, ["alg": "RS256"])
        #expect(throws: JWTError.unknownKey(nil)) { try verify(relabelled, with: ec) }
        #expect(throws: JWTError.unknownKey(nil)) { try verify(t, with: rsa) }
    }

    @Test func verify_criticalHeader_refused() throws {
        let t = try JWT.sign(claims: claims(), key: ec, kid: nil)
        #expect(throws: JWTError.self) { try verify(try withHeader(t, ["alg": "ES256", "crit": ["b64"]]), with: ec) }
    }

    @Test(arguments: ["", "a.b", "a.b.c.d", "!!.e30.", String(repeating: "a", count: JWT.maxLength + 1)])
    func verify_malformedToken_refused(_ token: String) throws {
        #expect(throws: JWTError.self) { try verify(token, with: ec) }
    }

    @Test func jwk_publicKeyRoundTrip_verifiesTheOwnersTokens() throws {
        for key in [ec, rsa] {
            let jwk = try #require(key.publicJWK(kid: "kid-1"))
            let pub = try #require(SigningKey(jwk: jwk))
            #expect(pub.algorithm == key.algorithm)
            _ = try verify(try JWT.sign(claims: claims(), key: key, kid: "kid-1"), with: pub)
            // A public key cannot sign.
            #expect(pub.sign([1, 2, 3]) == nil)
        }
    }

    @Test func jwk_pointOffTheCurve_refused() throws {
        var jwk = try #require(ec.publicJWK(kid: "k"))
        var y = try #require(Base64URL.decode(Substring(jwk["y"]!)))
        y[31] ^= 1
        jwk["y"] = Base64URL.encode(y)
        #expect(SigningKey(jwk: jwk) == nil)
    }

    @Test func pem_publicAndPrivateRoundTrip() throws {
        let priv = try #require(SigningKey(pem: ec.pem(isPrivate: true)!, isPrivate: true))
        let pub = try #require(SigningKey(pem: ec.pem(isPrivate: false)!))
        _ = try verify(try JWT.sign(claims: claims(), key: priv, kid: nil), with: pub)
        #expect(SigningKey(pem: "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----") == nil)
    }
}

@Suite(.tags(.unit)) struct PasswordHashTests {
    @Test func scrypt_rightPasswordMatches_wrongOneAndTamperedHashDoNot() throws {
        let h = try #require(PasswordHash.make("correct horse", n: 1 << 10))
        #expect(h.salt.count == 16 && h.hash.count == 32)
        #expect(h.matches("correct horse"))
        #expect(!h.matches("correct horsE"))
        var t = h
        t.hash[0] ^= 1
        #expect(!t.matches("correct horse"))
        // Same password, fresh salt: a different hash.
        #expect(try #require(PasswordHash.make("correct horse", n: 1 << 10)).hash != h.hash)
    }

    @Test func scrypt_costFromAFileOutOfBounds_refusedWithoutAllocating() {
        for (n, r, p) in [(UInt64(1) << 40, UInt64(8), UInt64(1)), (1000, 8, 1), (1 << 10, 1000, 1), (1 << 10, 8, 1 << 30)] {
            let h = PasswordHash(n: n, r: r, p: p, salt: [1, 2], hash: [UInt8](repeating: 0, count: 32))
            #expect(!h.matches("x"))
        }
    }
}
