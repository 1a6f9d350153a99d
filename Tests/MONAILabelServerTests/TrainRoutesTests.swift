import Foundation
import HTTPServer
import Testing
import TestSupport
import MONAILabel
import TorchCheckpoint
@testable import MONAILabelServer

/// An app with a tiny spleen model (4-8-16 UNet on 32x32x16 volumes at their own 3x3x4 mm spacing) whose
/// train jobs run the freshly built `monailabel` as their child process.
final class TrainHarness: RouterHarness {
    let tmp = TempDir()
    let app: MONAILabelApp
    let router: HTTPRouter
    var appDir: URL { tmp.url.appendingPathComponent("app") }
    var published: URL { appDir.appendingPathComponent("model/segmentation_spleen.pt") }

    static let appJSON = """
        {"name": "MONAILabel - Radiology", "description": "test", "version": "0.8.5", "strategies": ["random"],
         "models": {"segmentation_spleen": {
           "type": "segmentation", "labels": {"spleen": 1}, "dimension": 3, "description": "tiny spleen",
           "network": {"name": "UNet", "spatial_dims": 3, "in_channels": 1, "out_channels": 2, "channels": [4, 8, 16],
                       "strides": [2, 2], "num_res_units": 1, "norm": "batch"},
           "pre": [{"name": "Orientationd", "axcodes": "RAS"}, {"name": "Spacingd", "pixdim": [3.0, 3.0, 4.0]},
                   {"name": "ScaleIntensityRanged", "a_min": -57, "a_max": 164, "b_min": 0.0, "b_max": 1.0, "clip": true}],
           "inferer": {"roi_size": [32, 32, 16]},
           "files": {"published": "segmentation_spleen.pt"},
           "train": {"description": "Train Spleen Segmentation Model", "optimizer": "Adam", "lr": 0.001,
                     "spatial_size": [16, 16, 16], "num_samples": 1, "val_roi_size": [32, 32, 16]}}}}
        """

    init(labeled: Int = 4, autoTrainEvery: Int = 0) throws {
        let studies = tmp.url.appendingPathComponent("studies")
        let appDir = tmp.url.appendingPathComponent("app")
        try DemoStudies.write(to: studies, count: 5, labeled: labeled, shape: [32, 32, 16], spacing: [3, 3, 4])
        try FileManager.default.createDirectory(at: appDir, withIntermediateDirectories: true)
        try Data(Self.appJSON.utf8).write(to: appDir.appendingPathComponent("app.json"))
        var settings = jobSettings(appDir: appDir, studies: studies, conf: ["models": "segmentation_spleen"])
        settings.autoTrainEvery = autoTrainEvery
        app = try MONAILabelApp(settings: settings, datastore: try LocalDatastore(root: studies))
        router = makeRouter(app: app, log: .silent)
    }

    deinit { app.training.jobs.shutdown() }

    /// The real server (HTTP on an ephemeral loopback port) on `count` tiny cases with this app, its jobs run by
    /// the freshly built `monailabel`.
    static func startLiveServer(_ tmp: TempDir, count: Int, labeled: Int) throws -> RunningServer {
        let studies = tmp.url.appendingPathComponent("studies")
        try DemoStudies.write(to: studies, count: count, labeled: labeled, shape: [32, 32, 16], spacing: [3, 3, 4])
        let appDir = tmp.url.appendingPathComponent("app")
        try FileManager.default.createDirectory(at: appDir, withIntermediateDirectories: true)
        try Data(appJSON.utf8).write(to: appDir.appendingPathComponent("app.json"))
        return try startJobServer(appDir: appDir, studies: studies.path, conf: ["models": "segmentation_spleen"])
    }

    /// Polls `GET /train/` until `done` holds for the latest task, or fails after `timeout` seconds.
    func waitFor(_ what: String, timeout: Double, _ done: (JSONValue) -> Bool) throws -> JSONValue {
        try poll("/train/", timeout: timeout, for: what, until: done)
    }
}

