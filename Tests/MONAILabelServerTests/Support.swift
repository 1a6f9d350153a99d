import Foundation
import HTTPServer
import Testing
import TestSupport
import MONAILabel
@testable import MONAILabelServer

/// The repository root (this file is `<repo>/Tests/MONAILabelServerTests/Support.swift`).
let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

/// The Python of `.venv-client`, made by scripts/make-client-venv.sh with the real `monailabel.client` 0.8.5.
let clientPython = repoRoot.appendingPathComponent(".venv-client/bin/python")

/// The `monailabel` built next to the test bundle: the CLI under test and the child that runs jobs.
let monailabelBinary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    .appendingPathComponent("monailabel")

/// Debian's Python, which has PyTorch where `python3-torch` is installed.
let systemPython = "/usr/bin/python3"

/// Whether `systemPython` imports torch (checked once).
let systemPythonHasTorch: Bool = {
    guard FileManager.default.isExecutableFile(atPath: systemPython) else { return false }
    return (try? runProcess(URL(fileURLWithPath: systemPython), ["-c", "import torch"]).status) == 0
}()

extension Trait where Self == ConditionTrait {
    /// Runs the test only where `systemPython` imports torch.
    static var needsPythonTorch: Self {
        .enabled(if: systemPythonHasTorch, "needs PyTorch for /usr/bin/python3 (Debian's python3-torch)")
    }

    /// Runs the test only where `.venv-client` exists.
    static var needsClientVenv: Self {
        .enabled(if: FileManager.default.isExecutableFile(atPath: clientPython.path),
                 "needs .venv-client (scripts/make-client-venv.sh)")
    }
}

/// Runs `Tests/e2e/<script>` (which imports its folder's `common.py`) with the client venv's Python.
func runE2EScript(_ script: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
    try runProcess(clientPython, [repoRoot.appendingPathComponent("Tests/e2e/\(script)").path] + arguments)
}

/// `curl` against the live server on `port`: the status and the body.
func curl(_ port: Int, _ method: String, _ path: String, json: String? = nil, form: String? = nil) throws
    -> (status: Int, body: [UInt8])
{
    // --max-time: a hang is caught, never waited for (a slow answer still has minutes).
    var args = ["-s", "--max-time", "300", "-X", method, "-o", "-", "-w", "\n%{http_code}", "http://127.0.0.1:\(port)\(path)"]
    if let json { args += ["-H", "Content-Type: application/json", "-d", json] }
    if let form { args += ["-F", form] }
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
    p.arguments = args
    let out = Pipe()
    p.standardOutput = out
    try p.run()
    let bytes = Array(out.fileHandleForReading.readDataToEndOfFile())
    _ = p.waitForExit()
    // The status follows the body's bytes (binary for a label file) after the last newline.
    guard let newline = bytes.lastIndex(of: 10) else { return (Int(String(decoding: bytes, as: UTF8.self)) ?? 0, []) }
    return (Int(String(decoding: bytes[(newline + 1)...], as: UTF8.self)) ?? 0, Array(bytes[..<newline]))
}

/// Settings for an in-process app whose jobs run `runner` as their child: no sessions, one torch thread, a 2 s
/// grace before a stopped job is killed.
func jobSettings(appDir: URL, studies: URL, conf: [String: String], runner: URL = monailabelBinary) -> Settings {
    var settings = Settings(appDir: appDir, studies: studies.path, conf: conf)
    settings.sessions = false
    settings.taskRunner = runner.path
    settings.torchThreads = 1
    settings.trainStopGrace = 2
    // In-process router tests run models in this process; the live servers use model workers.
    settings.inferWorkers = 0
    return settings
}

/// The real server (HTTP on an ephemeral loopback port) without sessions, its jobs run by the freshly built
/// `monailabel` with one torch thread; `environment` adds to (or overrides) that.
func startJobServer(appDir: URL, studies: String, conf: [String: String], environment: [String: String] = [:]) throws
    -> RunningServer
{
    let options = ServerOptions(appDir: appDir.path, studies: studies, conf: conf, host: "127.0.0.1", port: 0,
                                logLevel: .warning)
    // Hermetic unless a test asks otherwise: pretrained weights are "fetched" from a port nothing listens on (a
    // refused connection, at once), not from the internet; `use_pretrained_model` keeps its default, which is
    // also the trainers' (the DeepGrow live tests train from installed pretrained weights).
    let base = ["MONAI_LABEL_SESSIONS": "false", "MONAI_LABEL_TASK_RUNNER": monailabelBinary.path,
                "MONAI_LABEL_TORCH_THREADS": "1", "MONAI_LABEL_PRETRAINED_PATH": "http://127.0.0.1:1/no-downloads-in-tests"]
    return try ServerMain.start(options, environment: base.merging(environment) { $1 })
}

extension RunningServer {
    /// Shuts down with a 1 s grace and waits until the server has stopped.
    func stop() {
        shutdown(gracePeriod: 1)
        wait()
    }
}

/// Whether a background job's status (a `GET /train/` or `GET /scoring/` answer) is final.
func jobFinished(_ status: JSONValue) -> Bool {
    ["DONE", "ERROR", "STOPPED"].contains(status["status"]?.stringValue ?? "")
}

/// The whole body of a router response, reading (and removing, where flagged) the files it names.
func bodyBytes(_ response: HTTPResponse) throws -> [UInt8] {
    func read(_ path: String, delete: Bool) -> [UInt8] {
        defer { if delete { try? FileManager.default.removeItem(atPath: path) } }
        return Array(FileManager.default.contents(atPath: path) ?? Data())
    }
    switch response.body {
    case .empty: return []
    case .bytes(let b): return b
    case .file(let path, let delete): return read(path, delete: delete)
    case .segments(let segments):
        return segments.flatMap { s -> [UInt8] in
            switch s {
            case .bytes(let b): return b
            case .file(let path, let delete): return read(path, delete: delete)
            }
        }
    case .stream(let s):
        var bytes: [UInt8] = []
        while let chunk = try s.next() { bytes += chunk }
        return bytes
    }
}

/// A test harness over an in-process router: JSON requests and polling of job status.
protocol RouterHarness {
    var router: HTTPRouter { get }
}

extension RouterHarness {
    func send(_ method: HTTPMethod, _ target: String, json: String = "") throws -> (status: Int, json: JSONValue?) {
        try send(method, target, headers: json.isEmpty ? [] : [("Content-Type", "application/json")], body: Array(json.utf8))
    }

    func send(_ method: HTTPMethod, _ target: String, headers extra: [(String, String)], body: [UInt8]) throws
        -> (status: Int, json: JSONValue?)
    {
        let req = try HTTPRequest(method: method, target: target, headers: HTTPHeaders([("Host", "test")] + extra),
                                  body: body.isEmpty ? .empty : .bytes(body))
        let resp = router.respond(to: req)
        defer { req.context.cleanUp() }
        guard case .bytes(let b) = resp.body else { return (resp.status.code, nil) }
        return (resp.status.code, try? JSONValue.parse(b))
    }

    /// Polls `GET <path>` until `done` holds for its answer; after `timeout` seconds records an issue naming `what`.
    /// Returns the last answer.
    func poll(_ path: String, timeout: Double, for what: String, until done: (JSONValue) -> Bool) throws -> JSONValue {
        let deadline = Date().addingTimeInterval(timeout)
        var last: JSONValue = .null
        while Date() < deadline {
            if let j = try send(.get, path).json {
                last = j
                if done(j) { return j }
            }
            usleep(100_000)
        }
        Issue.record("timed out polling \(path) for \(what); last: \(last.compactString())")
        return last
    }
}
