import Foundation
import MONAILabelCore
import Testing
import TestSupport

/// The binary the probes attack: `$MONAILABEL_PROBE_BINARY`, else the release build (`swift build -c release`,
/// which scripts/test.sh makes), else the debug build beside this test bundle. Probes attack it from outside, as
/// a hostile client would: its own process, a real socket, nothing in-process.
let probeBinary: URL = {
    if let p = ProcessInfo.processInfo.environment["MONAILABEL_PROBE_BINARY"] { return URL(fileURLWithPath: p) }
    let release = repoRoot.appendingPathComponent(".build/release/monailabel")
    if FileManager.default.isExecutableFile(atPath: release.path) { return release }
    return URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("monailabel")
}()

/// `<repo>` (this file is `<repo>/Tests/CrashProbeTests/ProbeServer.swift`).
let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

/// Every probe suite nests here, so the probes run one at a time: each starts a real server with its model
/// worker, and several at once on a 2-core machine would measure the machine, not the server (the /info/ latency
/// bounds), and starve the rest of the test run.
@Suite(.tags(.live), .serialized) enum CrashProbes {}

struct ProbeError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// A `monailabel start_server` child on an ephemeral loopback port, with its own copy of the radiology app and a
/// small synthetic studies folder (`images` cases of 96x96x64, the first two labelled), or a DICOMweb root
/// (`remoteStudies`). `restart()` starts it again on the same folders, which is how a poisoned store shows.
final class ProbeServer: @unchecked Sendable {
    let dir = TempDir()
    var app: URL { dir.url.appendingPathComponent("radiology") }
    var studies: URL { dir.url.appendingPathComponent("studies") }
    var modelDir: URL { app.appendingPathComponent("model") }
    let models: String
    /// A DICOMweb root served instead of the studies folder (PACS probes); nil for the folder.
    let remoteStudies: String?
    let environment: [String: String]
    private(set) var port = 0
    /// Sent as `Authorization` by `expectAlive` (a server with auth on).
    var authorization: String?
    private var process: Process?
    private let output = OutputBuffer()

    /// - Parameters:
    ///   - models: the `--conf models` value.
    ///   - remoteStudies: a DICOMweb root to pass as `--studies` instead of the synthetic folder (none is made).
    ///   - environment: added to the server's environment (limits under test).
    init(models: String = "segmentation_spleen", images: Int = 3, remoteStudies: String? = nil,
         environment: [String: String] = [:]) throws {
        self.models = models
        self.remoteStudies = remoteStudies
        self.environment = environment
        let (s1, o1) = try runProcess(probeBinary, ["apps", "--download", "--name", "radiology", "--output", dir.url.path])
        guard s1 == 0 else { throw ProbeError("monailabel apps failed: \(o1)") }
        if remoteStudies == nil {
            let (s2, o2) = try runProcess(probeBinary, ["datasets", "--download", "--output", studies.path,
                                                        "--count", "\(images)", "--labeled", "\(min(2, images))"])
            guard s2 == 0 else { throw ProbeError("monailabel datasets failed: \(o2)") }
        }
        try start()
    }

    deinit { stop() }

