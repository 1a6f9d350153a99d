import Foundation
import TestSupport
import HTTPServer
import Testing
@testable import HTTPClient

/// Our own HTTPServer on an ephemeral port, stopped when released.
final class TestServer: @unchecked Sendable {
    let server: HTTPServer
    let port: Int

    init(tls: TLSConfiguration? = nil, routes: (inout HTTPRouter) -> Void) throws {
        var config = HTTPServerConfiguration(host: "127.0.0.1", port: 0, tls: tls)
        config.workerCount = 2
        var router = HTTPRouter()
        routes(&router)
        server = HTTPServer(configuration: config, router: router)
        try server.start()
        guard let p = server.port else { throw HTTPError(.internalServerError, "no port") }
        port = p
    }

    func url(_ path: String, scheme: String = "http") -> URL { URL(string: "\(scheme)://127.0.0.1:\(port)\(path)")! }

    deinit {
        server.shutdown(gracePeriod: 0)
        server.wait()
    }
}

final class Chunks: HTTPBodyStream, @unchecked Sendable {
    private let lock = NSLock()
    private var left: Int
    init(_ n: Int) { left = n }
    func next() throws -> [UInt8]? {
        lock.lock()
        defer { lock.unlock() }
        guard left > 0 else { return nil }
        left -= 1
        return [UInt8](repeating: UInt8(65 + left % 26), count: 10_000)
    }
}

/// A port nothing listens on: bound then closed.
func closedPort() throws -> Int {
    let s = try TestServer { _ in }
    let p = s.port
    s.server.shutdown(gracePeriod: 0)
    s.server.wait()
    return p
}

@Suite(.tags(.live))
struct LiveHTTPClientTests {
    @Test func get_contentLengthBody_arrives() throws {
        let s = try TestServer { r in r.get("/hello") { _ in .text("hello") } }
        let r = try HTTPClient().get(s.url("/hello"))
        #expect(r.status == 200)
        #expect(r.text == "hello")
    }

    @Test func post_largeBody_isEchoed() throws {
        let s = try TestServer { r in
            r.post("/echo") { req in .bytes(try req.bodyBytes(limit: 1 << 26), contentType: "application/octet-stream") }
        }
        let body = (0..<3_000_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let r = try HTTPClient().post(s.url("/echo"), headers: ["Content-Type": "application/octet-stream"], body: body)
        #expect(r.status == 200)
        #expect(r.body == body)
    }

    @Test func get_chunkedStream_isReassembled() throws {
        let s = try TestServer { r in r.get("/stream") { _ in HTTPResponse(body: .stream(Chunks(7))) } }
        let r = try HTTPClient().get(s.url("/stream"))
        #expect(r.headers["Transfer-Encoding"]?.lowercased() == "chunked")
        #expect(r.body.count == 70_000)
        #expect(r.body.first == UInt8(65 + 6))
    }

    @Test func errorStatus_isAResponseNotAnError() throws {
        let s = try TestServer { _ in }
        let r = try HTTPClient().get(s.url("/missing"))
        #expect(r.status == 404)
    }

    @Test func basicAuthHeader_reachesServer() throws {
        let s = try TestServer { r in r.get("/auth") { req in .text(req.headers["Authorization"] ?? "none") } }
        let r = try HTTPClient().get(s.url("/auth"), headers: ["Authorization": basicAuthorization(user: "u", password: "p:w")])
        #expect(r.text == "Basic dTpwOnc=")
    }

    @Test func silentServer_failsWithReadTimeout() throws {
        let s = try TestServer { r in
            r.get("/slow") { _ in
                Thread.sleep(forTimeInterval: 1.5)
                return .text("late")
            }
        }
        let client = HTTPClient(configuration: HTTPClientConfiguration(connectTimeout: 2, readTimeout: 0.2))
        do {
            _ = try client.get(s.url("/slow"))
            Issue.record("expected a read timeout")
        } catch let e as HTTPClientError {
            #expect(e.kind == .readTimeout)
        }
    }

    @Test func refusedConnection_isClearError() throws {
        let port = try closedPort()
        do {
            _ = try HTTPClient().get(URL(string: "http://127.0.0.1:\(port)/x")!)
            Issue.record("expected connection refused")
        } catch let e as HTTPClientError {
            #expect(e.kind == .connectionRefused)
            #expect(e.isConnectFailure)
            #expect(e.message.contains("127.0.0.1:\(port)"))
        }
    }

    @Test func unknownHost_cannotResolve() throws {
        do {
            _ = try HTTPClient().get(URL(string: "http://no-such-host.invalid/x")!)
            Issue.record("expected a resolve failure")
        } catch let e as HTTPClientError {
            #expect(e.kind == .cannotResolve)
        }
    }

    @Test func https_selfSigned_worksWithoutVerification_andFailsWithIt() throws {
        let dir = NSTemporaryDirectory() + "httpclient-tls-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let openssl = try runProcess(URL(fileURLWithPath: "/usr/bin/openssl"),
                                     ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", dir + "/key.pem", "-out", dir + "/cert.pem",
                                      "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"])
        try #require(openssl.status == 0, "openssl req failed: \(openssl.output)")
        let s = try TestServer(tls: TLSConfiguration(certificateFile: dir + "/cert.pem", keyFile: dir + "/key.pem")) { r in
            r.get("/hello") { _ in .text("secure hello") }
        }
        let insecure = HTTPClient(configuration: HTTPClientConfiguration(verifyCertificates: false))
        #expect(try insecure.get(s.url("/hello", scheme: "https")).text == "secure hello")
        let pinned = HTTPClient(configuration: HTTPClientConfiguration(caFile: dir + "/cert.pem"))
        #expect(try pinned.get(s.url("/hello", scheme: "https")).text == "secure hello")
        do {
            _ = try HTTPClient().get(s.url("/hello", scheme: "https"))
            Issue.record("expected a certificate failure")
        } catch let e as HTTPClientError {
            #expect(e.kind == .tls)
            #expect(e.message.contains("certificate"))
        }
    }
}
