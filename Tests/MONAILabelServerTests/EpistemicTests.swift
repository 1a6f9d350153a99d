import Foundation
import HTTPServer
import Imaging
import Testing
import TorchCheckpoint
import TorchKit
import MONAILabel
@testable import MONAILabelServer

/// A model and volumes that make the epistemic answer known: a tiny UNet (BatchNorm, MONAI names) taught that
/// intensity 1 is foreground, 0 background and 0.5 a coin flip; unlabeled volumes that are clean (cubes of 1 on
/// 0: the model is sure) or ambiguous (a cube of 0.5: it cannot be). `case_b` is the ambiguous one, neither the
/// first nor the last id, so `first`/`last`-like orders do not pass by accident.
///
/// The network trains with dropout 0.2 and has no residual units: with residual units MONAI's UNet puts a
/// Dropout3d on its top up-convolution, whose output has only `out_channels` (2) channels, so one MC pass in
/// three zeroes a whole class and its score is noise (upstream's spleen UNet has the same trait).
enum EpistemicFixture {
    static let shape = [16, 16, 16]
    static let network: JSONObject = [
        "name": "UNet", "spatial_dims": 3, "in_channels": 1, "out_channels": 2, "channels": [8, 16, 32],
        "strides": [2, 2], "num_res_units": 0, "norm": "batch", "dropout": 0.2,
    ]
    static let appJSON = """
        {"name": "MONAILabel - Radiology", "description": "test", "version": "0.8.5", "strategies": ["random", "first"],
         "models": {"tiny": {
           "type": "segmentation", "labels": {"thing": 1}, "dimension": 3, "description": "tiny",
           "network": \(JSONValue.object(network).compactString()),
           "pre": [], "inferer": {"roi_size": [16, 16, 16]}, "files": {"published": "tiny.pt"},
           "train": {"description": "Train tiny", "optimizer": "Adam", "lr": 0.001, "spatial_size": [16, 16, 16],
                     "num_samples": 1, "val_roi_size": [16, 16, 16]}}}}
        """
    /// A fixed past time for the fixture's model file, so any publish during a test changes `epistemic_ts`.
    static let modelDate = Date(timeIntervalSince1970: 1_704_067_200)

    /// The trained weights as checkpoint bytes, trained once per test process (a second or two).
    static let checkpoint: Result<Data, any Error> = Result { try train() }

    /// A small deterministic generator for the training volumes.
    struct SplitMix {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE5_E4B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        mutating func int(_ r: Range<Int>) -> Int { r.lowerBound + Int(next() % UInt64(r.count)) }
        mutating func unit() -> Float { Float(next() >> 40) / Float(1 << 24) }
    }

    static func index(_ x: Int, _ y: Int, _ z: Int) -> Int { (x * shape[1] + y) * shape[2] + z }

    /// Sets the cube `[o, o + size)` to `value`, calling `label` for each voxel it covers.
    static func cube(_ v: inout [Float], at o: [Int], size: Int, value: Float, label: (Int) -> Void = { _ in }) {
        for x in o[0]..<min(o[0] + size, shape[0]) {
            for y in o[1]..<min(o[1] + size, shape[1]) {
                for z in o[2]..<min(o[2] + size, shape[2]) {
                    v[index(x, y, z)] = value
                    label(index(x, y, z))
                }
            }
        }
    }

    /// One training case: a bright cube (foreground) and an ambiguous cube (foreground by coin flip) in
    /// opposite halves along x, plus a little uniform noise; the label is the one-hot `[2, *shape]`.
    static func trainingCase(_ rng: inout SplitMix) -> (image: [Float], oneHot: [Float]) {
        let n = shape.reduce(1, *)
        var image = [Float](repeating: 0, count: n)
        var fg = [Float](repeating: 0, count: n)
        let brightLeft = rng.int(0..<2) == 0
        func origin(left: Bool, size: Int) -> [Int] {
            [(left ? 0 : 8) + rng.int(0..<(9 - size)), rng.int(0..<(17 - size)), rng.int(0..<(17 - size))]
        }
        let s1 = rng.int(3..<8), s2 = rng.int(3..<8)
        cube(&image, at: origin(left: brightLeft, size: s1), size: s1, value: 1) { fg[$0] = 1 }
        cube(&image, at: origin(left: !brightLeft, size: s2), size: s2, value: 0.5) { fg[$0] = rng.int(0..<2) == 0 ? 0 : 1 }
        for i in 0..<n { image[i] += (rng.unit() - 0.5) * 0.1 }
        return (image, fg.map { 1 - $0 } + fg)
    }

