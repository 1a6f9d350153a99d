import Foundation
import HTTPServer
import Imaging
import Testing
import TestSupport
@testable import MONAILabel
import TorchCheckpoint
@testable import MONAILabelServer

/// The monaibundle app serving a copy of the spleen-shaped fixture bundle (Tests/Fixtures/bundles, with its
/// configs/train.json) on four small labelled synthetic studies; train jobs run the freshly built `monailabel`.
final class BundleTrainHarness: RouterHarness {
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let name = "spleen_ct_segmentation"
    let tmp = TempDir()
    let app: MONAILabelApp
    let router: HTTPRouter
    var bundle: URL { tmp.url.appendingPathComponent("app/model/\(Self.name)") }

    /// `editTrain` changes the copy's train.json before the app starts.
    init(editTrain: (inout JSONObject) -> Void = { _ in }) throws {
        let appDir = tmp.url.appendingPathComponent("app"), studies = tmp.url.appendingPathComponent("studies")
        try FileManager.default.createDirectory(at: appDir.appendingPathComponent("model"), withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: Self.repo.appendingPathComponent("sample-apps/monaibundle/app.json"),
                                         to: appDir.appendingPathComponent("app.json"))
        try FileManager.default.copyItem(at: Self.repo.appendingPathComponent("Tests/Fixtures/bundles/\(Self.name)"),
                                         to: appDir.appendingPathComponent("model/\(Self.name)"))
        let trainJSON = appDir.appendingPathComponent("model/\(Self.name)/configs/train.json")
        var config = try #require(try JSONValue.parse(Array(Data(contentsOf: trainJSON))).objectValue)
        editTrain(&config)
        try Data(JSONValue.object(config).prettyBytes()).write(to: trainJSON)
        try DemoStudies.write(to: studies, count: 4, labeled: 4, shape: [32, 32, 16], spacing: [3, 3, 4])
        let settings = jobSettings(appDir: appDir, studies: studies, conf: ["models": Self.name])
        app = try MONAILabelApp(settings: settings, datastore: try LocalDatastore(root: studies))
        router = makeRouter(app: app, log: .silent)
    }

    deinit { app.training.jobs.shutdown() }

    /// Infers `image` through `POST /infer`; the label's voxel count.
    func inferLabelCount(_ image: String) throws -> Int {
        let req = try HTTPRequest(method: .post, target: "/infer/\(Self.name)?image=\(image)&output=image",
                                  headers: HTTPHeaders([("Host", "test")]), body: .empty)
        defer { req.context.cleanUp() }
        let resp = router.respond(to: req)
        #expect(resp.status.code == 200)
        let file = tmp.url.appendingPathComponent("label-\(UUID().uuidString).nii.gz")
        try Data(try bodyBytes(resp)).write(to: file)
        return try ImageIO.load(file).floats.count
    }

    /// The served infer task's logits for `image` (preprocessed as the task does), through its model loader.
    func servedLogits(_ image: String) throws -> [Float] {
        let task = try #require(app.inferTasks[Self.name] as? SegmentationTask)
        return try task.predict(try preprocessed(image, task), params: [:])
    }

    func preprocessed(_ image: String, _ task: SegmentationTask) throws -> Volume {
        var x = try ImageIO.load(tmp.url.appendingPathComponent("studies/\(image).nii.gz"))
        for t in task.pre { x = try t.apply(x) }
        return x
    }
}

