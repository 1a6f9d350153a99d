import Foundation
import Imaging
import Testing
@testable import MONAILabel
@testable import MONAILabelCore

/// A tiny DeepEdit model (8-16-32 DynUNet with residual blocks, 16^3 input, labels a = 1, b = 5) on
/// generated two-blob volumes stored LPS-oriented, so that orientation, resizing and click mapping all run.
enum TwoBlobStudy {
    static let definitionJSON = """
        {"type": "deepedit", "labels": {"a": 1, "b": 5, "background": 0}, "dimension": 3, "description": "tiny",
         "network": {"name": "DynUNet", "spatial_dims": 3, "in_channels": 4, "out_channels": 3,
                     "kernel_size": [3, 3, 3], "strides": [1, 2, 2], "upsample_kernel_size": [2, 2],
                     "filters": [8, 16, 32], "norm": "instance", "res_block": true},
         "pre": [{"name": "Orientationd", "axcodes": "RAS"},
                 {"name": "ScaleIntensityRanged", "a_min": -175, "a_max": 250, "b_min": 0.0, "b_max": 1.0, "clip": true}],
         "spatial_size": [16, 16, 16], "sigma": 2,
         "files": {"published": "deepedit.pt"},
         "train": {"optimizer": "Adam", "lr": 0.003, "spatial_size": [16, 16, 16]}}
        """
    static let shape = [20, 18, 16]
    static let affine = Affine([-2, 0, 0, 40, 0, -2, 0, 36, 0, 0, 2, -16, 0, 0, 0, 1])

    static func definition() throws -> JSONObject {
        guard let o = try JSONValue.parse(definitionJSON).objectValue else { throw MONAILabelError.invalid("bad JSON") }
        return o
    }

    /// Case `index`: blob a (200 HU) and blob b (60 HU), radius 3.5 voxels, on soft tissue at -100 HU with noise;
    /// returns image, label (values 1 and 5) and the blob centres in voxel indices of the stored grid.
    static func generate(_ index: Int) -> (image: Volume, label: Volume, a: [Int], b: [Int]) {
        var rng = SeededGenerator(seed: 1000 + UInt64(index))
        // Opposite ends of the first axis (8 or more voxels apart, so the blobs never touch), random elsewhere.
        func centre(_ x: Int) -> [Int] { [x] + shape.dropFirst().map { 4 + Int(rng.next() % UInt64($0 - 8)) } }
        var a = centre(4 + Int(rng.next() % 3)), b = centre(14 + Int(rng.next() % 2))
        if rng.uniform() < 0.5 { swap(&a, &b) }
        let n = shape.reduce(1, *)
        var image = [Float](repeating: 0, count: n), label = [Float](repeating: 0, count: n)
        for i in 0..<shape[0] { for j in 0..<shape[1] { for k in 0..<shape[2] {
            let idx = (i * shape[1] + j) * shape[2] + k
            func inside(_ c: [Int]) -> Bool {
                let d = [i - c[0], j - c[1], k - c[2]].map { Double($0 * $0) }.reduce(0, +)
                return d <= 3.5 * 3.5
            }
            var hu = -100.0
            if inside(a) {
                hu = 200
                label[idx] = 1
            } else if inside(b) {
                hu = 60
                label[idx] = 5
            }
            image[idx] = Float(hu + (rng.uniform() - 0.5) * 20)
        } } }
        return (Volume(spatialShape: shape, data: .float32(image), affine: affine),
                Volume(spatialShape: shape, data: .float32(label), affine: affine), a, b)
    }

    /// Writes cases `0..<count` as `<dir>/case_NN.nii.gz` with labels under `labels/final/`.
    static func write(to dir: URL, count: Int) throws -> [DatalistItem] {
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("labels/final"), withIntermediateDirectories: true)
        return try (0..<count).map { i in
            let c = generate(i)
            let name = String(format: "case_%02d.nii.gz", i)
            let image = dir.appendingPathComponent(name), label = dir.appendingPathComponent("labels/final/" + name)
            try NIfTI.write(c.image, to: image)
            try NIfTI.write(c.label, to: label, dtype: .uint8)
            return DatalistItem(image: image.path, label: label.path)
        }
    }

    static func dice(_ result: [Float], _ value: Float, _ truth: [Float], _ truthValue: Float) -> Double {
        var inter = 0, p = 0, g = 0
        for i in result.indices {
            let x = result[i] == value, y = truth[i] == truthValue
            if x { p += 1 }
            if y { g += 1 }
            if x && y { inter += 1 }
        }
        return p + g == 0 ? 0 : 2 * Double(inter) / Double(p + g)
    }
}

