import Foundation
import HTTPServer
import Imaging
import Testing
import MONAILabel
@testable import MONAILabelServer

/// `TrainHarness`'s app (5 synthetic cases on 32x32x16, the first `labeled` with a final label) with labels of
/// known content saved under other tags; scoring jobs run the freshly built `monailabel` as their child.
final class ScoringHarness: RouterHarness {
    let tmp = TempDir()
    let app: MONAILabelApp
    let router: HTTPRouter

    /// - Parameter runner: the child executable; a script that only sleeps keeps a job RUNNING on demand.
    init(labeled: Int = 4, runner: URL = monailabelBinary) throws {
        let studies = tmp.url.appendingPathComponent("studies")
        let appDir = tmp.url.appendingPathComponent("app")
        try DemoStudies.write(to: studies, count: 5, labeled: labeled, shape: [32, 32, 16], spacing: [3, 3, 4])
        try FileManager.default.createDirectory(at: appDir, withIntermediateDirectories: true)
        try Data(TrainHarness.appJSON.utf8).write(to: appDir.appendingPathComponent("app.json"))
        let settings = jobSettings(appDir: appDir, studies: studies, conf: ["models": "segmentation_spleen"], runner: runner)
        app = try MONAILabelApp(settings: settings, datastore: try LocalDatastore(root: studies))
        router = makeRouter(app: app, log: .silent)
    }

    deinit {
        app.scoring.jobs.shutdown()
        app.batchInfer.jobs.shutdown()
    }

