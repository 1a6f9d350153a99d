import Foundation
import TestSupport
import Testing
@testable import HTTPServer

private let pythonRequestsAvailable = (try? runProcess(["python3", "-c", "import requests"]).status) == 0

/// curl, Python `requests` and `openssl s_client` against a live server.
@Suite(.tags(.live)) struct RealClientTests {
    @Test func curl_putUpload_withExpectContinue() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/upload.bin"
        _ = FileManager.default.createFile(atPath: path, contents: Data(repeating: 0x5A, count: 3 << 20))
        let s = try LiveServer()
        let (status, out) = try runProcess([
            "curl", "-sS", "-v", "--http1.1", "-H", "Expect: 100-continue", "-T", path, "http://127.0.0.1:\(s.port)/echo",
        ])
        #expect(status == 0, "\(out)")
        #expect(out.contains("< HTTP/1.1 100 Continue"))
        #expect(out.contains("< HTTP/1.1 200 OK"))
        #expect(out.hasSuffix("\(3 << 20)"))
    }

    @Test func curl_multipartForm_keepsFilenameAndType() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/ct.nii.gz"
        _ = FileManager.default.createFile(atPath: path, contents: Data(repeating: 1, count: 70_000))
        let s = try LiveServer()
        let (status, out) = try runProcess([
            "curl", "-sS", "-F", #"params={"a": 1}"#, "-F", "file=@\(path);type=application/gzip",
            "http://127.0.0.1:\(s.port)/form",
        ])
        #expect(status == 0)
        #expect(out == "field params={\"a\": 1}\nfile file ct.nii.gz application/gzip 70000 70000")
    }

    @Test func curl_downloadAndRedirect() throws {
        let s = try LiveServer()
        let (status, out) = try runProcess(["curl", "-sS", "-L", "-i", "http://127.0.0.1:\(s.port)/hello/"])
        #expect(status == 0)
        #expect(out.contains("HTTP/1.1 307 Temporary Redirect"))
        #expect(out.hasSuffix("hello"))
    }

    @Test(.enabled(if: pythonRequestsAvailable, "python3 with requests"))
    func pythonRequests_uploadJSONAndMultipartResponse() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let result = dir + "/result.nii.gz"
        _ = FileManager.default.createFile(atPath: result, contents: Data((0..<5000).map { UInt8($0 % 256) }))
        let s = try LiveServer(routes: { r in
            LiveServer.standardRoutes(&r)
            r.post("/infer/{model}") { req in
                let form = try req.form()
                var b = MultipartResponseBuilder()
                let params = #"{"model": "\#(req.pathParameters["model"] ?? "")", "params": \#(form.value("params") ?? "null"), "size": \#(form.file("file")?.size ?? -1)}"#
                b.addField(name: "params", value: Array(params.utf8), contentType: "application/json")
                b.addFile(name: "image", filename: "tmpresult.nii.gz", path: result)
                return b.response()
            }
            r.post("/json") { req in
                struct In: Decodable { let a: Int }
                let v = try req.decodeJSON(In.self)
                return try .json(encoding: ["double": v.a * 2])
            }
        })
        let script = """
            import sys, requests, email
            base = sys.argv[1]
            r = requests.post(base + "/json", json={"a": 21})
            assert r.status_code == 200 and r.json() == {"double": 42}, r.text
            r = requests.post(base + "/form", data={"params": '{"x": 1}'}, files={"file": ("C:\\\\scans\\\\ct.nii.gz", b"\\x00" * 2000000)})
            assert r.status_code == 200, r.text
            assert r.text == 'field params={"x": 1}\\nfile file C:\\\\scans\\\\ct.nii.gz - 2000000 2000000', repr(r.text)
            r = requests.post(base + "/infer/seg", files={"file": ("ct.nii.gz", b"abc")}, data={"params": '{"k": 2}'})
            assert r.status_code == 200
            ct = r.headers["content-type"]
            msg = email.message_from_bytes(b"Content-Type: " + ct.encode() + b"\\r\\n\\r\\n" + r.content)
            parts = msg.get_payload()
            assert parts[0].get_param("name", header="content-disposition") == "params"
            assert parts[0].get_filename() is None
            assert parts[0].get_payload() == '{"model": "seg", "params": {"k": 2}, "size": 3}', parts[0].get_payload()
            assert parts[1].get_filename() == "tmpresult.nii.gz"
            assert parts[1].get_payload(decode=True) == bytes(i % 256 for i in range(5000))
            r = requests.get(base + "/hello/")
            assert r.status_code == 200 and r.text == "hello" and r.history[0].status_code == 307
            s = requests.Session()
            for _ in range(3):
                assert s.get(base + "/hello").text == "hello"
            print("ok")
            """
        let (status, out) = try runProcess(["python3", "-c", script, "http://127.0.0.1:\(s.port)"])
        #expect(status == 0, "\(out)")
        #expect(out.hasSuffix("ok\n"))
    }

    /// A self-signed certificate with an encrypted key, made with the openssl CLI.
    private func makeCertificate(in dir: String) throws -> TLSConfiguration {
        let (status, out) = try runProcess([
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-keyout", dir + "/key.pem", "-out", dir + "/cert.pem",
            "-days", "1", "-subj", "/CN=localhost", "-passout", "pass:s3cret",
        ])
        guard status == 0 else { throw ClientError(description: "openssl req failed: \(out)") }
        return TLSConfiguration(certificateFile: dir + "/cert.pem", keyFile: dir + "/key.pem", keyPassword: "s3cret")
    }

    @Test func tls_opensslClient_getsResponse_andOldProtocolsAreRefused() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let s = try LiveServer(tls: try makeCertificate(in: dir))
        let request = Data("GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".utf8)
        let (status, out) = try runProcess(["openssl", "s_client", "-connect", "127.0.0.1:\(s.port)", "-quiet", "-ign_eof"], input: request)
        #expect(status == 0, "\(out)")
        #expect(out.contains("HTTP/1.1 200 OK"))
        #expect(out.hasSuffix("hello"))
        let (oldStatus, oldOut) = try runProcess(["openssl", "s_client", "-connect", "127.0.0.1:\(s.port)", "-tls1_1", "-quiet"], input: request)
        #expect(oldStatus != 0 || !oldOut.contains("HTTP/1.1 200 OK"))
    }

    @Test func tls_curlUploadAndDownload_largeBodies() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let tls = try makeCertificate(in: dir)
        let path = dir + "/up.bin"
        let bytes = (0..<(3 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 13) }
        _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
        let s = try LiveServer(tls: tls, routes: { r in
            LiveServer.standardRoutes(&r)
            r.get("/file") { _ in .file(path) }
        })
        let (st1, out1) = try runProcess(["curl", "-sS", "--cacert", tls.certificateFile, "-T", path, "https://localhost:\(s.port)/echo"])
        #expect(st1 == 0, "\(out1)")
        #expect(out1 == "\(bytes.count)")
        let (st2, out2) = try runProcess(["curl", "-sS", "--cacert", tls.certificateFile, "-o", dir + "/down.bin", "https://localhost:\(s.port)/file"])
        #expect(st2 == 0, "\(out2)")
        #expect(FileManager.default.contents(atPath: dir + "/down.bin").map(Array.init) == bytes)
    }

    @Test(.enabled(if: toolExists("python3"), "needs python3 for a TLS client that stops reading"))
    func tls_slowReaders_ofALargeFile_doNotHoldTheWorker() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let tls = try makeCertificate(in: dir)
        let path = dir + "/image.bin"
        _ = FileManager.default.createFile(atPath: path, contents: Data(repeating: 3, count: 16 << 20))
        let s = try LiveServer(tls: tls, configure: { $0.workerCount = 1 }, routes: { r in
            LiveServer.standardRoutes(&r)
            r.get("/file") { _ in .file(path) }
        })
        // Four TLS clients with 4 KiB receive buffers request the file and never read; they hold on until stdin closes.
        let script = """
            import socket, ssl, sys
            ctx = ssl.create_default_context(cafile=sys.argv[2])
            held = []
            for _ in range(4):
                raw = socket.socket()
                raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                raw.connect(("127.0.0.1", int(sys.argv[1])))
                c = ctx.wrap_socket(raw, server_hostname="localhost")
                c.sendall(b"GET /file HTTP/1.1\\r\\nHost: localhost\\r\\n\\r\\n")
                held.append(c)
            print("ready", flush=True)
            sys.stdin.read()
            """
        let p = Process()
        // Under timeout: the script waits for its stdin to close, and a test must never wait unbounded.
        p.executableURL = URL(fileURLWithPath: "/usr/bin/timeout")
        p.arguments = bounded("/usr/bin/env", ["python3", "-c", script, "\(s.port)", tls.certificateFile], limit: 300)
        let out = Pipe()
        let input = Pipe()
        p.standardOutput = out
        p.standardError = out
        p.standardInput = input
        try p.run()
        defer {
            try? input.fileHandleForWriting.close()
            _ = exitStatus(of: p)
        }
        let ready = String(decoding: out.fileHandleForReading.availableData, as: UTF8.self)
        try #require(ready.hasPrefix("ready"), "the TLS slow readers did not start: \(ready)")
        // Before, the only worker was stuck encrypting for the first reader until the write timeout (60 s).
        let (status, text) = try runProcess(["curl", "-sS", "--max-time", "5", "--cacert", tls.certificateFile,
                                             "https://localhost:\(s.port)/hello"])
        #expect(status == 0 && text == "hello", "\(text)")
    }

    @Test func tls_silentClient_isDroppedAfterHeaderTimeout_othersServed() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let s = try LiveServer(tls: try makeCertificate(in: dir), configure: { $0.headerTimeout = 0.3 })
        let silent = try RawClient(port: s.port)
        try silent.send([0x16, 0x03, 0x01])  // the start of a ClientHello, then nothing
        let (status, out) = try runProcess(
            ["openssl", "s_client", "-connect", "127.0.0.1:\(s.port)", "-quiet", "-ign_eof"],
            input: Data("GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".utf8))
        #expect(status == 0)
        #expect(out.hasSuffix("hello"))
        #expect(try silent.isClosedByServer())
    }

    @Test func tls_wrongKeyPassword_failsToStart() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var tls = try makeCertificate(in: dir)
        tls.keyPassword = "wrong"
        #expect(throws: TLSError.self) { _ = try LiveServer(tls: tls) }
    }
}