    static func train() throws -> Data {
        Torch.manualSeed(11)
        var rng = SplitMix(state: 3)
        let net = try NetworkFactory.make(network)
        net.train()
        let optimizer = try Adam(parameters: net.parameters(), lr: 0.01)
        let batch = 4
        for _ in 0..<200 {
            var xs: [Float] = [], ys: [Float] = []
            for _ in 0..<batch {
                let c = trainingCase(&rng)
                xs += c.image
                ys += c.oneHot
            }
            // Cross-entropy: calibrated probabilities, so 0.5 regions end up near p = 0.5.
            let logp = try net(try Tensor(xs, shape: [batch, 1] + shape)).logSoftmax(dim: 1)
            let loss = try logp.mul(try Tensor(ys, shape: [batch, 2] + shape)).sum(dims: [1]).mean().neg()
            try optimizer.zeroGrad()
            try loss.backward()
            try optimizer.step()
        }
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("epistemic-\(UUID().uuidString).pt")
        defer { try? FileManager.default.removeItem(at: url) }
        try Checkpoint.write(stateDict: try net.stateDict().map { (name: $0.0, tensor: $0.1) }, key: "model", extra: [],
                             to: url)
        return try Data(contentsOf: url)
    }

    /// Writes the studies (`case_0` labeled; `case_a`, `case_c` clean; `case_b` ambiguous) and the app with the
    /// trained model as its published file.
    static func write(studies: URL, appDir: URL) throws {
        try FileOps.makeDirectory(studies.appendingPathComponent("labels/final"))
        let n = shape.reduce(1, *)
        func save(_ values: [Float], _ url: URL, bytes: Bool = false) throws {
            let data: VoxelData = bytes ? .uint8(values.map { UInt8($0) }) : .float32(values)
            try NIfTI.write(Volume(spatialShape: shape, data: data, affine: .identity), to: url)
        }
        var labeled = [Float](repeating: 0, count: n), label = labeled
        cube(&labeled, at: [3, 3, 3], size: 6, value: 1) { label[$0] = 1 }
        try save(labeled, studies.appendingPathComponent("case_0.nii.gz"))
        try save(label, studies.appendingPathComponent("labels/final/case_0.nii.gz"), bytes: true)
        var a = [Float](repeating: 0, count: n)
        cube(&a, at: [2, 2, 2], size: 6, value: 1)
        try save(a, studies.appendingPathComponent("case_a.nii.gz"))
        var b = [Float](repeating: 0, count: n)
        cube(&b, at: [3, 3, 3], size: 10, value: 0.5)
        try save(b, studies.appendingPathComponent("case_b.nii.gz"))
        var c = [Float](repeating: 0, count: n)
        cube(&c, at: [9, 8, 7], size: 5, value: 1)
        try save(c, studies.appendingPathComponent("case_c.nii.gz"))

        try FileOps.makeDirectory(appDir.appendingPathComponent("model"))
        try Data(appJSON.utf8).write(to: appDir.appendingPathComponent("app.json"))
        let model = appDir.appendingPathComponent("model/tiny.pt")
        try checkpoint.get().write(to: model)
        try FileManager.default.setAttributes([.modificationDate: modelDate], ofItemAtPath: model.path)
    }

    static let conf = ["models": "tiny", "epistemic_enabled": "true", "epistemic_samples": "4"]
}

/// The fixture as an in-process app and router; jobs run the freshly built `monailabel` as their child.
final class EpistemicHarness: RouterHarness {
    let tmp = TempDir()
    let app: MONAILabelApp
    let router: HTTPRouter
    var model: URL { tmp.url.appendingPathComponent("app/model/tiny.pt") }

