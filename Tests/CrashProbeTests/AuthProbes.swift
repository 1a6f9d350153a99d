import Foundation
import Testing
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

extension CrashProbes {
    /// Hostile sign-in traffic against a server with auth on (issue 16): forged and malformed tokens, a hostile
    /// identity provider, password guessing. Every answer is a 401/403/4xx (502/503 when the provider misbehaves),
    /// never a hang, and the server serves a normal inference afterwards.
    @Suite struct AuthProbes {
        /// A server with built-in accounts and an account `probe` (user + annotator) whose token `expectAlive` sends.
        static func builtinServer() throws -> (ProbeServer, token: String) {
            let s = try ProbeServer(environment: ["MONAI_LABEL_AUTH_ENABLE": "true", "MONAI_LABEL_AUTH_BUILTIN": "true"])
            let (status, out) = try run(probeBinary, ["users", "add", "probe", "--app", s.app.path, "--roles", "user,annotator"],
                                        stdin: "probe-pw\n")
            guard status == 0 else { throw ProbeError("users add failed: \(out)") }
            let r = try s.curl("POST", "/auth/token", ["--data-urlencode", "username=probe", "--data-urlencode", "password=probe-pw"])
            guard r.status == 200, let o = try? JSONSerialization.jsonObject(with: Data(r.body.utf8)) as? [String: Any],
                let token = o["access_token"] as? String
            else { throw ProbeError("sign-in failed: \(r.status) \(r.body.prefix(300))") }
            s.authorization = "Bearer \(token)"
            return (s, token)
        }

        /// `GET /info/` and a small upload with `Authorization: Bearer <token>` (sent from a file: a header may be
        /// larger than one command-line argument).
        static func send(_ s: ProbeServer, token: String) throws -> [Int] {
            let file = s.dir.url.appendingPathComponent("auth-header.txt")
            try Data("Authorization: Bearer \(token)".utf8).write(to: file)
            let info = try s.curl("GET", "/info/", ["-H", "@\(file.path)"], timeout: 60)
            let upload = try s.curl("PUT", "/datastore/label?image=spleen_00&tag=final",
                                    ["-H", "@\(file.path)", "-F", "label=@\(file.path);filename=l.nii.gz"], timeout: 60)
            return [info.status, upload.status]
        }

