import Foundation
import HTTPClient
import HTTPServer
import MONAILabel
import Synchronization
import Testing
import TestSupport
import WebToken
@testable import MONAILabelServer

#if canImport(Glibc)
import Glibc
#endif

/// A Keycloak-shaped OpenID Connect issuer on its own loopback port: the realm document with `public_key`,
/// `.well-known/openid-configuration`, a JWKS and a password-grant token endpoint, signing RS256 with `kid`.
/// Keycloak's realm document (`public_key`) is what the real provider of `AuthProviderLiveTests` (glewlwyd) lacks;
/// this issuer also needs no package. `rotate()` publishes a new key the way a provider's key rotation does.
final class TestIssuer: Sendable {
    struct Account { let password: String; let roles: [String] }
    private let server: HTTPServer
    private let key = Mutex<(kid: String, key: SigningKey)>(("k1", SigningKey.generate(.rs256)!))
    let accounts: [String: Account]

    var realm: String { "http://127.0.0.1:\(server.port ?? 0)/realms/test" }

    init(accounts: [String: Account]) throws {
        self.accounts = accounts
        var router = HTTPRouter()
        let box = Box()
        router.get("/realms/test") { _ in try .json(object: ["realm": "test", "public_key": box.issuer!.publicKeyBody()]) }
        router.get("/realms/test/.well-known/openid-configuration") { _ in
            let r = box.issuer!.realm
            return try .json(object: ["issuer": r, "jwks_uri": r + "/protocol/openid-connect/certs",
                                      "token_endpoint": r + "/protocol/openid-connect/token"])
        }
        router.get("/realms/test/protocol/openid-connect/certs") { _ in
            let (kid, k) = box.issuer!.key.withLock { $0 }
            return try .json(object: ["keys": [k.publicJWK(kid: kid)!]])
        }
        router.post("/realms/test/protocol/openid-connect/token") { req in
            let form = try req.form()
            let i = box.issuer!
            guard form.value("grant_type") == "password", form.value("client_id") == "monailabel-app",
                let user = form.value("username"), let a = i.accounts[user], a.password == form.value("password")
            else { return try .json(object: ["error": "invalid_grant"], status: .unauthorized) }
            let (kid, k) = i.key.withLock { $0 }
            let now = Date().timeIntervalSince1970
            let token = try JWT.sign(claims: [
                "iss": i.realm, "exp": now + 300, "iat": now, "preferred_username": user, "email": "\(user)@site",
                "name": user, "realm_access": ["roles": a.roles],
            ], key: k, kid: kid)
            return try .json(object: ["access_token": token, "token_type": "Bearer", "expires_in": 300])
        }
        server = HTTPServer(configuration: HTTPServerConfiguration(host: "127.0.0.1", port: 0), router: router)
        box.issuer = self
        try server.start()
    }

    func publicKeyBody() -> String {
        key.withLock { $0.key }.pem(isPrivate: false)!.split(separator: "\n").filter { !$0.hasPrefix("-----") }.joined()
    }

    func rotate() { key.withLock { $0 = ("k\(Int.random(in: 2...1_000_000))", SigningKey.generate(.rs256)!) } }
    func stop() { server.shutdown(gracePeriod: 1); server.wait() }

    /// Lets the routes reach the issuer that owns them.
    private final class Box: @unchecked Sendable { var issuer: TestIssuer? }
}

/// A live server on the demo studies and the radiology app with `auth` (the `MONAI_LABEL_AUTH_*` settings).
func startAuthServer(_ tmp: TempDir, auth: [String: String]) throws -> RunningServer {
    let studies = tmp.url.appendingPathComponent("studies")
    try DemoStudies.write(to: studies, count: 3, labeled: 1, shape: [32, 32, 16], spacing: [3, 3, 4])
    let app = tmp.url.appendingPathComponent("app")
    try FileManager.default.createDirectory(at: app, withIntermediateDirectories: true)
    try FileManager.default.copyItem(at: repoRoot.appendingPathComponent("sample-apps/radiology/app.json"),
                                     to: app.appendingPathComponent("app.json"))
    let options = ServerOptions(appDir: app.path, studies: studies.path, conf: ["models": "segmentation_spleen", "use_pretrained_model": "false"],
                                host: "127.0.0.1", port: 0, logLevel: .warning)
    return try ServerMain.start(options, environment: auth.merging(
        ["MONAI_LABEL_SESSION_PATH": tmp.url.appendingPathComponent("sessions").path]) { a, _ in a })
}

private func startAuthServer(_ tmp: TempDir, realm: String) throws -> RunningServer {
    try startAuthServer(tmp, auth: [
        "MONAI_LABEL_AUTH_ENABLE": "true", "MONAI_LABEL_AUTH_REALM_URI": realm, "MONAI_LABEL_AUTH_ISSUER": realm,
    ])
}

struct SocketFailure: Error { let call: String }