    init(conf: [String: String] = EpistemicFixture.conf, autoUpdateScoring: Bool = true) throws {
        let studies = tmp.url.appendingPathComponent("studies")
        let appDir = tmp.url.appendingPathComponent("app")
        try EpistemicFixture.write(studies: studies, appDir: appDir)
        var settings = jobSettings(appDir: appDir, studies: studies, conf: conf)
        settings.autoUpdateScoring = autoUpdateScoring
        app = try MONAILabelApp(settings: settings, datastore: try LocalDatastore(root: studies))
        router = makeRouter(app: app, log: .silent)
    }

    deinit {
        app.training.jobs.shutdown()
        app.scoring.jobs.shutdown()
    }

    /// Polls `GET <path>` until its latest job has finished.
    func waitFinished(_ path: String) throws -> JSONValue {
        try poll(path, timeout: 90, for: "the job to finish", until: jobFinished)
    }

    func scores() -> [String: Double] {
        var out: [String: Double] = [:]
        for id in app.datastore.listImages() {
            if let s = app.datastore.imageInfo(id)?["epistemic_entropy"]?.doubleValue { out[id] = s }
        }
        return out
    }
}

@Suite(.tags(.router), .serialized) struct EpistemicTests {
    @Test func epistemic_ranksTheImageTheModelIsLeastSureOfFirst() throws {
        let h = try EpistemicHarness()
        let method = try h.app.scoring.requireMethod("epistemic")
        let outcome = try method.score(request: [:], datastore: h.app.datastore, log: { _ in })
        try outcome.apply(to: h.app.datastore)
        #expect(outcome.result.keys.sorted() == ["case_a", "case_b", "case_c"], "labeled case_0 is not scored")
        let s = h.scores()
        let a = try #require(s["case_a"]), b = try #require(s["case_b"]), c = try #require(s["case_c"])
        #expect(b > 2 * max(a, c), "ambiguous \(b) vs clean \(a), \(c)")
        let ts = Int(EpistemicFixture.modelDate.timeIntervalSince1970)
        #expect(h.app.datastore.imageInfo("case_b")?["epistemic_ts"] == .int(ts))
        #expect(h.app.datastore.imageInfo("case_b")?["epistemic_model"] == "tiny")

        let first = try h.app.nextSample(strategy: "epistemic", request: [:])
        #expect(first["id"] == "case_b")
        // Served now, so the next pick is the more uncertain of the clean ones.
        let second = try h.app.nextSample(strategy: "epistemic", request: [:])
        #expect(second["id"] == (a > c ? "case_a" : "case_c"))
        // The upstream-named strategy reads the same scores.
        #expect(try h.app.nextSample(strategy: "tiny_epistemic", request: [:])["id"] == "case_b")
    }

    @Test func epistemic_skipsImagesScoredWithTheCurrentModel_rescoresAfterANewOne() throws {
        let h = try EpistemicHarness()
        let method = try h.app.scoring.requireMethod("tiny_epistemic")
        try method.score(request: ["num_samples": 2], datastore: h.app.datastore, log: { _ in }).apply(to: h.app.datastore)
        let again = try method.score(request: [:], datastore: h.app.datastore, log: { _ in })
        #expect(again.result.isEmpty)
        let stale = try #require(method as? any ModelDependentScoring)
        #expect(!stale.isStale(datastore: h.app.datastore))

        let newer = EpistemicFixture.modelDate.addingTimeInterval(3600)
        try FileManager.default.setAttributes([.modificationDate: newer], ofItemAtPath: h.model.path)
        #expect(stale.isStale(datastore: h.app.datastore))
        let rescored = try method.score(request: [:], datastore: h.app.datastore, log: { _ in })
        #expect(rescored.result.keys.sorted() == ["case_a", "case_b", "case_c"])
        #expect(rescored.imageInfo["case_a"]?["epistemic_ts"] == .int(Int(newer.timeIntervalSince1970)))
    }

    @Test func epistemic_noModelFile_failsWithAClearMessage() throws {
        let h = try EpistemicHarness()
        try FileManager.default.removeItem(at: h.model)
        let method = try h.app.scoring.requireMethod("epistemic")
        #expect {
            try method.score(request: [:], datastore: h.app.datastore, log: { _ in })
        } throws: { ($0 as? MONAILabelError)?.message.contains("no weights file") == true }
    }

    @Test func info_epistemicEnabled_listsStrategiesAndScoring_disabledListsNone() throws {
        let h = try EpistemicHarness()
        let info = try #require(try h.send(.get, "/info/").json)
        #expect(info["strategies"]?.objectValue?.keys == ["random", "first", "epistemic", "tiny_epistemic"])
        #expect(info["strategies"]?["epistemic"]?["description"] == "Get First Sample Based on Epistemic score")
        #expect(info["scoring"]?.objectValue?.keys == ["dice", "sum", "epistemic", "tiny_epistemic"])
        #expect(info["scoring"]?["epistemic"]?["description"] == "Compute initial score based on dropout")

        let off = try EpistemicHarness(conf: ["models": "tiny"])
        let offInfo = try #require(try off.send(.get, "/info/").json)
        #expect(offInfo["strategies"]?.objectValue?.keys == ["random", "first"])
        #expect(offInfo["scoring"]?.objectValue?.keys == ["dice", "sum"])
    }

    @Test func tta_ranksTheAmbiguousImageFirst_scoresCarryTheModelTime() throws {
        let h = try EpistemicHarness(conf: ["models": "tiny", "tta_enabled": "true"])
        let info = try #require(try h.send(.get, "/info/").json)
        #expect(info["strategies"]?.objectValue?.keys == ["random", "first", "tta", "tiny_tta"])
        #expect(info["scoring"]?.objectValue?.keys == ["dice", "sum", "tta", "tiny_tta"])
        let outcome = try h.app.scoring.requireMethod("tta").score(request: [:], datastore: h.app.datastore, log: { _ in })
        try outcome.apply(to: h.app.datastore)
        #expect(outcome.result.keys.sorted() == ["case_a", "case_b", "case_c"])
        var variance: [String: Double] = [:]
        for id in ["case_a", "case_b", "case_c"] {
            let i = h.app.datastore.imageInfo(id)
            #expect(i?["tta_ts"] == .int(Int(EpistemicFixture.modelDate.timeIntervalSince1970)))
            variance[id] = try #require(i?["tta_variance"]?.doubleValue)
        }
        let a = try #require(variance["case_a"]), b = try #require(variance["case_b"]), c = try #require(variance["case_c"])
        #expect(b > 5 * max(a, c), "ambiguous \(b) vs clean \(a), \(c)")
        #expect(try h.app.nextSample(strategy: "tta", request: [:])["id"] == "case_b")
        #expect(try h.app.scoring.requireMethod("tta").score(request: [:], datastore: h.app.datastore, log: { _ in }).result.isEmpty)
    }

    @Test(.timeLimit(.minutes(6)))
    func scoringEpistemic_runsAsAJob_thenActiveLearningServesTheUncertainImage() throws {
        let h = try EpistemicHarness()
        let submitted = try h.send(.post, "/scoring/epistemic", json: "{}")
        #expect(submitted.status == 200)
        #expect(submitted.json?["status"] == "SUBMITTED")
        #expect(submitted.json?["request"]?["method"] == "epistemic")
        let done = try h.waitFinished("/scoring/")
        #expect(done["status"] == "DONE", "\(done.compactString())")
        #expect(Set(h.scores().keys) == ["case_a", "case_b", "case_c"])

        let next = try h.send(.post, "/activelearning/epistemic", json: #"{"client_id": "tester"}"#)
        #expect(next.status == 200)
        #expect(next.json?["id"] == "case_b")
        #expect(next.json?["epistemic_entropy"]?.doubleValue != nil, "the image info's score, as upstream's merge")
        #expect(next.json?["strategy"]?["epistemic"]?["client_id"] == "tester")
    }

    @Test(.timeLimit(.minutes(6)))
    func nextSample_withStaleScores_queuesScoringInTheBackground() throws {
        let h = try EpistemicHarness()
        // Nothing scored yet: every score is 0, so the first pick is by id, and a scoring job is queued.
        let first = try h.send(.post, "/activelearning/epistemic")
        #expect(first.json?["id"] == "case_a")
        let job = try h.waitFinished("/scoring/")
        #expect(job["request"]?["method"] == "epistemic")
        #expect(job["status"] == "DONE", "\(job.compactString())")
        #expect(Set(h.scores().keys) == ["case_a", "case_b", "case_c"])
        #expect(try h.send(.post, "/activelearning/epistemic").json?["id"] == "case_b")
        // Scores are current now: no further job.
        #expect(try h.send(.get, "/scoring/?all=true").json?.arrayValue?.count == 1)
    }

    @Test func nextSample_autoUpdateScoringOff_queuesNothing() throws {
        let h = try EpistemicHarness(autoUpdateScoring: false)
        #expect(try h.send(.post, "/activelearning/epistemic").status == 200)
        #expect(try h.send(.get, "/scoring/").status == 404)
    }

    @Test(.timeLimit(.minutes(6)))
    func scoringEpistemic_withoutWeights_jobEndsInErrorWithTheReason() throws {
        let h = try EpistemicHarness()
        try FileManager.default.removeItem(at: h.model)
        #expect(try h.send(.post, "/scoring/epistemic").status == 200)
        let done = try h.waitFinished("/scoring/")
        #expect(done["status"] == "ERROR")
        let details = done["details"]?.arrayValue?.compactMap(\.stringValue).joined(separator: "\n") ?? ""
        #expect(details.contains("no weights file"), "\(details)")
        #expect(h.scores().isEmpty)
    }

    @Test(.timeLimit(.minutes(6)))
    func training_publishesANewModel_queuesEpistemicRescoring() throws {
        let h = try EpistemicHarness()
        let method = try h.app.scoring.requireMethod("epistemic")
        try method.score(request: ["num_samples": 2], datastore: h.app.datastore, log: { _ in }).apply(to: h.app.datastore)
        let oldTS = h.app.datastore.imageInfo("case_a")?["epistemic_ts"]

        let train = try h.send(.post, "/train/tiny", json: #"{"max_epochs": 1, "val_split": 0}"#)
        #expect(train.status == 200, "\(train.json?.compactString() ?? "")")
        let trained = try h.waitFinished("/train/")
        #expect(trained["status"] == "DONE", "\(trained.compactString())")
        // The train job's completion queued a scoring job; wait for it.
        let scoring = try h.waitFinished("/scoring/")
        #expect(scoring["request"]?["method"] == "epistemic")
        #expect(scoring["status"] == "DONE", "\(scoring.compactString())")
        let mtime = try #require(FileOps.modificationTime(h.model.path))
        let newTS = JSONValue.int(Int(mtime / 1_000_000_000))
        #expect(newTS != oldTS)
        for id in ["case_a", "case_b", "case_c"] {
            #expect(h.app.datastore.imageInfo(id)?["epistemic_ts"] == newTS, "\(id)")
        }
    }
}

/// Real sockets and the real Python client: the start-up scoring job, an explicit one, then
/// `next_sample("epistemic")`.
@Test(.tags(.live), .timeLimit(.minutes(14)),
      .needsClientVenv)
func pythonClient_epistemicScoringThenNextSample_servesTheUncertainImage() throws {
    let tmp = TempDir()
    let studies = tmp.url.appendingPathComponent("studies")
    let appDir = tmp.url.appendingPathComponent("app")
    try EpistemicFixture.write(studies: studies, appDir: appDir)
    let server = try startJobServer(appDir: appDir, studies: studies.path, conf: EpistemicFixture.conf)
    defer { server.stop() }
    let (status, text) = try runE2EScript("epistemic_sequence.py", ["http://127.0.0.1:\(server.port)", "case_b"])
    #expect(status == 0, "\(text)")
    #expect(text.contains("EPISTEMIC SEQUENCE OK"))
}