/// Trains the tiny model for a few seconds with simulated clicks, then checks both modes of the infer task on
/// an unseen case: clicks on blob a give label a over that blob, and no clicks give an automatic segmentation
/// of both blobs.
@Test(.tags(.unit), .timeLimit(.minutes(14))) func deepEdit_brieflyTrained_clicksAndAutomaticModeSegmentTheBlobs() throws {
    let tmp = TempDir()
    let def = try TwoBlobStudy.definition()
    let datalist = try TwoBlobStudy.write(to: tmp.url.appendingPathComponent("studies"), count: 8)
    let modelDir = tmp.url.appendingPathComponent("model")
    let published = modelDir.appendingPathComponent("deepedit.pt")
    let trainDef = try #require(try TrainDefinition(model: "deepedit", definition: def))
    var lines: [String] = []
    let stats = try DeepEditTrainer(
        definition: trainDef, model: def, datalist: datalist,
        paths: TrainPaths(modelDir: modelDir.appendingPathComponent("deepedit"), publishPath: published, loadPath: nil),
        request: ["max_epochs": 25, "val_split": 0.125, "device": "cpu", "seed": 1], log: { lines.append($0) }
    ).run()
    #expect(FileManager.default.fileExists(atPath: published.path), "training published no model")
    #expect(stats["train"]?["key_metric_name"] == "train_dice")
    #expect((stats["best_metric"]?.doubleValue ?? 0) > 0.5, "\(lines.suffix(4))")

    let task = try DeepEditTask(name: "deepedit", definition: def, modelDir: modelDir)
    #expect(task.weights == "deepedit.pt")
    let unseen = TwoBlobStudy.generate(500)
    let image = tmp.url.appendingPathComponent("unseen.nii.gz")
    try NIfTI.write(unseen.image, to: image)
    let truth = unseen.label.floats

    let clicked = try task.infer(InferRequest(imagePath: image.path, params: [
        "a": .array([.array(unseen.a.map { .int($0) })]), "b": [], "background": [], "label": "a",
        "result_extension": ".nii.gz",
    ]))
    let clickedFile = try #require(clicked.file)
    defer { try? FileManager.default.removeItem(at: clickedFile) }
    let clickedLabel = try ImageIO.load(clickedFile)
    #expect(clickedLabel.spatialShape == TwoBlobStudy.shape)
    #expect(clickedLabel.affine == TwoBlobStudy.affine)
    let diceA = TwoBlobStudy.dice(clickedLabel.floats, 1, truth, 1)
    #expect(diceA >= 0.6, "label a over the clicked blob: Dice \(diceA)")
    #expect(clicked.json["label_names"] == def["labels"])
    #expect(clicked.json["latencies"]?["transform"]?["pre"]?["AddGuidanceSignalDeepEditd"] != nil)

    let automatic = try task.infer(InferRequest(imagePath: image.path, params: ["restore_label_idx": true]))
    let autoFile = try #require(automatic.file)
    defer { try? FileManager.default.removeItem(at: autoFile) }
    let autoLabel = try ImageIO.load(autoFile).floats
    #expect(automatic.json["latencies"]?["transform"]?["pre"]?["DiscardAddGuidanced"] != nil)
    // restore_label_idx gives the label map's values: b is 5 here.
    let autoA = TwoBlobStudy.dice(autoLabel, 1, truth, 1), autoB = TwoBlobStudy.dice(autoLabel, 5, truth, 5)
    #expect(autoA >= 0.6 && autoB >= 0.6, "automatic mode: Dice a \(autoA), b \(autoB)")
}

@Test(.tags(.unit)) func deepEditTask_channelsNotMatchingLabels_isRefusedAtStartUp() throws {
    var def = try TwoBlobStudy.definition()
    def["labels"] = ["a": 1, "background": 0]
    #expect(throws: MONAILabelError.self) { try DeepEditTask(name: "d", definition: def, modelDir: URL(fileURLWithPath: "/nonexistent")) }
}