/// Sends `head` and a first KiB of the body it declares on a fresh connection, then reads until the server closes
/// (at most `waitSeconds`). Returns what came back and whether the server closed the connection.
func sendHeadAndReadUntilClosed(port: Int, head: String, waitSeconds: Int = 20) throws -> (response: String, closed: Bool) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw SocketFailure(call: "socket") }
    defer { close(fd) }
    var timeout = timeval(tv_sec: waitSeconds, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = in_port_t(UInt16(port).bigEndian)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    let connected = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else { throw SocketFailure(call: "connect") }
    // MSG_NOSIGNAL: a server that already closed must not kill the test with SIGPIPE.
    let bytes = Array(head.utf8) + [UInt8](repeating: 0x61, count: 1024)
    _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress!, $0.count, Int32(MSG_NOSIGNAL)) }
    var response: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
        if n == 0 { return (String(decoding: response, as: UTF8.self), true) }
        if n < 0 { return (String(decoding: response, as: UTF8.self), false) }
        response += chunk[0..<n]
    }
}

/// A 1 GB upload without a token, or with a token lacking the role, is answered 401/403 as soon as its headers
/// are read and the connection closed: the body is never read (the server would otherwise wait for it until the
/// read gives up).
@Test(.tags(.live)) func liveServer_largeUploadWithoutTokenOrRole_refusedBeforeTheBody() throws {
    let tmp = TempDir()
    let issuer = try TestIssuer(accounts: ["u": .init(password: "pw", roles: ["monailabel-user"])])
    defer { issuer.stop() }
    let server = try startAuthServer(tmp, realm: issuer.realm)
    defer { server.stop() }
    let upload = "PUT /datastore/image?image=big HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 1073741824\r\n"
    let none = try sendHeadAndReadUntilClosed(port: server.port, head: upload + "\r\n")
    #expect(none.response.hasPrefix("HTTP/1.1 401"), "\(none.response)")
    #expect(none.response.lowercased().contains("www-authenticate: bearer"))
    #expect(none.closed, "the server kept the connection to read the body")
    let bogus = try sendHeadAndReadUntilClosed(port: server.port, head: upload + "Authorization: Bearer a.b.c\r\n\r\n")
    #expect(bogus.response.hasPrefix("HTTP/1.1 401"), "\(bogus.response)")
    #expect(bogus.closed)
    // A real token (keys fetched by this sign-in's first use) without the annotator role: 403, also before the body.
    let client = HTTPClient()
    var form = HTTPHeaders()
    form.add("Content-Type", "application/x-www-form-urlencoded")
    let r = try client.post(URL(string: "http://127.0.0.1:\(server.port)/auth/token")!, headers: form,
                            body: Array("username=u&password=pw".utf8))
    let token = try #require((try JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any])?["access_token"] as? String)
    var auth = HTTPHeaders()
    auth.add("Authorization", "Bearer \(token)")
    #expect(try client.get(URL(string: "http://127.0.0.1:\(server.port)/info/")!, headers: auth).status == 200)
    let noRole = try sendHeadAndReadUntilClosed(port: server.port, head: upload + "Authorization: Bearer \(token)\r\n\r\n")
    #expect(noRole.response.hasPrefix("HTTP/1.1 403"), "\(noRole.response)")
    #expect(noRole.response.contains("monailabel-annotator"))
    #expect(noRole.closed)
}

/// The real Python client signs in through `/auth/token` (password grant to the issuer) and works as an annotator.
@Test(.tags(.live), .needsClientVenv)
func pythonClient_signsInThroughTheProvider_andWorksAsAnnotator() throws {
    let tmp = TempDir()
    let issuer = try TestIssuer(accounts: ["ann": .init(password: "s3cret pw", roles: ["monailabel-user", "monailabel-annotator"])])
    defer { issuer.stop() }
    let server = try startAuthServer(tmp, realm: issuer.realm)
    defer { server.stop() }
    let (status, text) = try runE2EScript("auth_sequence.py", ["http://127.0.0.1:\(server.port)", tmp.url.path, "ann", "s3cret pw"])
    #expect(status == 0, "\(text)")
    #expect(text.contains("AUTH SEQUENCE OK"))
}

/// Over real sockets: `/auth/token` hands out the provider's token, which opens `/info/`; no token gets 401 with
/// the Bearer challenge; the 10 s refetch limit is why key rotation is tested in-process (AuthRouterTests).
@Test(.tags(.live)) func liveServer_authTokenOpensInfo_noTokenIs401() throws {
    let tmp = TempDir()
    let issuer = try TestIssuer(accounts: ["u": .init(password: "p&=x", roles: ["monailabel-user"])])
    defer { issuer.stop() }
    let server = try startAuthServer(tmp, realm: issuer.realm)
    defer { server.stop() }
    let client = HTTPClient()
    let base = "http://127.0.0.1:\(server.port)"
    var form = HTTPHeaders()
    form.add("Content-Type", "application/x-www-form-urlencoded")
    let bad = try client.post(URL(string: base + "/auth/token")!, headers: form, body: Array("username=u&password=p".utf8))
    #expect(bad.status == 401)
    let r = try client.post(URL(string: base + "/auth/token")!, headers: form, body: Array("username=u&password=p%26%3Dx".utf8))
    #expect(r.status == 200)
    let token = try #require((try JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any])?["access_token"] as? String)
    let none = try client.get(URL(string: base + "/info/")!)
    #expect(none.status == 401)
    #expect(none.headers["WWW-Authenticate"] == "Bearer")
    var auth = HTTPHeaders()
    auth.add("Authorization", "Bearer \(token)")
    #expect(try client.get(URL(string: base + "/info/")!, headers: auth).status == 200)
    #expect(try client.get(URL(string: base + "/logs/")!, headers: auth).status == 403)
}