@Suite(.tags(.router), .serialized) struct BundleTrainRoutesTests {
    @Test(.timeLimit(.minutes(14)))
    func bundleTrainJSON_listedInInfo_twoEpochRunPublishesModelPt_thenInferenceUsesIt() throws {
        let h = try BundleTrainHarness()
        let info = try #require(try h.send(.get, "/info/").json)
        let trainer = try #require(info["trainers"]?[BundleTrainHarness.name]?.objectValue)
        #expect(trainer["description"]?.stringValue?.contains("spleen") == true)
        #expect(trainer["config"]?["max_epochs"] == 50)
        #expect(trainer["labels"] == ["spleen": 1])

        let modelPT = h.bundle.appendingPathComponent("models/model.pt")
        let original = try Data(contentsOf: modelPT)
        let names = Set(try Checkpoint.stateDict(from: modelPT, key: "model").map(\.name))
        #expect(try h.inferLabelCount("spleen_03") > 0)
        let before = try h.servedLogits("spleen_03")

        let r = try h.send(.post, "/train/\(BundleTrainHarness.name)?run_sync=true",
                           json: #"{"max_epochs": 2, "val_split": 0.25, "name": "bundle_run"}"#)
        #expect(r.status == 200, "\(String(describing: r.json))")
        #expect(r.json?["total_epochs"] == 2)
        #expect(r.json?["eval"]?["key_metric_name"] == "val_mean_dice")
        // Published where upstream's bundle trainer writes it, with the same parameter names.
        let published = try Data(contentsOf: modelPT)
        #expect(published != original)
        #expect(Set(try Checkpoint.stateDict(from: modelPT, key: "model").map(\.name)) == names)
        #expect(FileManager.default.fileExists(atPath: h.bundle.appendingPathComponent("bundle_run/checkpoint_final.pt").path))
        #expect(FileManager.default.fileExists(atPath: h.bundle.appendingPathComponent("train_stats.json").path))

        // The served infer task reloads the published weights: its logits change and are those of a task that
        // loads model.pt afresh.
        #expect(try h.inferLabelCount("spleen_03") > 0)
        let after = try h.servedLogits("spleen_03")
        let d = try #require(h.app.definition.models[BundleTrainHarness.name]?.objectValue)
        let fresh = try SegmentationTask(name: BundleTrainHarness.name, definition: d, modelDir: h.bundle)
        let expected = try fresh.predict(try h.preprocessed("spleen_03", fresh), params: [:])
        try #require(after.count == before.count && after.count == expected.count)
        let changed = zip(before, after).reduce(Float(0)) { max($0, abs($1.0 - $1.1)) }
        let fromFile = zip(after, expected).reduce(Float(0)) { max($0, abs($1.0 - $1.1)) }
        #expect(changed > 1e-3, "the served logits did not change after training (max change \(changed))")
        #expect(fromFile <= 1e-5, "the served logits are not the published weights' (max difference \(fromFile))")
    }

    @Test func unrunnableTrainJSON_bundleStillInfers_trainAnswers404NamingTheKey() throws {
        let h = try BundleTrainHarness { c in
            guard case .object(var train) = c["train"], case .array(var list) = train["random_transforms"] else { return }
            list.append(["_target_": "RandZoomd", "keys": ["image", "label"], "prob": 0.1])
            train["random_transforms"] = .array(list)
            c["train"] = .object(train)
        }
        let info = try #require(try h.send(.get, "/info/").json)
        #expect(info["models"]?[BundleTrainHarness.name] != nil)
        #expect(info["trainers"]?[BundleTrainHarness.name] == nil)
        #expect(h.app.unavailableTrainers.map { $0.model } == [BundleTrainHarness.name])
        let r = try h.send(.post, "/train/\(BundleTrainHarness.name)", json: #"{"max_epochs": 1}"#)
        #expect(r.status == 404)
        let detail = r.json?["detail"]?.stringValue ?? ""
        #expect(detail.contains("train#random_transforms#5#_target_: transform 'RandZoomd' is not supported"), "\(detail)")
        #expect(!detail.contains(h.tmp.url.path), "a server path in the detail")
        #expect(h.app.training.jobs.all.isEmpty)
    }
}

/// The real server starts the bundle app (no pretrained download is attempted for bundles) and lists its trainer.
@Test(.tags(.live), .timeLimit(.minutes(14)))
func bundleApp_realServerStarts_listsTheBundleTrainer() throws {
    let h = try BundleTrainHarness()
    let server = try startJobServer(appDir: h.tmp.url.appendingPathComponent("app"),
                                    studies: h.tmp.url.appendingPathComponent("studies").path,
                                    conf: ["models": BundleTrainHarness.name])
    defer { server.stop() }
    let (status, body) = try curl(server.port, "GET", "/info/")
    #expect(status == 200)
    let info = try JSONValue.parse(body)
    #expect(info["trainers"]?[BundleTrainHarness.name]?["config"]?["max_epochs"] == 50)
    let bad = try curl(server.port, "POST", "/train/\(BundleTrainHarness.name)", json: #"{"max_epochs": 0}"#)
    #expect(bad.status == 422)
}
