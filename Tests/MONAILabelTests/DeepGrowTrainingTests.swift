import Foundation
import Testing
import Imaging
@testable import MONAILabelCore
@testable import MONAILabel

/// CT-like blob volumes for DeepGrow: soft tissue with noise and one bright ellipsoid (the label) at a random
/// place, 1 mm voxels, so that a model trained for seconds can learn "the bright region around the click".
enum BlobStudy {
    static let shape = [32, 32, 16]

    struct Case {
        var image: Volume
        var label: Volume
        var center: [Int]
    }

    static func make(seed: UInt64) -> Case {
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
                    let idx = (i * ny + j) * nz + k
                    label[idx] = d <= 1 ? 1 : 0
                    image[idx] = Int16((d <= 1 ? 300 : 20) + 15 * rng.gaussian())
                }
            }
        }
        let affine = Affine([1, 0, 0, -16, 0, 1, 0, -16, 0, 0, 1, -8, 0, 0, 0, 1])
        return Case(image: Volume(spatialShape: shape, data: .int16(image), affine: affine),
                    label: Volume(spatialShape: shape, data: .uint8(label), affine: affine),
                    center: c.map { Int($0.rounded()) })
    }

    /// Writes `count` labelled cases as `blob_NN.nii.gz` plus `labels/final/blob_NN.nii.gz` under `root`.
    static func write(to root: URL, count: Int, seed: UInt64 = 100) throws -> [DatalistItem] {
        try FileManager.default.createDirectory(at: root.appendingPathComponent("labels/final"),
                                                withIntermediateDirectories: true)
        return try (0..<count).map { n in
            let c = make(seed: seed + UInt64(n))
            let name = String(format: "blob_%02d.nii.gz", n)
            let image = root.appendingPathComponent(name), label = root.appendingPathComponent("labels/final/" + name)
            try NIfTI.write(c.image, to: image)
            try NIfTI.write(c.label, to: label)
            return DatalistItem(image: image.path, label: label.path)
        }
    }

    static func dice(_ a: [Float], _ b: [Float]) -> Double {
        var inter = 0.0, sa = 0.0, sb = 0.0
        for i in 0..<a.count {
            let x = a[i] > 0, y = b[i] > 0
            if x { sa += 1 }
            if y { sb += 1 }
            if x && y { inter += 1 }
        }
        return sa + sb == 0 ? 1 : 2 * inter / (sa + sb)
    }
}

/// A tiny DeepGrow model definition (BasicUNet with small features) as `app.json` writes one.
func deepGrowDefinition(dimension: Int, maxEpochs: Int) throws -> JSONObject {
    let sizes = dimension == 3 ? "[16, 32, 32]" : "[32, 32]"
    let text = """
        {"type": "deepgrow", "dimension": \(dimension), "labels": ["spleen"], "description": "tiny deepgrow",
         "network": {"name": "BasicUNet", "spatial_dims": \(dimension), "in_channels": 3, "out_channels": 1,
                     "features": [8, 8, 16, 16, 32, 8]},
         "spatial_size": [32, 32], "model_size": \(sizes),
         "files": {"pretrained": "pretrained_deepgrow.pt", "published": "deepgrow.pt"},
         "train": {"description": "Train Deepgrow model", "optimizer": "Adam", "lr": 0.03, "weight_decay": 0,
                   "roi_size": \(sizes), "max_train_interactions": 2, "max_val_interactions": 2, "val_interval": 1,
                   "config": {"max_epochs": \(maxEpochs), "train_batch_size": \(dimension == 3 ? 2 : 16),
                              "val_split": 0.0, "seed": 1}}}
        """
    return try #require(try JSONValue.parse(Array(text.utf8)).objectValue)
}

/// Trains the tiny model on `count` blob cases in-process and returns the task serving the published weights.
func trainedDeepGrow(_ tmp: TempDir, dimension: Int, maxEpochs: Int, count: Int) throws -> (DeepGrowTask, [String]) {
    let definition = try deepGrowDefinition(dimension: dimension, maxEpochs: maxEpochs)
    let modelDir = tmp.url.appendingPathComponent("model")
    let items = try BlobStudy.write(to: tmp.url.appendingPathComponent("studies"), count: count)
    let train = try #require(try TrainDefinition(model: "deepgrow", definition: definition))
    var lines: [String] = []
    let stats = try DeepGrowTrainer(
        definition: train, datalist: items,
        paths: TrainPaths(modelDir: modelDir.appendingPathComponent("deepgrow"),
                          publishPath: modelDir.appendingPathComponent("deepgrow.pt"), loadPath: nil),
        request: ["device": "cpu"], log: { lines.append($0) }
    ).run()
    #expect(stats["total_epochs"]?.intValue == maxEpochs)
    #expect(FileManager.default.fileExists(atPath: modelDir.appendingPathComponent("deepgrow.pt").path))
    let task = try DeepGrowTask(name: "deepgrow", definition: definition, modelDir: modelDir)
    #expect(task.weights == "deepgrow.pt")
    return (task, lines)
}

