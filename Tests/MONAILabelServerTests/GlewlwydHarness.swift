import Foundation
import HTTPClient
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// A real OpenID Connect provider for the auth tests: Debian's `glewlwyd` (2.7), on a free loopback port with its
/// own SQLite database in a temp folder, started and stopped by the test. Chosen over Keycloak because it is a
/// Debian package (one `apt-get install`, no JVM, starts in well under a second) with a standards-conformant OIDC
/// plugin: discovery, a JWKS, RS256 JWT access tokens (RFC 9068) and the password grant.
///
/// Set-up, all through its admin API after creating the database from the package's own schema: the OIDC plugin
/// with an RSA key made by `openssl`, one scope per MONAI Label role, the accounts with their passwords and
/// scopes, and the `monailabel-app` client. glewlwyd grants the password grant to confidential clients only and
/// needs a `scope`, so the server gets `MONAI_LABEL_AUTH_CLIENT_SECRET` and `MONAI_LABEL_AUTH_SCOPE`; the granted
/// roles are the token's `scope` claim (`MONAI_LABEL_AUTH_TOKEN_ROLES=scope`), and `preferred_username`, `name`,
/// `email` are added from the account (the plugin's "additional parameters").
final class Glewlwyd: @unchecked Sendable {
    static let binary = "/usr/bin/glewlwyd"
    /// The SQLite schema and first admin account the package ships (for dbconfig-common).
    static let schema = "/usr/share/dbconfig-common/data/glewlwyd/install/sqlite3"
    static let modules = "/usr/lib/glewlwyd"
    static var available: Bool {
        FileManager.default.isExecutableFile(atPath: binary) && FileManager.default.fileExists(atPath: schema)
            && which("sqlite3") != nil && which("openssl") != nil
    }
    static let roles = ["monailabel-admin", "monailabel-reviewer", "monailabel-annotator", "monailabel-user"]
    static let clientID = "monailabel-app"
    static let clientSecret = "test-client-secret"

    struct Account {
        let username: String
        let password: String
        let roles: [String]
    }

    let dir: URL
    let port: Int
    /// Seconds an access token lasts.
    let tokenSeconds: Int
    private var process: Process?
    private let client = HTTPClient(configuration: HTTPClientConfiguration(connectTimeout: 2, readTimeout: 10))
    private var adminCookie = ""

    /// The OIDC plugin's base URL: `MONAI_LABEL_AUTH_REALM_URI`, and the tokens' `iss`.
    var realm: String { "http://127.0.0.1:\(port)/api/oidc" }
    private var api: String { "http://127.0.0.1:\(port)/api" }

    /// The server settings that sign in through this provider.
    var serverEnvironment: [String: String] {
        ["MONAI_LABEL_AUTH_ENABLE": "true", "MONAI_LABEL_AUTH_REALM_URI": realm, "MONAI_LABEL_AUTH_ISSUER": realm,
         "MONAI_LABEL_AUTH_CLIENT_ID": Self.clientID, "MONAI_LABEL_AUTH_CLIENT_SECRET": Self.clientSecret,
         "MONAI_LABEL_AUTH_SCOPE": (["openid"] + Self.roles).joined(separator: " "), "MONAI_LABEL_AUTH_TOKEN_ROLES": "scope"]
    }

    init(dir: URL, accounts: [Account], tokenSeconds: Int = 300) throws {
        self.dir = dir
        self.tokenSeconds = tokenSeconds
        port = try freePort()
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let db = dir.appendingPathComponent("glewlwyd.db").path
        let made = try runProcess(which("sqlite3")!, [db, ".read \(Self.schema)"])
        guard made.status == 0 else { throw GlewlwydError(description: "sqlite3: \(made.output)") }
        let config = """
            port=\(port)
            bind_address="127.0.0.1"
            external_url="http://127.0.0.1:\(port)"
            login_url="login.html"
            api_prefix="api"
            log_mode="console"
            log_level="WARNING"
            cookie_domain=""
            cookie_secure=0
            session_expiration=3600
            session_key="GLEWLWYD2_SESSION_ID"
            admin_session_authentication="cookie"
            profile_session_authentication="cookie"
            login_api_enabled=true
            max_post_size=1048576
            admin_scope="g_admin"
            profile_scope="g_profile"
            user_module_path="\(Self.modules)/user"
            user_middleware_module_path="\(Self.modules)/user_middleware"
            client_module_path="\(Self.modules)/client"
            user_auth_scheme_module_path="\(Self.modules)/scheme"
            plugin_module_path="\(Self.modules)/plugin"
            hash_algorithm="SHA512"
            database = { type = "sqlite3"; path = "\(db)"; };
            """
        try Data(config.utf8).write(to: dir.appendingPathComponent("glewlwyd.conf"))
        try start()
        try configure(accounts: accounts)
    }

