import Foundation
import HTTPClient
import Testing
import TestSupport
import WebToken
@testable import MONAILabelServer

/// Sign-in through a real OpenID Connect provider (glewlwyd, see `Glewlwyd`): the server forwards `/auth/token` as
/// a password grant, verifies the provider's RS256 tokens against its JWKS and maps the granted scopes to roles.
@Suite(.tags(.live), .serialized, .enabled(if: Glewlwyd.available, "needs glewlwyd, sqlite3 and openssl (scripts/install-deps.sh)"))
struct AuthProviderLiveTests {
    static let accounts: [Glewlwyd.Account] = [
        .init(username: "ann", password: "s3cret pw", roles: ["monailabel-user", "monailabel-annotator"]),
        .init(username: "reader", password: "r&=d pw", roles: ["monailabel-user"]),
        .init(username: "boss", password: "b0ss", roles: Glewlwyd.roles),
        .init(username: "nobody", password: "n0body", roles: []),
    ]

    /// glewlwyd with `accounts`, and a server signing in through it.
    static func start(_ tmp: TempDir, tokenSeconds: Int = 300) throws -> (Glewlwyd, RunningServer) {
        let provider = try Glewlwyd(dir: tmp.url.appendingPathComponent("glewlwyd"), accounts: accounts, tokenSeconds: tokenSeconds)
        do {
            return (provider, try startAuthServer(tmp, auth: provider.serverEnvironment))
        } catch {
            provider.stop()
            throw error
        }
    }

