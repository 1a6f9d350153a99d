import Foundation
import Testing
import Imaging
@testable import MONAILabel
@testable import MONAILabelCore
@testable import MONAILabelServer

/// A DeepGrow app on blob volumes (soft tissue with one bright ellipsoid each, 1 mm voxels), served live. Weights
/// come from one brief in-process training per test process, installed as the app's pretrained files.
private enum DeepGrowApp {
    static let shape = [32, 32, 16]

    static func definition(_ dimension: Int) -> String {
        let sizes = dimension == 3 ? "[16, 32, 32]" : "[32, 32]"
        return """
            {"type": "deepgrow", "dimension": \(dimension), "description": "A pre-trained DeepGrow model based on UNET",
             "labels": ["spleen", "right kidney", "left kidney", "liver", "stomach", "aorta", "inferior vena cava"],
             "network": {"name": "BasicUNet", "spatial_dims": \(dimension), "in_channels": 3, "out_channels": 1,
                         "features": [8, 8, 16, 16, 32, 8]},
             "spatial_size": [32, 32], "model_size": \(sizes),
             "files": {"pretrained": "radiology_deepgrow_\(dimension)d_bunet.pt", "published": "deepgrow_\(dimension)d.pt"},
             "train": {"description": "Train \(dimension)D Deepgrow model", "optimizer": "Adam", "lr": 0.03,
                       "weight_decay": 0, "roi_size": \(sizes), "max_train_interactions": 2, "max_val_interactions": 2,
                       "val_interval": 1,
                       "config": {"max_epochs": \(dimension == 3 ? 8 : 5), "train_batch_size": \(dimension == 3 ? 2 : 16),
                                  "val_split": 0.0, "seed": 1}}}
            """
    }

    static var appJSON: String {
        """
        {"name": "MONAILabel - Radiology", "description": "test", "version": "0.8.5", "strategies": ["first"],
         "models": {"deepgrow_2d": \(definition(2)), "deepgrow_3d": \(definition(3))}}
        """
    }

    /// One case: image, its blob mask, and a voxel inside the blob.
    static func blob(seed: UInt64) -> (image: Volume, label: Volume, center: [Int]) {
        var rng = SplitMix64(seed: seed)
        let (nx, ny, nz) = (shape[0], shape[1], shape[2])
        let c = [Double.random(in: 11...20, using: &rng), Double.random(in: 11...20, using: &rng),
                 Double.random(in: 6...9, using: &rng)]
        let r = [Double.random(in: 4.5...6.5, using: &rng), Double.random(in: 4.5...6.5, using: &rng),
                 Double.random(in: 3...4, using: &rng)]
        var image = [Int16](repeating: 0, count: nx * ny * nz), label = [UInt8](repeating: 0, count: nx * ny * nz)
        for i in 0..<nx {
            for j in 0..<ny {
                for k in 0..<nz {
                    let d = pow((Double(i) - c[0]) / r[0], 2) + pow((Double(j) - c[1]) / r[1], 2)
                        + pow((Double(k) - c[2]) / r[2], 2)
                    label[(i * ny + j) * nz + k] = d <= 1 ? 1 : 0
                    image[(i * ny + j) * nz + k] = Int16((d <= 1 ? 300 : 20) + 15 * rng.gaussian())
                }
            }
        }
        let affine = Affine([1, 0, 0, -16, 0, 1, 0, -16, 0, 0, 1, -8, 0, 0, 0, 1])
        return (Volume(spatialShape: shape, data: .int16(image), affine: affine),
                Volume(spatialShape: shape, data: .uint8(label), affine: affine), c.map { Int($0.rounded()) })
    }

    /// Six labelled blobs `blob_00`... and one unlabelled `blob_test` under `root`; returns the test case.
    static func writeStudies(_ root: URL) throws -> (center: [Int], truth: URL) {
        try FileManager.default.createDirectory(at: root.appendingPathComponent("labels/final"), withIntermediateDirectories: true)
        for n in 0..<6 {
            let b = blob(seed: 100 + UInt64(n))
            let name = String(format: "blob_%02d.nii.gz", n)
            try NIfTI.write(b.image, to: root.appendingPathComponent(name))
            try NIfTI.write(b.label, to: root.appendingPathComponent("labels/final/" + name))
        }
        let t = blob(seed: 7)
        try NIfTI.write(t.image, to: root.appendingPathComponent("blob_test.nii.gz"))
        let truth = root.deletingLastPathComponent().appendingPathComponent("truth.nii.gz")
        try NIfTI.write(t.label, to: truth)
        return (t.center, truth)
    }

    /// Pretrained 2D and 3D weights, trained once per process on the six labelled blobs.
    static let weights: Result<[URL], any Error> = Result {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("deepgrow-weights-" + UUID().uuidString)
        let studies = dir.appendingPathComponent("studies")
        _ = try writeStudies(studies)
        let items = (0..<6).map { n -> DatalistItem in
            let name = String(format: "blob_%02d.nii.gz", n)
            return DatalistItem(image: studies.appendingPathComponent(name).path,
                                label: studies.appendingPathComponent("labels/final/" + name).path)
        }
        // Only the two weight files outlive the training (the process has no teardown hook to remove them).
        defer {
            try? FileManager.default.removeItem(at: studies)
            try? FileManager.default.removeItem(at: dir.appendingPathComponent("truth.nii.gz"))
            for dim in [2, 3] { try? FileManager.default.removeItem(at: dir.appendingPathComponent("run\(dim)")) }
        }
        return try [2, 3].map { dim in
            let d = try JSONValue.parse(Array(definition(dim).utf8)).objectValue ?? [:]
            guard let t = try TrainDefinition(model: "deepgrow_\(dim)d", definition: d) else {
                throw MONAILabelError.invalid("no train section")
            }
            let out = dir.appendingPathComponent("radiology_deepgrow_\(dim)d_bunet.pt")
            _ = try DeepGrowTrainer(definition: t, datalist: items,
                                    paths: TrainPaths(modelDir: dir.appendingPathComponent("run\(dim)"), publishPath: out,
                                                      loadPath: nil),
                                    request: ["device": "cpu"], log: { _ in }).run()
            return out
        }
    }