    /// An executable that sleeps whatever it is asked to run.
    static func sleeper(in dir: URL) throws -> URL {
        let url = dir.appendingPathComponent("sleeper.sh")
        try Data("#!/bin/sh\nexec sleep 60\n".utf8).write(to: url)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: url.path)
        return url
    }

    /// Saves `values` (on the image's grid) as the `tag` label of `id`.
    func saveLabel(_ id: String, tag: String, _ values: (Int) -> UInt8) throws {
        let image = try ImageIO.load(URL(fileURLWithPath: try #require(app.datastore.imageURI(id))))
        let label = Volume(spatialShape: image.spatialShape, data: .uint8((0..<image.voxelCount).map(values)),
                           affine: image.affine)
        let file = tmp.url.appendingPathComponent("\(UUID().uuidString).nii.gz")
        try NIfTI.write(label, to: file)
        try app.datastore.saveLabel(imageID: id, file: file, fileName: "\(id).nii.gz", tag: tag, info: [:])
    }

    func labelValues(_ id: String, tag: String) throws -> [Float] {
        try ImageIO.load(URL(fileURLWithPath: try #require(app.datastore.labelURI(id, tag: tag)))).data.asFloat()
    }

    /// Polls `GET /scoring/` until the latest job has finished.
    func waitFinished(timeout: Double = 60) throws -> JSONValue {
        try poll("/scoring/", timeout: timeout, for: "the scoring job", until: jobFinished)
    }
}

@Suite(.tags(.router), .serialized) struct ScoringRoutesTests {
    @Test func scoring_noTasksYet_answers404AndDeleteAnswersNull() throws {
        let s = try ScoringHarness()
        let r = try s.send(.get, "/scoring/")
        #expect(r.status == 404)
        #expect(r.json?["detail"]?.stringValue == "No Scoring Tasks Found")
        #expect(try s.send(.get, "/scoring/?all=true").json?["detail"]?.stringValue == "No Scoring Tasks Found")
        #expect(try s.send(.get, "/scoring/?check_if_running=true").json?["detail"]?.stringValue
            == "No Scoring Tasks are currently Running")
        let d = try s.send(.delete, "/scoring/")
        #expect(d.status == 200)
        #expect(d.json == .null)
    }

    @Test func info_listsScoringMethodsWithUpstreamDescriptions() throws {
        let s = try ScoringHarness()
        let info = try #require(try s.send(.get, "/info/").json)
        #expect(info["scoring"] == [
            "dice": ["description": "Compute Dice between final vs original tags"],
            "sum": ["description": "Compute Numpy Sum for Final/Original Labels"],
        ])
    }

    @Test func scoring_unknownMethod_returns404WithoutQueuing() throws {
        let s = try ScoringHarness()
        let r = try s.send(.post, "/scoring/unknown_method")
        #expect(r.status == 404)
        #expect(r.json?["detail"]?.stringValue?.contains("unknown_method") == true)
        #expect(try s.send(.get, "/scoring/").status == 404)
    }

    @Test func scoring_diceRunSync_scoresImagesWithBothTagsAndStoresImageInfo() throws {
        let s = try ScoringHarness()
        try s.saveLabel("spleen_00", tag: "original") { _ in 0 }
        let final1 = try s.labelValues("spleen_01", tag: "final")
        try s.saveLabel("spleen_01", tag: "original") { final1[$0] > 0 ? 1 : 0 }
        // Half of spleen_02's foreground, as counted independently here.
        let final2 = try s.labelValues("spleen_02", tag: "final")
        let fg2 = final2.indices.filter { final2[$0] > 0 }
        let kept = Set(fg2.prefix(fg2.count / 2))
        try s.saveLabel("spleen_02", tag: "original") { kept.contains($0) ? 1 : 0 }
        // spleen_04 has an original label but no final one: not scored.
        try s.saveLabel("spleen_04", tag: "original") { _ in 1 }

        let r = try s.send(.post, "/scoring/dice?run_sync=true")
        #expect(r.status == 200)
        let result = try #require(r.json?.objectValue)
        #expect(Set(result.keys) == ["spleen_00", "spleen_01", "spleen_02"])
        #expect(result["spleen_00"]?.doubleValue == 0)
        #expect(result["spleen_01"]?.doubleValue == 1)
        let expected2 = 2.0 * Double(kept.count) / Double(fg2.count + kept.count)
        #expect(abs((result["spleen_02"]?.doubleValue ?? -1) - expected2) < 1e-12)
        #expect(s.app.datastore.imageInfo("spleen_01")?["dice"]?.doubleValue == 1)
        #expect(s.app.datastore.imageInfo("spleen_04")?["dice"] == nil)

        let job = try #require(try s.send(.get, "/scoring/").json)
        #expect(job["status"]?.stringValue == "DONE")
        #expect(job["request"] == ["method": "dice", "gpus": "all"])
    }

    @Test func scoring_diceWithTagOverrides_comparesTheNamedTags() throws {
        let s = try ScoringHarness(labeled: 0)
        try s.saveLabel("spleen_00", tag: "a") { $0 < 10 ? 1 : 0 }
        try s.saveLabel("spleen_00", tag: "b") { $0 < 30 ? 1 : 0 }
        let r = try s.send(.post, "/scoring/dice?run_sync=true", json: #"{"y": "a", "y_pred": "b"}"#)
        #expect(r.status == 200)
        #expect(r.json?["spleen_00"]?.doubleValue == 2.0 * 10 / 40)
    }

    @Test func scoring_sumRunSync_storesSumAndSlicesInLabelInfo() throws {
        let s = try ScoringHarness(labeled: 0)
        // 32x32x16, C order: voxel i lies on axis-0 slice i / (32 * 16).
        try s.saveLabel("spleen_00", tag: "final") { i in i / 512 == 3 || i / 512 == 7 ? 2 : 0 }
        try s.saveLabel("spleen_00", tag: "original") { i in i / 512 == 31 && i % 512 < 5 ? 1 : 0 }
        try s.saveLabel("spleen_01", tag: "other") { _ in 1 }
        let r = try s.send(.post, "/scoring/sum?run_sync=true")
        #expect(r.status == 200)
        #expect(r.json == ["spleen_00": ["sum": 5, "slices": [31]]])
        #expect(s.app.datastore.labelInfo("spleen_00", tag: "final")?["sum"] == .int(2 * 2 * 512))
        #expect(s.app.datastore.labelInfo("spleen_00", tag: "final")?["slices"] == [3, 7])
        #expect(s.app.datastore.labelInfo("spleen_00", tag: "original")?["slices"] == [31])
        #expect(s.app.datastore.labelInfo("spleen_01", tag: "other")?["sum"] == nil)
    }

    @Test func scoring_async_answersSubmittedThenDoneAndAppliesUpdates() throws {
        let s = try ScoringHarness()
        let r = try s.send(.post, "/scoring/sum", json: #"{"y": "final"}"#)
        #expect(r.status == 200)
        #expect(r.json?["status"]?.stringValue == "SUBMITTED")
        #expect(r.json?["request"] == ["method": "sum", "y": "final"])
        let done = try s.waitFinished()
        #expect(done["status"]?.stringValue == "DONE")
        let final0 = try s.labelValues("spleen_00", tag: "final")
        let expected = Int(final0.reduce(0.0) { $0 + Double($1) })
        #expect(s.app.datastore.labelInfo("spleen_00", tag: "final")?["sum"] == .int(expected))
        let all = try #require(try s.send(.get, "/scoring/?all=true").json?.arrayValue)
        #expect(all.count == 1)
    }

    @Test func scoring_whileRunning_returns429NeverQueuesAndStopAnswersStopped() throws {
        let dir = TempDir()
        let s = try ScoringHarness(runner: try ScoringHarness.sleeper(in: dir.url))
        let first = try s.send(.post, "/scoring/dice")
        #expect(first.status == 200)
        let id = try #require(first.json?["id"]?.stringValue)
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline, s.app.scoring.jobs.running == nil { usleep(20_000) }
        let running = try s.send(.get, "/scoring/?check_if_running=true")
        #expect(running.status == 200)
        #expect(running.json?["status"]?.stringValue == "RUNNING")
        let busy = try s.send(.post, "/scoring/sum")
        #expect(busy.status == 429)
        #expect(busy.json?["detail"]?.stringValue == "++++++++++ Scoring Task is Already Running")
        #expect(s.app.scoring.jobs.all.count == 1)
        let stopped = try s.send(.delete, "/scoring/")
        #expect(stopped.status == 200)
        #expect(stopped.json?["id"]?.stringValue == id)
        #expect(stopped.json?["status"]?.stringValue == "STOPPED")
        #expect(stopped.json?["details"] == ["Scoring Task stopped before it wrote any output"])
        #expect(try s.waitFinished()["status"]?.stringValue == "STOPPED")
        #expect(try s.send(.delete, "/scoring/").json == .null)
    }

    /// The CI failure: the child had printed its last line and exited, yet the job stayed RUNNING. Foundation
    /// sees a child's exit only when a socket it inherited closes; a process that inherited it as well (one spawned
    /// by another thread meanwhile, or, as here, one the child left behind) held the job open for its lifetime.
    @Test func scoring_childLeavesAProcessBehind_jobIsDoneWhenTheChildExits() throws {
        let dir = TempDir()
        let pidFile = dir.url.appendingPathComponent("left-behind.pid")
        let runner = dir.url.appendingPathComponent("leaves-one-behind.sh")
        try Data("""
            #!/bin/sh
            sleep 600 < /dev/null > /dev/null 2>&1 &
            echo $! > '\(pidFile.path)'
            echo 'scored and exiting'
            exit 0

            """.utf8).write(to: runner)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: runner.path)
        let s = try ScoringHarness(runner: runner)
        defer {
            if let text = try? String(contentsOf: pidFile, encoding: .utf8), let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)) {
                kill(pid, SIGKILL)
            }
        }
        #expect(try s.send(.post, "/scoring/dice").status == 200)
        let done = try s.waitFinished(timeout: 60)
        #expect(done["status"]?.stringValue == "DONE", "\(done.compactString())")
        #expect(done["details"]?.arrayValue?.contains(.string("scored and exiting")) == true)
    }

    @Test func scoring_hiddenPostAll_queuesEveryMethod() throws {
        let s = try ScoringHarness()
        let r = try s.send(.post, "/scoring/", json: "{}")
        #expect(r.status == 200)
        let o = try #require(r.json?.objectValue)
        #expect(o.keys == ["dice", "sum"])
        #expect(o["dice"]?["result"]?["request"]?["method"]?.stringValue == "dice")
        #expect(o["sum"]?["detail"] == .null)
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline, !s.app.scoring.jobs.all.allSatisfy({ $0.status.isFinished }) { usleep(100_000) }
        #expect(s.app.scoring.jobs.all.map(\.status) == [.done, .done])
    }
}