    static func signIn(_ port: Int, _ user: String, _ password: String) throws -> (status: Int, token: String?) {
        func enc(_ s: String) -> String { s.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "" }
        var form = HTTPHeaders()
        form.add("Content-Type", "application/x-www-form-urlencoded")
        let r = try HTTPClient().post(URL(string: "http://127.0.0.1:\(port)/auth/token")!, headers: form,
                                      body: Array("username=\(enc(user))&password=\(enc(password))".utf8))
        let token = (try? JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any])?["access_token"] as? String
        return (r.status, token)
    }

    static func call(_ port: Int, _ method: String, _ target: String, token: String?) throws -> HTTPClientResponse {
        var h = HTTPHeaders()
        if let token { h.add("Authorization", "Bearer \(token)") }
        return try HTTPClient().send(method: method, url: URL(string: "http://127.0.0.1:\(port)\(target)")!, headers: h)
    }

    /// The real 0.8.5 Python client signs in with the provider's account and runs the Slicer sequence as an annotator
    /// (save a label that records the user; train refused 403 naming the admin role).
    @Test(.needsClientVenv)
    func pythonClient_signsInThroughGlewlwyd_andRunsTheSlicerSequence() throws {
        let tmp = TempDir()
        let (provider, server) = try Self.start(tmp)
        defer { server.stop(); provider.stop() }
        let (status, text) = try runE2EScript("auth_sequence.py", ["http://127.0.0.1:\(server.port)", tmp.url.path, "ann", "s3cret pw"])
        #expect(status == 0, "\(text)")
        #expect(text.contains("AUTH SEQUENCE OK"))
    }

    /// Every route of `RouteRoles` over real sockets with the provider's tokens: no token 401 with the Bearer
    /// challenge; an account without the route's role 403; one with it gets past the check (any answer but 401/403).
    /// Only reads are sent with the all-roles account, so nothing here trains, deletes or batch-infers.
    @Test func everyRoute_providerTokens_401Without_403MissingRole_reachedWithRole() throws {
        let tmp = TempDir()
        let (provider, server) = try Self.start(tmp)
        defer { server.stop(); provider.stop() }
        let port = server.port
        var tokens: [String: String] = [:]
        for a in Self.accounts {
            let (status, token) = try Self.signIn(port, a.username, a.password)
            #expect(status == 200, "\(a.username)")
            tokens[a.username] = try #require(token)
        }
        #expect(try Self.signIn(port, "reader", "wrong").status == 401)
        #expect(try Self.signIn(port, "stranger", "x").status == 401)
        let valid = try Self.call(port, "GET", "/auth/token/valid", token: tokens["ann"])
        let user = try #require(try JSONSerialization.jsonObject(with: Data(valid.body)) as? [String: Any])
        #expect(user["username"] as? String == "ann")
        #expect(user["email"] as? String == "ann@site.test")
        #expect(Set(user["roles"] as? [String] ?? []) == ["openid", "monailabel-user", "monailabel-annotator"])
        for (key, access) in RouteRoles.table.sorted(by: { $0.key < $1.key }) {
            let parts = key.split(separator: " ", maxSplits: 1)
            let method = String(parts[0])
            let target = parts[1].split(separator: "/", omittingEmptySubsequences: false).map { s in
                s.hasPrefix("{") ? (s.hasSuffix(":path}") ? "a/b" : "x1") : String(s)
            }.joined(separator: "/")
            let isRead = method == "GET" || method == "HEAD"
            let anonymous = try Self.call(port, method, target, token: nil)
            switch access {
            case .open:
                #expect(![401, 403].contains(anonymous.status), "\(key) without a token")
                continue
            case .signedIn, .role:
                #expect(anonymous.status == 401, "\(key) without a token")
                #expect(anonymous.headers["WWW-Authenticate"] == "Bearer", "\(key)")
            }
            for (account, roles) in [("reader", ["monailabel-user"]), ("nobody", [String]()), ("boss", Glewlwyd.roles)] {
                let allowed: Bool
                switch access {
                case .open, .signedIn: allowed = true
                case .role(let role): allowed = roles.contains(AuthSettings().name(of: role))
                }
                if allowed && !isRead && account == "boss" { continue }
                let status = try Self.call(port, method, target, token: tokens[account]).status
                if allowed {
                    #expect(![401, 403].contains(status), "\(account) on \(key): \(status)")
                } else {
                    #expect(status == 403, "\(account) on \(key): \(status)")
                }
            }
        }
    }

    /// The provider's token altered (payload, signature, `alg: none`, re-signed by another key under its `kid`) is
    /// 401; a server expecting another issuer refuses the provider's genuine token.
    @Test func tamperedForgedOrWrongIssuerTokens_return401() throws {
        let tmp = TempDir()
        let (provider, server) = try Self.start(tmp)
        defer { server.stop(); provider.stop() }
        let token = try #require(try Self.signIn(server.port, "reader", "r&=d pw").token)
        #expect(try Self.call(server.port, "GET", "/info/", token: token).status == 200)
        let parts = token.split(separator: ".").map(String.init)
        var claims = try #require(try JSONSerialization.jsonObject(with: Data(Base64URL.decode(Substring(parts[1]))!)) as? [String: Any])
        let header = try #require(try JSONSerialization.jsonObject(with: Data(Base64URL.decode(Substring(parts[0]))!)) as? [String: Any])
        claims["scope"] = "openid monailabel-user monailabel-admin"
        let elevated = Base64URL.encode(Array(try JSONSerialization.data(withJSONObject: claims)))
        let none = Base64URL.encode(Array(try JSONSerialization.data(withJSONObject: ["alg": "none", "typ": "JWT"])))
        var sig = Array(parts[2].utf8)
        sig[sig.count / 2] = sig[sig.count / 2] == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
        let foreign = try JWT.sign(claims: claims, key: SigningKey.generate(.rs256)!, kid: header["kid"] as? String)
        let forged = [
            "\(parts[0]).\(elevated).\(parts[2])", "\(parts[0]).\(parts[1]).\(String(decoding: sig, as: UTF8.self))",
            "\(none).\(parts[1]).", "\(none).\(elevated).", foreign,
        ]
        for t in forged {
            let r = try Self.call(server.port, "GET", "/logs/", token: t)
            #expect(r.status == 401, "\(t.prefix(40))...")
        }
        let tmp2 = TempDir()
        let other = try startAuthServer(tmp2, auth: provider.serverEnvironment.merging(
            ["MONAI_LABEL_AUTH_ISSUER": "https://issuer.elsewhere.test/"]) { $1 })
        defer { other.stop() }
        #expect(try Self.call(other.port, "GET", "/info/", token: token).status == 401)
    }

    /// The provider replaces its signing key: tokens signed with the new key (a new `kid`) are accepted without a
    /// restart once the key cache may refetch (10 s after its last fetch); tokens of the withdrawn key are refused.
    /// The provider's tokens last 1 s here, so the new one then expires (past the 30 s leeway) and is refused too.
    @Test func keyRotation_newKeyAcceptedWithoutRestart_thenItsTokenExpires() throws {
        let tmp = TempDir()
        let (provider, server) = try Self.start(tmp, tokenSeconds: 1)
        defer { server.stop(); provider.stop() }
        let old = try #require(try Self.signIn(server.port, "reader", "r&=d pw").token)
        #expect(try Self.call(server.port, "GET", "/info/", token: old).status == 200)
        try provider.rotateKey()
        let new = try #require(try Self.signIn(server.port, "reader", "r&=d pw").token)
        #expect(new != old)
        // The key cache refetches on an unknown kid at most every 10 s (so made-up kids cannot flood the provider).
        Thread.sleep(forTimeInterval: 10.5)
        #expect(try Self.call(server.port, "GET", "/info/", token: new).status == 200)
        #expect(try Self.call(server.port, "GET", "/info/", token: old).status == 401)
        let payload = try #require(Base64URL.decode(Substring(new.split(separator: ".")[1])))
        let exp = try #require((try JSONSerialization.jsonObject(with: Data(payload)) as? [String: Any])?["exp"] as? Double)
        Thread.sleep(forTimeInterval: max(0, exp + 31 - Date().timeIntervalSince1970))
        let expired = try Self.call(server.port, "GET", "/info/", token: new)
        #expect(expired.status == 401)
        #expect(expired.headers["WWW-Authenticate"] == "Bearer")
    }
}