    /// The live server on a fresh app and studies folder with the pretrained weights installed.
    static func start(_ tmp: TempDir) throws -> (RunningServer, center: [Int], truth: URL) {
        let studies = tmp.url.appendingPathComponent("studies")
        let (center, truth) = try writeStudies(studies)
        let app = tmp.url.appendingPathComponent("app")
        try FileManager.default.createDirectory(at: app.appendingPathComponent("model"), withIntermediateDirectories: true)
        try Data(appJSON.utf8).write(to: app.appendingPathComponent("app.json"))
        for w in try weights.get() {
            try FileManager.default.copyItem(at: w, to: app.appendingPathComponent("model/" + w.lastPathComponent))
        }
        let server = try startJobServer(appDir: app, studies: studies.path, conf: ["models": "deepgrow_2d,deepgrow_3d"])
        return (server, center, truth)
    }

    static func dice(_ a: [Float], _ b: [Float]) -> Double {
        var inter = 0.0, s = 0.0
        for i in 0..<min(a.count, b.count) {
            if a[i] > 0 { s += 1 }
            if b[i] > 0 { s += 1 }
            if a[i] > 0 && b[i] > 0 { inter += 1 }
        }
        return s == 0 ? 1 : 2 * inter / s
    }
}

/// Over real sockets: `POST /train/deepgrow_3d` runs as a child job that starts from the pretrained weights and
/// publishes; `POST /infer/deepgrow_3d?image=...` with a foreground click answers a label overlapping the blob;
/// a click-less request is a 422.
@Test(.tags(.live), .timeLimit(.minutes(14)))
func liveServer_deepgrow3D_trainChildJobPublishesThenClickSegmentsTheBlob() throws {
    let tmp = TempDir()
    let (server, center, truth) = try DeepGrowApp.start(tmp)
    defer { server.stop() }
    let (trained, statsBody) = try curl(server.port, "POST", "/train/deepgrow_3d?run_sync=true",
                                        json: #"{"max_epochs": 1, "val_split": 0.0}"#)
    let stats = try JSONValue.parse(statsBody)
    #expect(trained == 200, "\(stats.compactString())")
    #expect(stats["total_epochs"] == 1)
    #expect(FileManager.default.fileExists(atPath: tmp.url.appendingPathComponent("app/model/deepgrow_3d.pt").path))
    let (infoStatus, infoBody) = try curl(server.port, "GET", "/info/")
    #expect(infoStatus == 200)
    let info = try JSONValue.parse(infoBody)
    #expect(info["models"]?["deepgrow_3d"]?["type"] == "deepgrow")
    #expect(info["models"]?["deepgrow_3d"]?["weights"] == "deepgrow_3d.pt")
    #expect(info["train_stats"]?["deepgrow_3d"]?["total_epochs"] == 1)

    let click = #"params={"foreground": [[\#(center[0]), \#(center[1]), \#(center[2])]], "background": []}"#
    let (inferred, labelBytes) = try curl(server.port, "POST", "/infer/deepgrow_3d?image=blob_test&output=image", form: click)
    #expect(inferred == 200)
    let label = tmp.url.appendingPathComponent("label.nii.gz")
    try Data(labelBytes).write(to: label)
    let mask = try NIfTI.read(label)
    #expect(mask.spatialShape == DeepGrowApp.shape)
    let dice = DeepGrowApp.dice(mask.floats, try NIfTI.read(truth).floats)
    #expect(dice >= 0.6, "Dice \(dice)")

    let (refused, refusal) = try curl(server.port, "POST", "/infer/deepgrow_3d?image=blob_test",
                                      form: #"params={"foreground": []}"#)
    #expect(refused == 422)
    #expect((try JSONValue.parse(refusal))["detail"]?.stringValue?.contains("click") == true)
}

/// The Slicer plugin's DeepGrow click calls (2D and 3D) through the real `monailabel.client` 0.8.5.
@Test(.tags(.live), .needsClientVenv, .timeLimit(.minutes(14)))
func pythonClient_slicerDeepgrowClicks_pass() throws {
    let tmp = TempDir()
    let (server, center, truth) = try DeepGrowApp.start(tmp)
    defer { server.stop() }
    let caseFile = tmp.url.appendingPathComponent("case.json")
    let caseJSON: JSONValue = ["image": "blob_test", "center": .array(center.map { .int($0) }), "truth": .string(truth.path)]
    try Data(caseJSON.compactString().utf8).write(to: caseFile)
    let (status, text) = try runE2EScript("deepgrow_sequence.py", ["http://127.0.0.1:\(server.port)", tmp.url.path, caseFile.path])
    #expect(status == 0, "\(text)")
    #expect(text.contains("DEEPGROW SEQUENCE OK"))
}
