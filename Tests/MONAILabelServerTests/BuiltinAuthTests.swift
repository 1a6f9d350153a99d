import Foundation
import HTTPServer
import MONAILabel
import Testing
import TestSupport
import WebToken
@testable import MONAILabelServer

/// Built-in accounts: the users file, the server's own key, `/auth/token` and its rate limit.
@Suite(.tags(.router)) struct BuiltinAuthTests {
    static func settings() -> AuthSettings {
        var s = AuthSettings()
        s.enable = true
        s.builtin = true
        return s
    }

    static func login(_ r: HTTPRouter, _ user: String, _ password: String, from address: String = "10.0.0.1:40000") throws -> HTTPResponse {
        let body = Array("username=\(user)&password=\(password)&grant_type=password".utf8)
        return r.respond(to: try HTTPRequest(
            method: .post, target: "/auth/token",
            headers: HTTPHeaders([("Host", "t"), ("Content-Type", "application/x-www-form-urlencoded")]), body: .bytes(body),
            remoteAddress: address))
    }

    @Test func accountsFile_addListPasswdRemove_keptPrivate() throws {
        let tmp = TempDir()
        let a = BuiltinAccounts(appDir: tmp.url)
        try a.add("ann", password: "password-1", roles: ["monailabel-annotator", "monailabel-user"])
        #expect(throws: MONAILabelError.self) { try a.add("ann", password: "password-2", roles: []) }
        #expect(throws: MONAILabelError.self) { try a.add("bob", password: "short", roles: []) }
        #expect(try a.list().map(\.username) == ["ann"])
        #expect(try a.check("ann", "password-1")?.roles == ["monailabel-annotator", "monailabel-user"])
        try a.setPassword("ann", password: "password-2")
        #expect(try a.check("ann", "password-1") == nil)
        #expect(try a.check("ann", "password-2") != nil)
        #expect(try a.check("nobody", "password-2") == nil)
        let attrs = try FileManager.default.attributesOfItem(atPath: a.usersFile.path)
        #expect((attrs[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        let text = try String(contentsOf: a.usersFile, encoding: .utf8)
        #expect(!text.contains("password-2"))
        try a.remove("ann")
        #expect(try a.list().isEmpty)
    }

    @Test func signingKey_generatedOncePrivate_andKeptAcrossStarts() throws {
        let tmp = TempDir()
        let first = try BuiltinAccounts(appDir: tmp.url).signingKey()
        let again = try BuiltinAccounts(appDir: tmp.url).signingKey()
        #expect(first.kid == again.kid)
        let attrs = try FileManager.default.attributesOfItem(atPath: BuiltinAccounts(appDir: tmp.url).keyFile.path)
        #expect((attrs[.posixPermissions] as? NSNumber)?.intValue == 0o600)
    }

    @Test func authToken_builtinAccount_tokenOpensItsRoutesOnly() throws {
        let c = try TestClient()
        try BuiltinAccounts(appDir: c.app.settings.appDir).add("ann", password: "pw-12345678", roles: ["monailabel-user"])
        let auth = try #require(try Authenticator.make(settings: Self.settings(), appDir: c.app.settings.appDir, log: .silent))
        let r = makeRouter(app: c.app, log: .silent, authenticator: auth)
        let resp = try Self.login(r, "ann", "pw-12345678")
        #expect(resp.status.code == 200)
        let json = try JSONValue.parse(try bodyBytes(resp))
        #expect(json["token_type"]?.stringValue == "bearer")
        let token = try #require(json["access_token"]?.stringValue)
        let jwt = try JWT.decode(token).jwt
        #expect(jwt.header["alg"] as? String == "ES256")
        #expect(jwt.claims["iss"] as? String == "monailabel")
        func get(_ path: String) throws -> Int {
            r.respond(to: try HTTPRequest(method: .get, target: path,
                                          headers: HTTPHeaders([("Host", "t"), ("Authorization", "Bearer \(token)")]))).status.code
        }
        #expect(try get("/info/") == 200)
        #expect(try get("/logs/") == 403)
        #expect(try Self.login(r, "ann", "wrong-password").status.code == 401)
        #expect(try Self.login(r, "nobody", "pw-12345678").status.code == 401)
    }

    @Test func authToken_repeatedFailures_rateLimitedPerUserThenPerAddress() throws {
        let c = try TestClient()
        try BuiltinAccounts(appDir: c.app.settings.appDir).add("ann", password: "pw-12345678", roles: [])
        let auth = try #require(try Authenticator.make(settings: Self.settings(), appDir: c.app.settings.appDir, log: .silent))
        let r = makeRouter(app: c.app, log: .silent, authenticator: auth)
        for _ in 0..<auth.limiter.maxPerUser { #expect(try Self.login(r, "ann", "nope-nope").status.code == 401) }
        let limited = try Self.login(r, "ann", "pw-12345678")
        #expect(limited.status.code == 429)
        #expect(limited.headers["Retry-After"] != nil)
        // Another address is limited for this user too; another user from a fresh address is not.
        #expect(try Self.login(r, "ann", "pw-12345678", from: "10.0.0.2:40001").status.code == 429)
        #expect(try Self.login(r, "other", "x-x-x-x-x", from: "[fd00::3]:40002").status.code == 401)
    }

    @Test func clientHost_dropsThePort() {
        #expect(clientHost("10.1.2.3:5555") == "10.1.2.3")
        #expect(clientHost("[::1]:5555") == "::1")
        #expect(clientHost("unknown") == "unknown")
    }

    @Test func loginLimiter_windowPasses_triesAllowedAgain() {
        let l = LoginLimiter(window: 300, maxPerUser: 2, maxPerAddress: 3)
        let t0 = Date(timeIntervalSince1970: 1000)
        l.failed(username: "u", address: "a", now: t0)
        #expect(l.retryAfter(username: "u", address: "a", now: t0) == nil)
        l.failed(username: "u", address: "a", now: t0)
        #expect(l.retryAfter(username: "u", address: "a", now: t0.addingTimeInterval(10)) == 290)
        l.failed(username: "v", address: "a", now: t0)
        #expect(l.retryAfter(username: "w", address: "a", now: t0) == 300)
        #expect(l.retryAfter(username: "u", address: "b", now: t0.addingTimeInterval(301)) == nil)
    }

    /// `monailabel users add` through the real binary, then the Python client signs in with that account.
    @Test(.needsClientVenv)
    func pythonClient_signsInWithABuiltinAccountMadeByTheCLI() throws {
        let tmp = TempDir()
        let studies = tmp.url.appendingPathComponent("studies")
        try DemoStudies.write(to: studies, count: 3, labeled: 1, shape: [32, 32, 16], spacing: [3, 3, 4])
        let app = tmp.url.appendingPathComponent("app")
        try FileManager.default.createDirectory(at: app, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: repoRoot.appendingPathComponent("sample-apps/radiology/app.json"),
                                         to: app.appendingPathComponent("app.json"))
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/timeout")
        p.arguments = bounded(monailabelBinary.path, ["users", "add", "ann", "--app", app.path, "--roles", "user,annotator"])
        let input = Pipe(), output = Pipe()
        p.standardInput = input
        p.standardOutput = output
        p.standardError = output
        try p.run()
        input.fileHandleForWriting.write(Data("a long pass phrase\n".utf8))
        try input.fileHandleForWriting.close()
        let added = exitStatus(of: p)
        #expect(added == 0, "\(String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))")
        let listed = try runProcess(monailabelBinary, ["users", "list", "--app", app.path])
        #expect(listed.output.contains("ann\tmonailabel-user,monailabel-annotator"))

        let options = ServerOptions(appDir: app.path, studies: studies.path, conf: ["models": "segmentation_spleen", "use_pretrained_model": "false"],
                                    host: "127.0.0.1", port: 0, logLevel: .warning)
        let server = try ServerMain.start(options, environment: [
            "MONAI_LABEL_SESSION_PATH": tmp.url.appendingPathComponent("sessions").path,
            "MONAI_LABEL_AUTH_ENABLE": "true", "MONAI_LABEL_AUTH_BUILTIN": "true",
        ])
        defer { server.stop() }
        let (status, text) = try runE2EScript("auth_sequence.py", ["http://127.0.0.1:\(server.port)", tmp.url.path, "ann", "a long pass phrase"])
        #expect(status == 0, "\(text)")
        #expect(text.contains("AUTH SEQUENCE OK"))
    }
}