        @Test func forgedAndMalformedTokens_areRefusedAndServerLives() throws {
            let (s, _) = try Self.builtinServer()
            let key = s.app.appendingPathComponent(".auth/signing-key.pem")
            let publicPEM = try openssl(["pkey", "-in", key.path, "-pubout"])
            func b64(_ s: String) -> String { base64url(Array(s.utf8)) }
            let future = Int(Date().timeIntervalSince1970) + 600
            let roles = #""realm_access":{"roles":["monailabel-user","monailabel-annotator"]}"#
            let claims = #"{"preferred_username":"mallory","exp":\#(future),\#(roles)}"#
            /// A token signed with the server's own key (`payload` a JSON object): only its claims are hostile.
            func signed(header: String = #"{"alg":"ES256","typ":"JWT"}"#, _ payload: String) throws -> String {
                // The built-in issuer's `iss`, so that only the claims under test can make it fail.
                let input = b64(header) + "." + b64(#"{"iss":"monailabel","# + payload.dropFirst())
                return input + "." + base64url(try es256Signature(input, keyFile: key))
            }
            let hmacInput = b64(#"{"alg":"HS256","typ":"JWT"}"#) + "." + b64(claims)
            let hmac = try openssl(["dgst", "-sha256", "-hmac", String(decoding: publicPEM, as: UTF8.self), "-binary"],
                                   stdin: Data(hmacInput.utf8))
            let deep = String(repeating: "[", count: 5000) + String(repeating: "]", count: 5000)
            // (what, token, the statuses it may get): 401 for every forgery; a token the server's key really signed
            // may pass (then /info/ is 200, the upload a 422 for its content, or 403 for a role its claims lack) or
            // be refused, but nothing else.
            let refused: Set<Int> = [401]
            let mayPass: Set<Int> = [200, 401, 403, 422]
            // A head over the server's limit is answered 431 and the connection closed, possibly while curl is still
            // sending it (then curl sees only the reset: 0).
            let oversized: Set<Int> = [0, 400, 401, 413, 431]
            let cases: [(String, String, Set<Int>)] = [
                ("1 MB token", "eyJ" + String(repeating: "A", count: 1 << 20), oversized),
                ("100 KB claims", b64(#"{"alg":"ES256"}"#) + "." + b64(#"{"x":""# + String(repeating: "a", count: 100_000) + #""}"#) + ".AAAA", oversized),
                ("deeply nested header", b64(#"{"alg":"ES256","x":"# + deep + "}") + "." + b64(claims) + ".AAAA", refused),
                ("not base64", "@@@.###.$$$", refused),
                ("two parts", "abc.def", refused),
                ("empty", ".", refused),
                ("alg none", b64(#"{"alg":"none"}"#) + "." + b64(claims) + ".", refused),
                ("alg NONE", b64(#"{"alg":"NONE"}"#) + "." + b64(claims) + ".", refused),
                ("HS256 with the public key as secret", hmacInput + "." + base64url(Array(hmac)), refused),
                ("RS256 header on an ES256 signature", try signed(header: #"{"alg":"RS256"}"#, claims), refused),
                ("crit header", try signed(header: #"{"alg":"ES256","crit":["exp"]}"#, claims), refused),
                ("kid an object", try signed(header: #"{"alg":"ES256","kid":{"a":[1]}}"#, claims), mayPass),
                ("huge exp", try signed(#"{"exp":1e308,\#(roles)}"#), mayPass),
                ("overflowing exp", try signed(#"{"exp":1e999,\#(roles)}"#), refused),
                ("negative exp", try signed(#"{"exp":-1e308,\#(roles)}"#), refused),
                ("exp NaN", try signed(#"{"exp":NaN,\#(roles)}"#), refused),
                ("exp a string", try signed(#"{"exp":"NaN",\#(roles)}"#), refused),
                ("nbf huge", try signed(#"{"exp":\#(future),"nbf":1e308,\#(roles)}"#), refused),
                ("nbf negative", try signed(#"{"exp":\#(future),"nbf":-9223372036854775809,\#(roles)}"#), mayPass),
                ("no exp", try signed(#"{\#(roles)}"#), refused),
                ("roles a string", try signed(#"{"exp":\#(future),"realm_access":{"roles":"monailabel-user"}}"#), mayPass),
                ("roles numbers", try signed(#"{"exp":\#(future),"realm_access":{"roles":[1,2,{"a":[]}]}}"#), [401, 403]),
                ("realm_access a list", try signed(#"{"exp":\#(future),"realm_access":[[],[]]}"#), [401, 403]),
                ("username a number", try signed(#"{"exp":\#(future),"preferred_username":1e308,\#(roles)}"#), mayPass),
                ("deeply nested claims", try signed(#"{"exp":\#(future),\#(roles),"x":\#(deep)}"#), mayPass),
                ("signed by another key", try {
                    let other = s.dir.url.appendingPathComponent("other.pem")
                    _ = try openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", other.path])
                    let input = b64(#"{"alg":"ES256"}"#) + "." + b64(claims)
                    return input + "." + base64url(try es256Signature(input, keyFile: other))
                }(), refused),
            ]
            // The probe's own signing is right: the same claims, signed by the server's key, pass.
            #expect(try Self.send(s, token: try signed(claims)) == [200, 422], "a genuinely signed token")
            for (what, token, allowed) in cases {
                let statuses = try Self.send(s, token: token)
                #expect(statuses.allSatisfy(allowed.contains), "\(what): \(statuses)")
                #expect(s.isRunning, "server died after \(what):\n\(s.log)")
            }
            try s.expectAlive("forged tokens")
        }

        @Test func passwordGuessing_builtinSignIn_isRateLimitedAndServerLives() throws {
            let (s, _) = try Self.builtinServer()
            func signIn(_ user: String, _ password: String) throws -> (status: Int, body: String) {
                let r = try s.curl("POST", "/auth/token", ["-D", "-", "--data-urlencode", "username=\(user)",
                                                           "--data-urlencode", "password=\(password)"])
                return (r.status, r.body)
            }
            var statuses: [Int] = []
            for i in 0..<8 { statuses.append(try signIn("probe", "guess\(i)").status) }
            #expect(statuses.prefix(5).allSatisfy { $0 == 401 }, "\(statuses)")
            #expect(statuses.suffix(3).allSatisfy { $0 == 429 }, "\(statuses)")
            let locked = try signIn("probe", "probe-pw")
            #expect(locked.status == 429, "the right password during the lock-out: \(locked.status)")
            #expect(locked.body.lowercased().contains("retry-after:"))
            // Many names from one address: the address limit (20 failures) stops them too.
            var spray: [Int] = []
            for i in 0..<25 { spray.append(try signIn("user\(i)", "x").status) }
            #expect(spray.allSatisfy { $0 == 401 || $0 == 429 }, "\(spray)")
            #expect(spray.last == 429, "\(spray)")
            for (user, password) in [(String(repeating: "u", count: 10_000), "x"), ("probe", String(repeating: "p", count: 100_000)),
                                     ("", "x"), ("probe\u{1}admin", "x")] {
                let st = try signIn(user, password).status
                #expect((400..<500).contains(st), "username \(user.prefix(20)) (\(user.count)), password (\(password.count)): \(st)")
            }
            let missing = try s.curl("POST", "/auth/token", ["--data-binary", "username=probe"])
            #expect(missing.status == 422 || missing.status == 429, "\(missing.status)")
            try s.expectAlive("password guessing")
        }

        @Test func hostileIdentityProvider_answers401Or5xx_neverHangs_andServerLives() throws {
            let rsaKey = ProbeTempFile()
            _ = try openssl(["genrsa", "-out", rsaKey.path, "2048"])
            let pem = String(decoding: try openssl(["rsa", "-in", rsaKey.path, "-pubout"]), as: UTF8.self)
            let publicKeyBody = pem.split(separator: "\n").filter { !$0.hasPrefix("-----") }.joined()
            let realm = try HostileRealm()
            defer { realm.stop() }
            let s = try ProbeServer(environment: ["MONAI_LABEL_AUTH_ENABLE": "true", "MONAI_LABEL_AUTH_REALM_URI": realm.realm,
                                                  "MONAI_LABEL_AUTH_TIMEOUT": "2"])
            func rs256(_ claims: String, kid: String?) throws -> String {
                let header = kid.map { #"{"alg":"RS256","kid":"\#($0)"}"# } ?? #"{"alg":"RS256"}"#
                let input = base64url(Array(header.utf8)) + "." + base64url(Array(claims.utf8))
                return input + "." + base64url(Array(try openssl(["dgst", "-sha256", "-sign", rsaKey.path], stdin: Data(input.utf8))))
            }
            let claims = #"{"preferred_username":"p","exp":\#(Int(Date().timeIntervalSince1970) + 3600),"realm_access":{"roles":["monailabel-user"]}}"#
            let token = try rs256(claims, kid: "k1")
            let deep = String(repeating: "[", count: 400_000) + String(repeating: "]", count: 400_000)
            let deepObject = String(repeating: #"{"a":"#, count: 150_000) + "1" + String(repeating: "}", count: 150_000)
            let jwks = HostileRealm.Answer.json(#"{"jwks_uri":"\#(realm.realm)/jwks","token_endpoint":"\#(realm.realm)/token"}"#)
            typealias M = HostileRealm.Mode
            let modes: [(String, M)] = [
                ("huge answers", M(all: .huge)),
                ("answers trickling a byte at a time", M(all: .trickle)),
                ("no answer", M(all: .silent)),
                ("bad JSON", M(all: .json("{not json"))),
                ("deeply nested arrays", M(all: .json(deep))),
                ("deeply nested objects", M(all: .json(deepObject))),
                ("wrong types", M(all: .json(#"{"public_key":42,"jwks_uri":["x"],"token_endpoint":{"a":1},"keys":"x"}"#))),
                ("public_key garbage", M(realm: .json(#"{"public_key":"\#(String(repeating: "A", count: 100_000))"}"#), discovery: .status(404, "{}"), jwks: .silent, token: .silent)),
                ("500s", M(all: .status(500, "{}"))),
                ("JWKS huge", M(realm: .status(404, "{}"), discovery: jwks, jwks: .huge, token: .huge)),
                ("JWKS deep", M(realm: .status(404, "{}"), discovery: jwks, jwks: .json(#"{"keys":"# + deep + "}"), token: .json(deep))),
                ("JWKS bad keys", M(realm: .status(404, "{}"), discovery: jwks, jwks: .json(#"""
                    {"keys":[{"kty":"RSA","kid":"k1","n":"!!","e":5},{"kty":"EC","kid":"k1","crv":"P-999","x":"AA","y":"AA"},
                     {"kty":"RSA","kid":"k1","n":"\#(String(repeating: "_", count: 8192))","e":"AQAB"},{"kty":"oct","kid":"k1","k":"AAAA"},
                     {"kid":"k1"},7,null]}
                    """#), token: .json(#"{"access_token":42}"#))),
            ]
            for (what, mode) in modes {
                realm.mode = mode
                let info = try s.curl("GET", "/info/", ["-H", "Authorization: Bearer \(token)"], timeout: 60)
                #expect([401, 503].contains(info.status), "\(what): /info/ \(info.status) \(info.body.prefix(200))")
                let signIn = try s.curl("POST", "/auth/token", ["--data-binary", "username=a&password=b"], timeout: 60)
                #expect([401, 502].contains(signIn.status),
                        "\(what): /auth/token \(signIn.status) \(signIn.body.prefix(200))")
                #expect(!signIn.body.contains("/tmp/") && !info.body.contains("/tmp/"), "\(what): a server path in a detail")
                #expect(s.isRunning, "server died after \(what):\n\(s.log)")
                #expect(try s.curl("GET", "/info/", timeout: 30).status == 401, "\(what): /info/ without a token")
            }
            // A sane provider again: Keycloak's realm key only (no JWKS), and a token without kid.
            realm.mode = M(realm: .json(#"{"realm":"probe","public_key":"\#(publicKeyBody)"}"#), discovery: .json("{}"),
                           jwks: .status(404, "{}"), token: .status(404, "{}"))
            s.authorization = "Bearer \(try rs256(claims, kid: nil))"
            try s.expectAlive("a hostile identity provider")
        }
    }
}

/// A temp file path, removed with its object.
final class ProbeTempFile {
    let dir = TempDir()
    var path: String { dir.url.appendingPathComponent("key.pem").path }
}

/// Runs `executable` with `stdin` as its input; its status and output.
func run(_ executable: URL, _ arguments: [String], stdin: String) throws -> (Int32, String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/timeout")
    p.arguments = bounded(executable.path, arguments)
    let input = Pipe(), out = Pipe()
    p.standardInput = input
    p.standardOutput = out
    p.standardError = out
    try p.run()
    input.fileHandleForWriting.write(Data(stdin.utf8))
    try input.fileHandleForWriting.close()
    let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    return (exitStatus(of: p), text)
}

/// `openssl args` with `stdin`; its stdout. Throws when it fails.
func openssl(_ args: [String], stdin: Data = Data()) throws -> Data {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/timeout")
    p.arguments = bounded("/usr/bin/openssl", args)
    let input = Pipe(), out = Pipe(), err = Pipe()
    p.standardInput = input
    p.standardOutput = out
    p.standardError = err
    try p.run()
    input.fileHandleForWriting.write(stdin)
    try input.fileHandleForWriting.close()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    let errors = err.fileHandleForReading.readDataToEndOfFile()
    guard exitStatus(of: p) == 0 else { throw ProbeError("openssl \(args.first ?? ""): \(String(decoding: errors, as: UTF8.self))") }
    return data
}

func base64url(_ bytes: [UInt8]) -> String {
    Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
        .replacingOccurrences(of: "=", with: "")
}

/// The JWS form (r || s, 32 bytes each) of openssl's DER ECDSA P-256 signature of `input` with `keyFile`.
func es256Signature(_ input: String, keyFile: URL) throws -> [UInt8] {
    let der = Array(try openssl(["dgst", "-sha256", "-sign", keyFile.path], stdin: Data(input.utf8)))
    // SEQUENCE { INTEGER r, INTEGER s }, short lengths for P-256.
    guard der.count > 8, der[0] == 0x30, der[2] == 0x02 else { throw ProbeError("unexpected DER signature") }
    let rLen = Int(der[3])
    let sAt = 4 + rLen
    guard sAt + 2 <= der.count, der[sAt] == 0x02 else { throw ProbeError("unexpected DER signature") }
    let sLen = Int(der[sAt + 1])
    guard sAt + 2 + sLen <= der.count else { throw ProbeError("unexpected DER signature") }
    func fixed(_ v: ArraySlice<UInt8>) -> [UInt8] {
        let trimmed = Array(v.drop { $0 == 0 })
        return [UInt8](repeating: 0, count: max(0, 32 - trimmed.count)) + trimmed.suffix(32)
    }
    return fixed(der[4..<sAt]) + fixed(der[(sAt + 2)..<(sAt + 2 + sLen)])
}

/// An identity provider that misbehaves on purpose, on a loopback port: each of its four documents (the realm,
/// `.well-known/openid-configuration`, `/jwks`, `/token`) answers as `mode` says.
final class HostileRealm: @unchecked Sendable {
    enum Answer: Sendable {
        case json(String)
        case status(Int, String)
        /// Declares 4 GiB and sends until the client hangs up.
        case huge
        /// Declares 100 KB and sends a byte every half second.
        case trickle
        /// Reads the request and says nothing until the client hangs up.
        case silent
    }

    struct Mode: Sendable {
        var realm: Answer, discovery: Answer, jwks: Answer, token: Answer
        init(realm: Answer, discovery: Answer, jwks: Answer, token: Answer) {
            (self.realm, self.discovery, self.jwks, self.token) = (realm, discovery, jwks, token)
        }
        init(all: Answer) { self.init(realm: all, discovery: all, jwks: all, token: all) }
    }

    private let lock = NSLock()
    private var current = Mode(all: .status(404, "{}"))
    private var stopped = false
    private let fd: Int32
    let port: Int
    var realm: String { "http://127.0.0.1:\(port)/realms/hostile" }

    var mode: Mode {
        get { lock.lock(); defer { lock.unlock() }; return current }
        set { lock.lock(); current = newValue; lock.unlock() }
    }

    private var isStopped: Bool { lock.lock(); defer { lock.unlock() }; return stopped }

    init() throws {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard listener >= 0 else { throw ProbeError("socket() failed") }
        fd = listener
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &len) }
        }
        guard bound == 0, listen(listener, 64) == 0 else {
            close(listener)
            throw ProbeError("bind/listen failed")
        }
        port = Int(UInt16(bigEndian: addr.sin_port))
        Thread.detachNewThread { [self] in
            while true {
                let c = accept(listener, nil, nil)
                if c < 0 {
                    if isStopped { return }
                    continue
                }
                Thread.detachNewThread { [self] in serve(c) }
            }
        }
    }

    func stop() {
        lock.lock()
        stopped = true
        lock.unlock()
        shutdown(fd, Int32(SHUT_RDWR))
        close(fd)
    }

    private func serve(_ c: Int32) {
        defer { close(c) }
        var timeout = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var request: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while request.count < 1 << 20, !request.containsHeadEnd {
            let n = chunk.withUnsafeMutableBytes { read(c, $0.baseAddress!, $0.count) }
            if n <= 0 { return }
            request += chunk[0..<n]
        }
        let line = String(decoding: request.prefix { $0 != 13 }, as: UTF8.self)
        let path = line.split(separator: " ").dropFirst().first.map(String.init) ?? "/"
        let m = mode
        let answer: Answer = path.hasSuffix("/.well-known/openid-configuration") ? m.discovery
            : path.hasSuffix("/jwks") ? m.jwks : path.hasSuffix("/token") ? m.token : m.realm
        func write(_ s: String) -> Bool { writeBytes(Array(s.utf8)) }
        func writeBytes(_ b: [UInt8]) -> Bool {
            b.withUnsafeBytes { send(c, $0.baseAddress!, $0.count, Int32(MSG_NOSIGNAL)) } == b.count
        }
        switch answer {
        case .json(let body):
            _ = write("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n" + body)
        case .status(let code, let body):
            _ = write("HTTP/1.1 \(code) X\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n" + body)
        case .huge:
            guard write("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: \(1 << 32)\r\n\r\n") else { return }
            let block = [UInt8](repeating: UInt8(ascii: "["), count: 65536)
            for _ in 0..<(1 << 16) { guard writeBytes(block) else { return } }
        case .trickle:
            guard write("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n") else { return }
            for _ in 0..<240 {
                guard write("[") else { return }
                usleep(500_000)
            }
        case .silent:
            // Until the client hangs up (read returns 0) or 60 s pass.
            var waited = 0
            while waited < 2 {
                let n = chunk.withUnsafeMutableBytes { read(c, $0.baseAddress!, $0.count) }
                if n == 0 { return }
                if n < 0 { waited += 1 }
            }
        }
    }
}

private extension Array where Element == UInt8 {
    var containsHeadEnd: Bool {
        guard count >= 4 else { return false }
        for i in 0...(count - 4) where self[i] == 13 && self[i + 1] == 10 && self[i + 2] == 13 && self[i + 3] == 10 { return true }
        return false
    }
}