    /// Starts the server and waits until it prints the port it bound.
    func start() throws {
        let p = Process()
        p.executableURL = probeBinary
        p.arguments = ["start_server", "--app", app.path, "--studies", remoteStudies ?? studies.path, "--conf", "models", models,
                       // Hermetic: no pretrained weights fetched from the internet.
                       "--conf", "use_pretrained_model", "false", "--host", "127.0.0.1", "--port", "0"]
        var env = ProcessInfo.processInfo.environment
        env["MONAI_LABEL_SESSIONS"] = env["MONAI_LABEL_SESSIONS"] ?? "true"
        env["MONAI_LABEL_TORCH_THREADS"] = "1"
        for (k, v) in environment { env[k] = v }
        p.environment = env
        // Not a Pipe: a process another probe starts meanwhile could inherit it (see `ChildOutput`).
        let channel = try ChildOutput()
        p.standardOutput = channel.writing
        p.standardError = channel.writing
        p.standardInput = FileHandle.nullDevice
        let buffer = output
        buffer.clear()
        channel.reading.readabilityHandler = { h in
            let d = h.availableData
            if d.isEmpty {
                h.readabilityHandler = nil
                buffer.finish()
            } else {
                buffer.append(d)
            }
        }
        defer { channel.closeChildEnd() }
        try p.run()
        channel.closeChildEnd()
        process = p
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            if let port = Self.parsePort(buffer.text) {
                self.port = port
                return
            }
            if p.hasExited {
                // Its last words may still be on their way to the reader.
                buffer.waitForEnd(within: 5)
                throw ProbeError("server exited (\(exitStatus(of: p))) before serving:\n\(buffer.tail)")
            }
            usleep(20_000)
        }
        throw ProbeError("server did not report its port within 60 s:\n\(buffer.tail)")
    }

    /// SIGTERM, then SIGKILL after 5 s.
    func stop() {
        guard let p = process else { return }
        process = nil
        // Bounded, and by the kernel's view of the exit (Foundation's can wait for unrelated processes).
        stopChild(p, signal: SIGTERM, grace: 5)
    }

    func restart() throws {
        stop()
        try start()
    }

    /// Whether the server process still runs.
    var isRunning: Bool { process.map { !$0.hasExited } ?? false }
    /// The server's pid (0 when stopped).
    var pid: Int32 { process?.processIdentifier ?? 0 }
    /// The last lines the server printed (for failure messages).
    var log: String { output.tail }

    static func parsePort(_ text: String) -> Int? {
        guard let r = text.range(of: "Serving MONAI Label on ") else { return nil }
        let rest = text[r.upperBound...].prefix { $0 != " " && $0 != "\n" }
        guard let colon = rest.lastIndex(of: ":") else { return nil }
        return Int(rest[rest.index(after: colon)...])
    }

    /// One request with curl: status, body, and seconds taken. `args` are extra curl arguments (`-F`, `-H`,
    /// `--data-binary`, ...).
    @discardableResult
    func curl(_ method: String, _ path: String, _ args: [String] = [], timeout: Double = 120) throws
        -> (status: Int, body: String, seconds: Double)
    {
        let started = Date()
        let (_, out) = try runProcess(URL(fileURLWithPath: "/usr/bin/curl"),
                                      ["-s", "-X", method, "--max-time", "\(timeout)", "-o", "-", "-w", "\n%{http_code}"]
                                          + args + ["http://127.0.0.1:\(port)\(path)"])
        let seconds = Date().timeIntervalSince(started)
        guard let nl = out.lastIndex(of: "\n") else { return (Int(out) ?? 0, "", seconds) }
        return (Int(out[out.index(after: nl)...]) ?? 0, String(out[..<nl]), seconds)
    }

    /// The check after every probe: the process lives, `/info/` answers 200, and a normal inference on a datastore
    /// image succeeds.
    func expectAlive(_ probe: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        #expect(isRunning, "server died after probe \(probe):\n\(log)", sourceLocation: sourceLocation)
        guard isRunning else { throw ProbeError("server died after \(probe)") }
        let auth = authorization.map { ["-H", "Authorization: \($0)"] } ?? []
        let info = try curl("GET", "/info/", auth, timeout: 30)
        #expect(info.status == 200, "/info/ after \(probe): \(info.status) \(info.body.prefix(300))",
                sourceLocation: sourceLocation)
        let infer = try curl("POST", "/infer/\(models.split(separator: ",")[0])?image=spleen_00&output=json",
                             ["-F", "params={}"] + auth, timeout: 300)
        #expect(infer.status == 200, "a normal inference after \(probe): \(infer.status) \(infer.body.prefix(300))\n\(log)",
                sourceLocation: sourceLocation)
    }
}

/// The server's output, gathered by its channel's readability handler.
final class OutputBuffer: @unchecked Sendable {
    private let lock = NSCondition()
    private var data = Data()
    private var ended = false

    func append(_ d: Data) {
        lock.lock()
        data.append(d)
        if data.count > 1 << 20 { data.removeFirst(data.count - (1 << 19)) }
        lock.unlock()
    }

    /// The output reached its end (the server and whatever it started closed it).
    func finish() {
        lock.lock()
        ended = true
        lock.broadcast()
        lock.unlock()
    }

    /// Waits at most `seconds` for the end of the output.
    func waitForEnd(within seconds: Double) {
        let deadline = Date().addingTimeInterval(seconds)
        lock.lock()
        while !ended && lock.wait(until: deadline) {}
        lock.unlock()
    }

    func clear() {
        lock.lock()
        data = Data()
        ended = false
        lock.unlock()
    }

    var text: String {
        lock.lock()
        defer { lock.unlock() }
        return String(decoding: data, as: UTF8.self)
    }

    var tail: String { String(text.suffix(4000)) }
}

/// The `detail` of a `{"detail": ...}` body, or the body.
func detail(_ body: String) -> String {
    guard let o = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any],
          let d = o["detail"] as? String else { return body }
    return d
}