@Suite(.tags(.router), .serialized) struct TrainRoutesTests {
    @Test func train_noTasksYet_answers404() throws {
        let h = try TrainHarness()
        let r = try h.send(.get, "/train/")
        #expect(r.status == 404)
        #expect(r.json?["detail"]?.stringValue == "No Train Tasks Found")
        #expect(try h.send(.get, "/train/?check_if_running=true").json?["detail"]?.stringValue
            == "No Train Tasks are currently Running")
        #expect(try h.send(.delete, "/train/").json == .null)
    }

    @Test func train_unknownModel_returns404BeforeQueuing() throws {
        let h = try TrainHarness()
        #expect(try h.send(.post, "/train/unknown_model").status == 404)
        #expect(try h.send(.get, "/train/").status == 404)
    }

    @Test func train_noLabelledImages_returns4xxBeforeQueuing() throws {
        let h = try TrainHarness(labeled: 0)
        let r = try h.send(.post, "/train/segmentation_spleen", json: "{}")
        #expect(r.status == 422)
        #expect(r.json?["detail"]?.stringValue?.contains("final label") == true)
        #expect(try h.send(.get, "/train/").status == 404)
    }

    @Test(arguments: [#"{"max_epochs": "10"}"#, #"{"max_epochs": 2.5}"#])
    func train_maxEpochsNotAnInteger_returns422NamingItBeforeAnyJobExists(body: String) throws {
        let h = try TrainHarness()
        let r = try h.send(.post, "/train/segmentation_spleen?run_sync=true", json: body)
        #expect(r.status == 422, "\(body): \(r.status)")
        #expect(r.json?["detail"]?.stringValue?.contains("max_epochs") == true, "\(String(describing: r.json))")
        #expect(h.app.training.jobs.all.isEmpty, "a job exists for \(body)")
    }

    @Test func train_deprecatedAllTrainers_badMaxEpochs_answersTheDetailPerTrainerAndQueuesNothing() throws {
        let h = try TrainHarness()
        let r = try h.send(.post, "/train/", json: #"{"max_epochs": 2.5}"#)
        #expect(r.status == 200)
        let entry = try #require(r.json?["segmentation_spleen"])
        #expect(entry["result"] == .null)
        #expect(entry["detail"]?.stringValue?.contains("max_epochs") == true, "\(entry)")
        #expect(h.app.training.jobs.all.isEmpty)
    }

    @Test func trainRequest_decodesTheJobsJSONAndKind() throws {
        let h = try TrainHarness()
        let json: JSONObject = ["model": "segmentation_spleen", "max_epochs": 3]
        let request = try h.app.jobRequest(.train, json)
        #expect(request.kind == .train)
        #expect(request.json == json)
        guard case .train(let train) = request else { Issue.record("not a train request"); return }
        #expect(train.model == "segmentation_spleen")
    }

    @Test func info_listsTrainerWithUpstreamConfigKeys() throws {
        let h = try TrainHarness()
        let info = try #require(try h.send(.get, "/info/").json)
        let t = try #require(info["trainers"]?["segmentation_spleen"]?.objectValue)
        #expect(t["description"]?.stringValue == "Train Spleen Segmentation Model")
        #expect(t["labels"] == ["spleen": 1])
        #expect(t["config"]?.objectValue?.keys == [
            "name", "pretrained", "device", "max_epochs", "early_stop_patience", "val_split", "train_batch_size",
            "val_batch_size", "multi_gpu", "gpus", "dataset", "dataloader", "tracking", "tracking_uri",
            "tracking_experiment_name",
        ])
        #expect(info["train_stats"]?["segmentation_spleen"] == .object([:]))
        // The planner's choices appear once computed in the background.
        var plan: JSONValue?
        for _ in 0..<100 where plan == nil {
            plan = try h.send(.get, "/info/").json?["trainers"]?["segmentation_spleen"]?["planner"]
            if plan == nil { usleep(100_000) }
        }
        let p = try #require(plan)
        #expect(p["spatial_size"] == [16, 16, 16])
        #expect(p["target_spacing"] == [3.0, 3.0, 4.0])
        #expect(p["sampled_images"] == 3)
    }

    @Test(.timeLimit(.minutes(6)))
    func train_startPollStop_epochsAdvanceThenStoppedWithin5s() throws {
        let h = try TrainHarness()
        let submitted = try h.send(.post, "/train/segmentation_spleen", json: #"{"max_epochs": 500, "val_split": 0.25}"#)
        #expect(submitted.status == 200)
        #expect(submitted.json?["status"]?.stringValue == "SUBMITTED")
        #expect(submitted.json?["request"]?["max_epochs"]?.intValue == 500)

        let busy = try h.send(.post, "/train/segmentation_spleen", json: "{}")
        #expect(busy.status == 429)
        #expect(busy.json?["detail"]?.stringValue == "++++++++++ Train Task is Already Running")

        let running = try h.waitFor("epoch 3", timeout: 120) { ($0["progress"]?["epoch"]?.intValue ?? 0) >= 3 }
        #expect(running["status"]?.stringValue == "RUNNING")
        #expect(running["request"]?["gpus"]?.stringValue == "all")
        #expect(running["progress"]?["total_epochs"]?.intValue == 500)
        #expect(try h.send(.get, "/train/?check_if_running=true").status == 200)
        // Stats and the best model are written after every epoch.
        let stats = try #require(try h.send(.get, "/info/").json?["train_stats"]?["segmentation_spleen"]?.objectValue)
        #expect((stats["current_epoch"]?.intValue ?? 0) >= 1)
        #expect(stats["eval"]?["key_metric_name"]?.stringValue == "val_mean_dice")
        #expect(FileManager.default.fileExists(atPath: h.published.path))

        let t0 = Date()
        let stopped = try h.send(.delete, "/train/")
        #expect(stopped.status == 200)
        #expect(stopped.json?["status"]?.stringValue == "STOPPED")
        #expect(stopped.json?["end_ts"]?.stringValue != nil)
        #expect((stopped.json?["details"]?.arrayValue?.count ?? 0) > 0)
        while try h.send(.get, "/train/?check_if_running=true").status != 404, Date().timeIntervalSince(t0) < 5 {
            usleep(50_000)
        }
        #expect(Date().timeIntervalSince(t0) < 5, "the job still runs 5 s after DELETE")
        #expect(h.app.training.jobs.runningPID == nil)
        #expect(try h.send(.get, "/train/").json?["status"]?.stringValue == "STOPPED")
        // The published weights are a whole checkpoint Python can read (state dict under "model").
        let sd = try Checkpoint.stateDict(from: h.published, key: "model")
        #expect(sd.contains { $0.name == "model.0.conv.unit0.conv.weight" })
    }

    @Test(.timeLimit(.minutes(6)))
    func train_childKilledBySIGKILL_reportsErrorAndServerKeepsServing() throws {
        let h = try TrainHarness()
        #expect(try h.send(.post, "/train/segmentation_spleen", json: #"{"max_epochs": 500}"#).status == 200)
        _ = try h.waitFor("first iteration", timeout: 120) { $0["progress"] != nil }
        let pid = try #require(h.app.training.jobs.runningPID)
        kill(pid, SIGKILL)
        let failed = try h.waitFor("ERROR", timeout: 10) { $0["status"]?.stringValue == "ERROR" }
        #expect(failed["status"]?.stringValue == "ERROR")
        #expect(failed["details"]?.arrayValue?.last?.stringValue?.contains("signal 9") == true)
        #expect(try h.send(.get, "/info/").status == 200)
        // Whatever was published before the kill is a complete checkpoint; no temporary file is left visible
        // under the published name.
        if FileManager.default.fileExists(atPath: h.published.path) {
            #expect(throws: Never.self) { try Checkpoint.stateDict(from: h.published, key: "model") }
        }
        // The queue is free again.
        #expect(try h.send(.post, "/train/segmentation_spleen", json: #"{"max_epochs": 1}"#).status == 200)
        let done = try h.waitFor("DONE", timeout: 120) { ($0["status"]?.stringValue ?? "RUNNING") != "RUNNING"
            && $0["status"]?.stringValue != "SUBMITTED" }
        #expect(done["status"]?.stringValue == "DONE")
    }

    @Test(.timeLimit(.minutes(6)))
    func train_runSync_returnsTrainStats() throws {
        let h = try TrainHarness()
        let r = try h.send(.post, "/train/segmentation_spleen?run_sync=true", json: #"{"max_epochs": 2, "name": "sync"}"#)
        #expect(r.status == 200)
        #expect(r.json?["total_epochs"]?.intValue == 2)
        #expect(r.json?["total_time"]?.stringValue != nil)
        #expect(r.json?["best_metric"]?.doubleValue != nil)
        let run = h.appDir.appendingPathComponent("model/segmentation_spleen/sync")
        #expect(FileManager.default.fileExists(atPath: run.appendingPathComponent("model.pt").path))
        #expect(FileManager.default.fileExists(atPath: run.appendingPathComponent("checkpoint_final.pt").path))
    }

    /// PyTorch itself reads the published weights with weights_only=True, where Debian's python3-torch is installed.
    @Test(.needsPythonTorch, .timeLimit(.minutes(6)))
    func train_runSync_publishedWeights_loadInPyTorchWeightsOnly() throws {
        let h = try TrainHarness()
        let r = try h.send(.post, "/train/segmentation_spleen?run_sync=true", json: #"{"max_epochs": 1, "name": "torch"}"#)
        #expect(r.status == 200)
        let (status, text) = try runProcess(URL(fileURLWithPath: systemPython), ["-c", """
            import sys, torch
            d = torch.load(sys.argv[1], weights_only=True)
            assert set(d) == {"model", "epoch"}, list(d)
            assert d["model"]["model.0.conv.unit0.conv.weight"].shape == (4, 1, 3, 3, 3)
            print("LOADED", len(d["model"]))
            """, h.published.path])
        #expect(status == 0, "\(text)")
        #expect(text.contains("LOADED"))
    }

    @Test func autoTrain_everyTwoFinalLabels_queuesATrainJob() throws {
        let h = try TrainHarness(labeled: 2, autoTrainEvery: 2)
        let label = try Data(contentsOf: h.tmp.url.appendingPathComponent("studies/labels/final/spleen_00.nii.gz"))
        func save(_ id: String, tag: String = "final") throws -> Int {
            let m = TestClient.multipart(files: [(field: "label", filename: "\(id).nii.gz", bytes: Array(label))])
            return try h.send(.put, "/datastore/label?image=\(id)&tag=\(tag)", headers: m.headers, body: m.body).status
        }
        #expect(try save("spleen_02") == 200)
        #expect(try save("spleen_03", tag: "original") == 200)
        #expect(try h.send(.get, "/train/").status == 404, "one final label is not enough")
        #expect(try save("spleen_03") == 200)
        let job = try h.send(.get, "/train/")
        #expect(job.status == 200)
        #expect(job.json?["request"]?["model"]?.stringValue == "segmentation_spleen")
        #expect(try h.send(.delete, "/train/").status == 200)
    }

    @Test func train_deprecatedAllTrainers_queuesOnePerTrainer() throws {
        let h = try TrainHarness()
        let r = try h.send(.post, "/train/", json: #"{"segmentation_spleen": {"max_epochs": 1}}"#)
        #expect(r.status == 200)
        let entry = try #require(r.json?["segmentation_spleen"])
        #expect(entry["detail"] == .null)
        #expect(entry["result"]?["request"]?["max_epochs"]?.intValue == 1)
        #expect(entry["result"]?["request"]?["segmentation_spleen"] != nil)
        #expect(try h.send(.delete, "/train/").status == 200)
    }
}

/// The real Python client's train_start / train_status / train_stop against the live server (real sockets).
@Test(.tags(.live), .needsClientVenv, .timeLimit(.minutes(14)))
func pythonClient_trainStartStatusStop_works() throws {
    let tmp = TempDir()
    let server = try TrainHarness.startLiveServer(tmp, count: 5, labeled: 4)
    defer { server.stop() }
    let (status, text) = try runE2EScript("train_sequence.py", ["http://127.0.0.1:\(server.port)"])
    #expect(status == 0, "\(text)")
    #expect(text.contains("TRAIN SEQUENCE OK"))
}
