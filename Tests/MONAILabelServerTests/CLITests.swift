import Foundation
import Testing
import TestSupport

/// Runs the built `monailabel` executable; returns (exit status, stdout + stderr).
private func monailabel(_ args: [String], environment: [String: String] = [:]) throws -> (Int32, String) {
    try runProcess(monailabelBinary, args, environment: environment)
}

/// The help texts are part of the interface: changes to them show up here.
@Test(.tags(.live), arguments: ["root", "start_server", "apps", "datasets", "users", "models", "selftest"])
func help_matchesGoldenText(command: String) throws {
    let golden = try String(contentsOf: repoRoot.appendingPathComponent("Tests/MONAILabelServerTests/Golden/help-\(command).txt"),
                            encoding: .utf8)
    let (status, text) = try monailabel((command == "root" ? [] : [command]) + ["--help"], environment: ["COLUMNS": "100"])
    #expect(status == 0)
    #expect(text == golden)
}

@Test(.tags(.live)) func startServer_badArguments_areClearErrors() throws {
    let (s1, t1) = try monailabel(["start_server", "--app", "/nonexistent", "--studies", "/tmp/x", "--conf", "models"])
    #expect(s1 != 0)
    #expect(t1.contains("--conf"), "\(t1)")
    let (s2, t2) = try monailabel(["start_server", "--app", "/nonexistent-app-dir", "--studies", "/tmp/ml-cli-test-studies"])
    #expect(s2 != 0)
    #expect(t2.contains("App Directory does NOT exist"), "\(t2)")
    let (s3, t3) = try monailabel(["start_server", "-a", repoRoot.appendingPathComponent("sample-apps/radiology").path,
                                   "-s", "/tmp/ml-cli-test-studies", "--port", "70000"])
    #expect(s3 != 0)
    #expect(t3.contains("--port"))
}

@Test(.tags(.live)) func version_namesTheAPIAndLibtorch() throws {
    let (status, text) = try monailabel(["--version"])
    #expect(status == 0)
    #expect(text.contains("MONAI Label REST API 0.8.5"))
    #expect(text.contains("libtorch: 1.") || text.contains("libtorch: 2."))
    #expect(text.contains("libmonailabel_torch.so"))
    #expect(text.contains("devices: cpu") || text.contains("devices: cuda"))
}

@Test(.tags(.live)) func version_missingBackend_saysSoInsteadOfCrashing() throws {
    let (status, text) = try monailabel(["--version"], environment: ["MONAILABEL_TORCH_BACKEND": "/nonexistent/libmonailabel_torch.so"])
    #expect(status == 0)
    #expect(text.contains("libtorch: no backend (cannot load the libtorch backend (/nonexistent/libmonailabel_torch.so"))
}

@Test(.tags(.live)) func startServer_missingBackend_failsWithTheLoaderMessage() throws {
    let (status, text) = try monailabel(
        ["start_server", "--app", "/nonexistent-app", "--studies", "/nonexistent-studies"],
        environment: ["MONAILABEL_TORCH_BACKEND": "/nonexistent/libmonailabel_torch.so"])
    #expect(status != 0)
    #expect(text.contains("cannot load the libtorch backend"))
    #expect(!text.contains("App Directory does NOT exist"))
}

@Test(.tags(.live)) func apps_listsAndCopiesTheRadiologyApp() throws {
    let (status, text) = try monailabel(["apps"])
    #expect(status == 0)
    #expect(text.contains("radiology"))
    let out = FileManager.default.temporaryDirectory.appendingPathComponent("apps-\(UUID().uuidString)")
    defer { try? FileManager.default.removeItem(at: out) }
    let (s2, _) = try monailabel(["apps", "--download", "--name", "radiology", "--output", out.path])
    #expect(s2 == 0)
    #expect(FileManager.default.fileExists(atPath: out.appendingPathComponent("radiology/app.json").path))
    let (s3, t3) = try monailabel(["apps", "--download", "--name", "radiology", "--output", out.path])
    #expect(s3 != 0, "an existing target is refused: \(t3)")
}

@Test(.tags(.live)) func runTask_unknownMethodOrNonObjectRequest_exitsNamingTheProblem() throws {
    let common = ["--app", "/nonexistent-app-dir", "--studies", "/tmp/ml-cli-test-studies"]
    let (s1, t1) = try monailabel(["run_task", "--method", "segment", "--request", "{}"] + common)
    #expect(s1 == 1)
    #expect(t1.contains("unknown task method 'segment' (train, scoring, batch_infer)"), "\(t1)")
    let (s2, t2) = try monailabel(["run_task", "--method", "train", "--request", "[1]"] + common)
    #expect(s2 == 1)
    #expect(t2.contains("--request must be a JSON object"), "\(t2)")
}

@Test(.tags(.live)) func selftest_printsATableAndExitsOneOnAFailedCheck() throws {
    let (ok, okText) = try monailabel(["selftest"])
    #expect(ok == 0, "\(okText)")
    #expect(okText.contains("PASS  tensor ops"), "\(okText)")
    #expect(okText.contains("SKIP  fixtures"), "\(okText)")
    let (bad, badText) = try monailabel(["selftest", "--device", "cuda:99"])
    #expect(bad == 1)
    #expect(badText.contains("FAIL  device"), "\(badText)")
}