/// Runs `task` on the unseen blob case `seed` with the params made for it; the case, the result and its label file
/// (the caller removes it).
private func inferOnUnseenBlob(_ task: DeepGrowTask, _ tmp: TempDir, seed: UInt64, params: (BlobStudy.Case) -> JSONObject)
    throws -> (test: BlobStudy.Case, result: InferResult, file: URL)
{
    let test = BlobStudy.make(seed: seed)
    let image = tmp.url.appendingPathComponent("unseen.nii.gz")
    try NIfTI.write(test.image, to: image)
    let result = try task.infer(InferRequest(imagePath: image.path, params: params(test)))
    return (test, result, try #require(result.file))
}

@Test(.tags(.unit), .timeLimit(.minutes(14)))
func deepGrow3D_clickOnABlob_withABrieflyTrainedModel_returnsAMaskOverlappingTheBlob() throws {
    let tmp = TempDir()
    let (task, log) = try trainedDeepGrow(tmp, dimension: 3, maxEpochs: 8, count: 6)
    // An unseen case: the click is the blob's centre, in the image's own [i, j, k] voxel indices.
    let (test, result, file) = try inferOnUnseenBlob(task, tmp, seed: 7) { test in
        ["foreground": .array([.array(test.center.map { .int($0) })]), "background": [],
         "result_extension": ".nii.gz", "result_dtype": "uint8"]
    }
    defer { try? FileManager.default.removeItem(at: file) }
    let mask = try NIfTI.read(file)
    #expect(mask.spatialShape == BlobStudy.shape)
    #expect(mask.affine == test.image.affine)
    let dice = BlobStudy.dice(mask.floats, test.label.floats)
    #expect(dice >= 0.7, "Dice \(dice); training log tail: \(log.suffix(3))")
    #expect(result.json["label_names"] == ["spleen"])
    let latencies = try #require(result.json["latencies"]?.objectValue)
    #expect(latencies["transform"]?["pre"]?["AddGuidanceSignald"] != nil)
    #expect(latencies["transform"]?["post"]?["RestoreLabeld"] != nil)
}

@Test(.tags(.unit), .timeLimit(.minutes(14)))
func deepGrow2D_clickOnASlice_fillsOnlyThatSliceAndOverlapsTheBlobThere() throws {
    let tmp = TempDir()
    let (task, log) = try trainedDeepGrow(tmp, dimension: 2, maxEpochs: 5, count: 6)
    let (test, _, file) = try inferOnUnseenBlob(task, tmp, seed: 8) { test in
        let k = test.center[2]
        return ["foreground": .array([.array(test.center.map { .int($0) })]), "background": [[0, 0, .int(k)]],
                "slice": .int(k), "result_extension": ".nrrd"]
    }
    let k = test.center[2]
    defer { try? FileManager.default.removeItem(at: file) }
    let mask = try ImageIO.load(file).floats
    let truth = test.label.floats
    let nz = BlobStudy.shape[2]
    var onSlice: [Float] = [], truthSlice: [Float] = [], offSlice = 0
    for idx in 0..<mask.count {
        if idx % nz == k {
            onSlice.append(mask[idx])
            truthSlice.append(truth[idx])
        } else if mask[idx] > 0 {
            offSlice += 1
        }
    }
    #expect(offSlice == 0)
    let dice = BlobStudy.dice(onSlice, truthSlice)
    #expect(dice >= 0.7, "Dice \(dice) on slice \(k); training log tail: \(log.suffix(3))")
}

@Test(.tags(.unit)) func deepGrowTask_withoutClicks_isInvalidInputNotACrash() throws {
    let tmp = TempDir()
    let definition = try deepGrowDefinition(dimension: 3, maxEpochs: 1)
    let task = try DeepGrowTask(name: "deepgrow", definition: definition, modelDir: tmp.url)
    let image = tmp.url.appendingPathComponent("img.nii.gz")
    try NIfTI.write(BlobStudy.make(seed: 1).image, to: image)
    for params: JSONObject in [[:], ["foreground": [], "background": []], ["foreground": [[1, 2]]],
                               ["foreground": "[[1, 2, 3]]"], ["foreground": [[40, 1, 1]]]] {
        do {
            _ = try task.infer(InferRequest(imagePath: image.path, params: params))
            Issue.record("\(params) was accepted")
        } catch let e as MONAILabelError {
            #expect(e.kind == .invalidInput, "\(params): \(e)")
        }
    }
}

@Test(.tags(.unit)) func deepGrowTask_badDefinition_failsAtStartUp() throws {
    var d = try deepGrowDefinition(dimension: 3, maxEpochs: 1)
    d["network"] = ["name": "BasicUNet", "spatial_dims": 3, "in_channels": 1, "out_channels": 2]
    #expect(throws: MONAILabelError.self) { try DeepGrowTask(name: "x", definition: d, modelDir: URL(fileURLWithPath: "/tmp")) }
    var e = try deepGrowDefinition(dimension: 3, maxEpochs: 1)
    e["model_size"] = [32, 32]
    #expect(throws: MONAILabelError.self) { try DeepGrowTask(name: "x", definition: e, modelDir: URL(fileURLWithPath: "/tmp")) }
}

@Test(.tags(.unit)) func radiologyApp_confModelsDeepgrow_listsDeepgrowTasksAndTrainersAsUpstream() throws {
    let tmp = TempDir()
    let app = try makeApp(tmp, conf: ["models": "deepgrow_2d,deepgrow_3d"], factory: defaultInferTaskFactory)
    let info = app.info()
    // No segmentation model is loaded, so ISeg+GraphCut (which refines one) is not offered.
    #expect(info["models"]?.objectValue?.keys == ["deepgrow_2d", "deepgrow_3d", "Histogram+GraphCut", "Scribbles+GeoS"])
    for (name, dim) in [("deepgrow_2d", 2), ("deepgrow_3d", 3)] {
        let m = try #require(info["models"]?[name])
        #expect(m["type"] == "deepgrow")
        #expect(m["dimension"] == .int(dim))
        #expect(m["labels"]?.arrayValue?.count == 7)
        #expect(m["description"] == "A pre-trained DeepGrow model based on UNET")
        #expect(m["config"]?.objectValue?.keys == ["device"])
        #expect(m["weights"] == "untrained (random initialisation)")
        let t = try #require(info["trainers"]?[name])
        #expect(t["description"] == .string("Train \(dim)D Deepgrow model"))
        #expect(t["config"]?["max_epochs"] == .int(dim == 2 ? 10 : 50))
    }
    #expect(info["trainers"]?["deepgrow_2d"]?["config"]?["train_batch_size"] == 16)
    let task = try #require(app.inferTasks["deepgrow_3d"] as? DeepGrowTask)
    #expect(task.modelPaths.map(\.lastPathComponent) == ["radiology_deepgrow_3d_bunet.pt", "deepgrow_3d.pt"])
    #expect(task.modelSize == [128, 192, 192])
    #expect(task.spatialSize == [256, 256])
}

/// MONAI-written BasicUNet weights in both checkpoint shapes upstream uses: a plain state dict (the pretrained
/// file) and `{"model": state_dict, "epoch": 7}` (what training publishes); the same weights give the same mask.
@Test(.tags(.unit)) func deepGrowTask_loadsMONAIStateDictAndCheckpointWeights() throws {
    let tmp = TempDir()
    let fixtures = Fixtures.shared.appendingPathComponent("fixtures/monai")
    let plain = fixtures.appendingPathComponent("basicunet_deepgrow_3d.small.pt")
    let checkpoint = fixtures.appendingPathComponent("basicunet_deepgrow_3d.small.ckpt.pt")
    try #require(FileManager.default.fileExists(atPath: plain.path), "missing fixture \(plain.path)")
    try #require(FileManager.default.fileExists(atPath: checkpoint.path), "missing fixture \(checkpoint.path)")
    var definition = try deepGrowDefinition(dimension: 3, maxEpochs: 1)
    definition["network"] = ["name": "BasicUNet", "spatial_dims": 3, "in_channels": 3, "out_channels": 1,
                             "features": [4, 8, 8, 16, 16, 4]]
    let modelDir = tmp.url.appendingPathComponent("model")
    try FileManager.default.createDirectory(at: modelDir, withIntermediateDirectories: true)
    try FileManager.default.copyItem(at: plain, to: modelDir.appendingPathComponent("pretrained_deepgrow.pt"))
    try FileManager.default.copyItem(at: checkpoint, to: modelDir.appendingPathComponent("deepgrow.pt"))
    let task = try DeepGrowTask(name: "deepgrow", definition: definition, modelDir: modelDir)
    let test = BlobStudy.make(seed: 3)
    let image = tmp.url.appendingPathComponent("img.nii.gz")
    try NIfTI.write(test.image, to: image)
    let params: JSONObject = ["foreground": .array([.array(test.center.map { .int($0) })]), "result_extension": ".nii.gz"]
    func mask() throws -> [Float] {
        let r = try task.infer(InferRequest(imagePath: image.path, params: params))
        let file = try #require(r.file)
        defer { try? FileManager.default.removeItem(at: file) }
        return try NIfTI.read(file).floats
    }
    #expect(task.weights == "deepgrow.pt")
    let fromCheckpoint = try mask()
    try FileManager.default.removeItem(at: modelDir.appendingPathComponent("deepgrow.pt"))
    #expect(task.weights == "pretrained_deepgrow.pt")
    let fromStateDict = try mask()
    #expect(fromCheckpoint.count == BlobStudy.shape.reduce(1, *))
    #expect(fromCheckpoint == fromStateDict)
}