    deinit { stop() }

    private func start() throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.binary)
        p.arguments = ["-c", dir.appendingPathComponent("glewlwyd.conf").path]
        let log = dir.appendingPathComponent("glewlwyd.log")
        guard FileManager.default.createFile(atPath: log.path, contents: nil) else {
            throw GlewlwydError(description: "cannot create \(log.path)")
        }
        let handle = try FileHandle(forWritingTo: log)
        p.standardOutput = handle
        p.standardError = handle
        try p.run()
        process = p
        // The built-in admin account (admin/password, from the package's schema) signs in once it listens.
        let deadline = Date().addingTimeInterval(15)
        while Date() < deadline {
            if let r = try? send("POST", "/auth/", json: ["username": "admin", "password": "password"]), r.status == 200,
                let cookie = r.headers["Set-Cookie"]?.split(separator: ";").first
            {
                adminCookie = String(cookie)
                return
            }
            guard p.isRunning else { break }
            Thread.sleep(forTimeInterval: 0.05)
        }
        let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
        stop()
        throw GlewlwydError(description: "glewlwyd did not start on port \(port): \(text.suffix(2000))")
    }

    func stop() {
        guard let p = process else { return }
        process = nil
        stopChild(p, signal: SIGKILL)
    }

    private func send(_ method: String, _ path: String, json: Any? = nil) throws -> HTTPClientResponse {
        var headers = HTTPHeaders()
        var body: [UInt8] = []
        if let json {
            headers.add("Content-Type", "application/json")
            body = Array(try JSONSerialization.data(withJSONObject: json))
        }
        if !adminCookie.isEmpty { headers.add("Cookie", adminCookie) }
        return try client.send(method: method, url: URL(string: api + path)!, headers: headers, body: body)
    }

    /// An admin API call that must succeed.
    private func admin(_ method: String, _ path: String, _ json: Any? = nil) throws {
        let r = try send(method, path, json: json)
        guard r.status == 200 else {
            throw GlewlwydError(description: "glewlwyd \(method) \(path) -> \(r.status) \(String(decoding: r.body, as: UTF8.self))")
        }
    }

    private func configure(accounts: [Account]) throws {
        try admin("POST", "/mod/plugin/", ["module": "oidc", "name": "oidc", "display_name": "OIDC", "enabled": true,
                                            "parameters": try pluginParameters(key: try newRSAKey())])
        for role in Self.roles {
            try admin("POST", "/scope/", ["name": role, "display_name": role, "description": "MONAI Label role",
                                          "password_required": false, "scheme": [String: Any]()])
        }
        for a in accounts {
            try admin("POST", "/user/", ["username": a.username, "password": a.password, "name": a.username.capitalized,
                                         "email": "\(a.username)@site.test", "scope": ["openid"] + a.roles, "enabled": true])
        }
        try admin("POST", "/client/", ["client_id": Self.clientID, "name": "MONAI Label", "confidential": true,
                                       "client_secret": Self.clientSecret, "authorization_type": ["password"],
                                       "token_endpoint_auth_method": ["client_secret_post"], "redirect_uri": [String](),
                                       "scope": [String](), "enabled": true])
    }

    /// Replaces the signing key (a provider's key rotation): the JWKS then lists only the new key, under a new
    /// `kid` (glewlwyd's are key thumbprints), and new tokens are signed with it.
    func rotateKey() throws {
        try admin("PUT", "/mod/plugin/oidc", ["module": "oidc", "name": "oidc", "display_name": "OIDC", "enabled": true,
                                              "parameters": try pluginParameters(key: try newRSAKey())])
        try admin("PUT", "/mod/plugin/oidc/reset")
    }

    /// A fresh RSA private key and its public key, PEM, from `openssl`.
    private func newRSAKey() throws -> (privatePEM: String, publicPEM: String) {
        let file = dir.appendingPathComponent("key-\(UUID().uuidString).pem")
        let openssl = which("openssl")!
        let made = try runProcess(openssl, ["genrsa", "-out", file.path, "2048"])
        let pub = try runProcess(openssl, ["rsa", "-in", file.path, "-pubout"])
        guard made.status == 0, pub.status == 0, let pubStart = pub.output.range(of: "-----BEGIN PUBLIC KEY-----") else {
            throw GlewlwydError(description: "openssl: \(made.output) \(pub.output)")
        }
        return (try String(contentsOf: file, encoding: .utf8), String(pub.output[pubStart.lowerBound...]))
    }

    /// The OIDC plugin: RS256 with `key`, the password grant only (a "non-OIDC" OAuth2 grant in glewlwyd's terms),
    /// `tokenSeconds` access tokens carrying the account's name claims. glewlwyd checks that every parameter is present.
    private func pluginParameters(key: (privatePEM: String, publicPEM: String)) throws -> [String: Any] {
        [
            "iss": realm, "jwt-type": "rsa", "jwt-key-size": "256", "key": key.privatePEM, "cert": key.publicPEM,
            "jwks-uri": "", "jwks-private": "", "jwks-public": "", "jwks-public-uri": "", "default-kid": "",
            "client-sign_kid-parameter": "", "jwks-show": true, "jwks-x5c": [String](),
            "access-token-duration": tokenSeconds, "refresh-token-duration": 3600, "code-duration": 600,
            "refresh-token-rolling": false, "refresh-token-one-use": "never",
            "client-refresh-token-one-use-parameter": "refresh-token-one-use",
            "allow-non-oidc": true, "auth-type-password-enabled": true, "auth-type-id-token-enabled": true,
            "auth-type-code-enabled": false, "auth-type-code-revoke-replayed": false, "auth-type-token-enabled": false,
            "auth-type-none-enabled": false, "auth-type-client-enabled": false, "auth-type-device-enabled": false,
            "auth-type-refresh-enabled": false,
            "scope": [String](), "claims": [String](),
            "additional-parameters": [
                ["user-parameter": "username", "token-parameter": "preferred_username"],
                ["user-parameter": "name", "token-parameter": "name"],
                ["user-parameter": "email", "token-parameter": "email"],
            ],
            "request-parameter-allow": false, "request-uri-allow-https-non-secure": false, "request-maximum-exp": 3600,
            "subject-type": "public", "secret-type": "pairwise",
            "address-claim": ["type": "no", "formatted": "", "street_address": "", "locality": "", "region": "",
                              "postal_code": "", "country": "", "mandatory": false] as [String: Any],
            "name-claim": "no", "name-claim-scope": [String](), "email-claim": "no", "email-claim-scope": [String](),
            "scope-claim": "no", "scope-claim-scope": [String](), "allowed-scope": ["openid"],
            "pkce-allowed": false, "pkce-method-plain-allowed": false,
            "introspection-revocation-allowed": false, "introspection-revocation-auth-scope": [String](),
            "introspection-revocation-allow-target-client": true,
            "register-client-allowed": false, "register-client-auth-scope": [String](),
            "register-client-credentials-scope": [String](), "register-client-management-allowed": false,
            "register-resource-specify-allowed": false, "register-resource-default": [String](),
            "session-management-allowed": false, "client-pubkey-parameter": "", "client-jwks-parameter": "jwks",
            "client-jwks_uri-parameter": "jwks_uri", "encrypt-out-token-allow": false,
            "device-authorization-expiration": 600, "device-authorization-interval": 5,
            "oauth-dpop-allowed": false, "oauth-dpop-iat-duration": 10,
            "resource-allowed": false, "resource-scope": [String: Any](), "resource-client-property": "",
            "resource-scope-and-client-property": false, "resource-change-allowed": false,
            "oauth-rar-allowed": false, "rar-types-client-property": "authorization_data_types",
            "rar-allow-auth-unsigned": false, "rar-allow-auth-unencrypted": true, "rar-types": [String: Any](),
            "oauth-par-allowed": false, "oauth-par-duration": 90, "oauth-par-required": false,
            "oauth-par-request_uri-prefix": "urn:ietf:params:oauth:request_uri:",
            "prompt-continue-client-property": "", "restrict-scope-client-property": "",
        ]
    }
}

struct GlewlwydError: Error, CustomStringConvertible {
    let description: String
}
