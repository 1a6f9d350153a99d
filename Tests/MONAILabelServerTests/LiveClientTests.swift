import Foundation
import Testing
import TestSupport
import MONAILabel
@testable import MONAILabelServer

/// Starts the real server (HTTP on an ephemeral loopback port) on a generated studies folder.
func startLiveServer(_ tmp: TempDir, cases: Int = 4, labeled: Int = 2) throws -> RunningServer {
    let studies = tmp.url.appendingPathComponent("studies")
    try DemoStudies.write(to: studies, count: cases, labeled: labeled, shape: [32, 32, 16], spacing: [3, 3, 4])
    let app = tmp.url.appendingPathComponent("app")
    try FileManager.default.createDirectory(at: app, withIntermediateDirectories: true)
    try FileManager.default.copyItem(at: repoRoot.appendingPathComponent("sample-apps/radiology/app.json"),
                                     to: app.appendingPathComponent("app.json"))
    let options = ServerOptions(appDir: app.path, studies: studies.path, conf: ["models": "segmentation_spleen", "use_pretrained_model": "false"],
                                host: "127.0.0.1", port: 0, logLevel: .warning)
    return try ServerMain.start(options, environment: ["MONAI_LABEL_TASK_RUNNER": monailabelBinary.path, "MONAI_LABEL_SESSION_PATH": tmp.url.appendingPathComponent("sessions").path])
}

/// The Slicer plugin's call sequence through the real `monailabel.client` 0.8.5 (made by
/// scripts/make-client-venv.sh, which the README's test command runs first).
@Test(.tags(.live), .needsClientVenv)
func pythonClient_slicerCallSequence_passes() throws {
    let tmp = TempDir()
    let server = try startLiveServer(tmp)
    defer { server.stop() }
    let (status, text) = try runE2EScript("slicer_sequence.py", ["http://127.0.0.1:\(server.port)", tmp.url.path])
    #expect(status == 0, "\(text)")
    #expect(text.contains("SLICER SEQUENCE OK"))
}

/// Real sockets: curl-style requests against the live server, including a bad request and a redirect.
@Test(.tags(.live)) func liveServer_answersInfoRedirectsAndRejectsTraversal() throws {
    let tmp = TempDir()
    let server = try startLiveServer(tmp)
    defer { server.stop() }
    let (status, body) = try curl(server.port, "GET", "/info/")
    #expect(status == 200)
    #expect(String(decoding: body, as: UTF8.self).contains("\"datastore\":{\"total\":4,\"completed\":2"))
    #expect(try curl(server.port, "GET", "/datastore/image?image=..%2F..%2Fetc%2Fpasswd").status == 404)
    #expect(try curl(server.port, "GET", "/datastore/label?label=spleen_00&tag=..%2F..").status == 404)
}

/// Long work never blocks the accept loop: `/info/` answers while an inference is still running.
@Test(.tags(.live)) func liveServer_infoAnswersWhileAnInferenceRuns() throws {
    let tmp = TempDir()
    let server = try startLiveServer(tmp)
    defer {
        server.shutdown(gracePeriod: 5)
        server.wait()
    }
    let infer = Process()
    infer.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
    infer.arguments = ["-s", "--max-time", "300", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST",
                       "http://127.0.0.1:\(server.port)/infer/segmentation_spleen?image=spleen_00&output=json"]
    let inferOut = tmp.url.appendingPathComponent("infer.out")
    FileManager.default.createFile(atPath: inferOut.path, contents: nil)
    let inferHandle = try FileHandle(forWritingTo: inferOut)
    infer.standardOutput = inferHandle
    try infer.run()
    try? inferHandle.close()
    // Wait until the server has admitted the inference (it holds the model from then on).
    var admitted = false
    for _ in 0..<200 where !admitted {
        usleep(10_000)
        admitted = server.app.admission.inFlightCount > 0
    }
    #expect(admitted, "the inference never started")
    var answeredDuringInference = 0
    for _ in 0..<5 {
        let code = try runProcess(URL(fileURLWithPath: "/usr/bin/curl"),
                                  ["-s", "--max-time", "300", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:\(server.port)/info/"]).output
        if code == "200" && server.app.admission.inFlightCount > 0 { answeredDuringInference += 1 }
    }
    #expect(answeredDuringInference > 0, "no /info/ answer arrived while the inference was in flight")
    #expect(exitStatus(of: infer) == 0)
    #expect((try? String(contentsOf: inferOut, encoding: .utf8)) == "200")
}

/// `--ssl_certfile/--ssl_keyfile/--ssl_keyfile_password` as upstream: the Python client (which skips certificate
/// verification, as upstream's does) talks to the server over TLS.
@Test(.tags(.live), .needsClientVenv)
func pythonClient_overTLSWithEncryptedKey_works() throws {
    let tmp = TempDir()
    let key = tmp.url.appendingPathComponent("key.pem").path, cert = tmp.url.appendingPathComponent("cert.pem").path
    let openssl = try runProcess(URL(fileURLWithPath: "/usr/bin/openssl"),
                                 ["req", "-x509", "-newkey", "rsa:2048", "-keyout", key, "-out", cert, "-days", "1",
                                  "-subj", "/CN=127.0.0.1", "-passout", "pass:secret"])
    try #require(openssl.status == 0, "openssl could not make a certificate: \(openssl.output)")
    let studies = tmp.url.appendingPathComponent("studies")
    try DemoStudies.write(to: studies, count: 2, labeled: 1, shape: [16, 16, 8], spacing: [3, 3, 4])
    let app = tmp.url.appendingPathComponent("app")
    try FileManager.default.createDirectory(at: app, withIntermediateDirectories: true)
    try FileManager.default.copyItem(at: repoRoot.appendingPathComponent("sample-apps/radiology/app.json"),
                                     to: app.appendingPathComponent("app.json"))
    let options = ServerOptions(appDir: app.path, studies: studies.path, conf: ["models": "segmentation_spleen", "use_pretrained_model": "false"],
                                host: "127.0.0.1", port: 0, sslCertfile: cert, sslKeyfile: key,
                                sslKeyfilePassword: "secret", logLevel: .warning)
    let server = try ServerMain.start(options, environment: ["MONAI_LABEL_TASK_RUNNER": monailabelBinary.path, "MONAI_LABEL_SESSION_PATH": tmp.url.appendingPathComponent("s").path])
    defer { server.stop() }
    let (status, text) = try runProcess(clientPython, ["-c", """
        from monailabel.client import MONAILabelClient
        c = MONAILabelClient("https://127.0.0.1:\(server.port)")
        info = c.info()
        assert info["datastore"]["total"] == 2, info
        print("TLS OK")
        """])
    #expect(status == 0 && text.contains("TLS OK"), "\(text)")
}
