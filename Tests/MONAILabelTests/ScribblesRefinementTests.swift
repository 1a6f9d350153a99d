import Foundation
import Imaging
import Testing
@testable import MONAILabel
import MONAILabelCore

/// A stand-in model whose "prediction" is a given probability map on the image grid, counting its calls.
private final class FixedProbability: ForegroundProbabilitySource, @unchecked Sendable {
    let name: String
    let labels: JSONValue
    let weightsVersion = "v1"
    let map: Volume
    private let lock = NSLock()
    private var count = 0
    var calls: Int {
        lock.lock()
        defer { lock.unlock() }
        return count
    }

    init(_ map: Volume, name: String = "fixed", labels: JSONValue = ["spleen": 1]) {
        self.map = map
        self.name = name
        self.labels = labels
    }

    func foregroundProbability(imagePath: String, label: String, params: JSONObject) throws -> Volume {
        lock.lock()
        count += 1
        lock.unlock()
        guard ModelLabels.names(labels).contains(label) else { throw MONAILabelError.invalid("no label \(label)") }
        return map
    }
}

/// The spleen case with a model map that misses the spleen's upper half (k > centre), and the strokes a user
/// paints over that half to say so: foreground rows every third line, inset one voxel from the edge.
private struct WrongModelCase {
    let c: ScribbledCase
    let map: Volume
    let correction: URL
    let missing: [Int]

    init(in dir: URL) throws {
        c = try ScribbledCase(in: dir)
        let shape = c.study.shape
        let (nx, ny, nz) = (shape[0], shape[1], shape[2])
        func at(_ i: Int, _ j: Int, _ k: Int) -> Int { (i * ny + j) * nz + k }
        let label = c.study.label
        var ks: [Int] = []
        for i in 0..<nx { for j in 0..<ny { for k in 0..<nz where label[at(i, j, k)] != 0 { ks.append(k) } } }
        let centre = ks.reduce(0, +) / max(1, ks.count)
        var p = [Float](repeating: 0.05, count: label.count)
        var missing: [Int] = []
        var strokes = [UInt8](repeating: 0, count: label.count)
        func inside(_ i: Int, _ j: Int, _ k: Int) -> Bool {
            i >= 0 && j >= 0 && i < nx && j < ny && label[at(i, j, k)] != 0
        }
        for i in 0..<nx { for j in 0..<ny { for k in 0..<nz where label[at(i, j, k)] != 0 {
            if k > centre {
                p[at(i, j, k)] = 0.1
                missing.append(at(i, j, k))
                let core = inside(i - 1, j, k) && inside(i + 1, j, k) && inside(i, j - 1, k) && inside(i, j + 1, k)
                if j % 3 == 0 && core { strokes[at(i, j, k)] = 3 }
            } else {
                p[at(i, j, k)] = 0.9
            }
        } } }
        self.missing = missing
        let affine = Affine(c.study.affine)
        map = Volume(spatialShape: shape, data: .float32(p), affine: affine)
        correction = dir.appendingPathComponent("correction.nii.gz")
        try NIfTI.write(Volume(spatialShape: shape, data: .uint8(strokes), affine: affine), to: correction)
    }
}

@Test(.tags(.unit)) func isegGraphCut_scribblesOverAWrongPrediction_correctIt() throws {
    let tmp = TempDir()
    let w = try WrongModelCase(in: tmp.url)
    let truth = w.c.study.label
    let modelSays = w.map.floats.map { $0 > 0.5 ? Float(1) : 0 }
    let before = dice(modelSays, truth)
    #expect(before < 0.8, "the model map is meant to be wrong (Dice \(before))")

    let task = ISegGraphCutTask(model: FixedProbability(w.map))
    let (alone, _) = try runScribbles(task, image: w.c.imageURL, scribbles: nil)
    let smoothedOnly = dice(alone.floats, truth)
    #expect(smoothedOnly < 0.8, "GraphCut alone must not invent the missing half (Dice \(smoothedOnly))")

    let (refined, json) = try runScribbles(task, image: w.c.imageURL, scribbles: w.correction)
    let after = dice(refined.floats, truth)
    #expect(after >= 0.9, "Dice \(after) after the correction (model alone \(before))")
    let v = refined.floats
    let recovered = Double(w.missing.filter { v[$0] != 0 }.count) / Double(w.missing.count)
    #expect(recovered >= 0.85, "\(recovered) of the missing half recovered")
    #expect(json["label_names"] == ["spleen": 1])
    #expect(json["latencies"]?["transform"]?["post"]?["MakeISegUnaryd"] != nil)
}

@Test(.tags(.unit)) func isegGraphCut_rightishPrediction_withScribbles_segmentsTheSpleen() throws {
    let tmp = TempDir()
    let c = try ScribbledCase(in: tmp.url)
    // An unsure model: 0.65 inside, 0.35 outside, with noise that flips single voxels.
    var rng = SplitMix64(seed: 7)
    let p = c.study.label.map { ($0 != 0 ? Float(0.65) : 0.35) + Float.random(in: -0.2...0.2, using: &rng) }
    let map = Volume(spatialShape: c.study.shape, data: .float32(p), affine: Affine(c.study.affine))
    let (result, _) = try runScribbles(ISegGraphCutTask(model: FixedProbability(map)), image: c.imageURL, scribbles: c.scribblesURL)
    #expect(dice(result.floats, c.study.label) >= 0.9)
}

@Test(.tags(.unit)) func isegGraphCut_repeatedUpdatesOnOneImage_runTheModelOnce() throws {
    let tmp = TempDir()
    let w = try WrongModelCase(in: tmp.url)
    let model = FixedProbability(w.map)
    let task = ISegGraphCutTask(model: model)
    _ = try runScribbles(task, image: w.c.imageURL, scribbles: w.correction)
    _ = try runScribbles(task, image: w.c.imageURL, scribbles: w.c.scribblesURL, ["lamda": 2.0])
    #expect(model.calls == 1)
    // A label the model does not know falls back to its first label; an ROI still cuts the region.
    let (roi, _) = try runScribbles(task, image: w.c.imageURL, scribbles: w.correction,
                              ["selected_label_name": "foreground_scribbles", "roi": [0, 64, 0, 64, 0, 12]])
    #expect(model.calls == 1)
    let v = roi.floats
    #expect((0..<v.count).filter { $0 % 32 >= 12 }.allSatisfy { v[$0] == 0 })
}

@Test(.tags(.unit)) func isegGraphCut_info_namesTheModel() {
    let map = Volume(spatialShape: [2, 2, 2], data: .float32(Array(repeating: 0.5, count: 8)), affine: .identity)
    let task = ISegGraphCutTask(model: FixedProbability(map))
    #expect(task.name == "ISeg+GraphCut")
    #expect(task.info["type"] == "scribbles")
    #expect(task.info["labels"] == ["spleen": 1])
    #expect(task.info["config"]?.objectValue?.keys == ["lamda", "sigma", "device"])
    #expect(task.description.contains("fixed"))
}

@Test(.tags(.unit)) func segmentationTask_foregroundProbability_isTheSoftmaxOfMONAILogits() throws {
    let tmp = TempDir()
    let task = try smallSpleenTask(tmp)
    let p = try task.foregroundProbability(
        imagePath: pipelineFixture("ct_lps_aniso.nii.gz").path, label: "spleen", params: [:])
    let logits = try NPYArray.read(pipelineFixture("ct_lps_aniso.logits.npy"))
    #expect(p.spatialShape == Array(logits.shape.dropFirst()))
    let l = logits.floats, n = p.voxelCount
    try #require(l.count == 2 * n)
    let ours = p.floats
    var maxDiff: Float = 0
    for i in 0..<n {
        let expected = 1 / (1 + exp(l[i] - l[n + i]))
        maxDiff = max(maxDiff, abs(ours[i] - expected))
    }
    #expect(maxDiff <= 1e-3, "max probability difference \(maxDiff)")
    #expect(throws: MONAILabelError.self) {
        try task.foregroundProbability(imagePath: pipelineFixture("ct_lps_aniso.nii.gz").path, label: "liver", params: [:])
    }
}

@Test(.tags(.unit)) func graphCut_scribbles_stayHardUnderStrongSmoothing() throws {
    // Everything says background, a single foreground stroke says otherwise, and λ is large enough that
    // ε-probabilities alone (−ln ε ≈ 15.9) would lose to the n-links: the stroke must still be foreground.
    let shape = [5, 5, 5]
    let image = [Float](repeating: 0.5, count: 125)
    var scribbles = [Float](repeating: 0, count: 125)
    scribbles[62] = 3
    scribbles[0] = 2
    let ids = try ScribbleIDs(labelInfo: nil, background: 2, foreground: 3)
    let p = ScribblesPipeline.isegUnary(foreground: [Float](repeating: 0.01, count: 125), scribbles: scribbles, ids: ids)
    let cut = try ScribblesPipeline.graphCut(
        image, shape: shape, foreground: p, scribbles: scribbles, ids: ids, lamda: 100, sigma: 0.1)
    #expect(cut[62] == 1)
    #expect(cut[0] == 0)
    #expect(cut.reduce(0) { $0 + Int($1) } == 1)
}

@Test(.tags(.unit)) func isegGraphCut_selectedLabel_picksTheModelThatSegmentsIt() throws {
    let tmp = TempDir()
    let c = try ScribbledCase(in: tmp.url)
    let truth = Volume(spatialShape: c.study.shape, data: .float32(c.study.label.map { $0 != 0 ? 0.9 : 0.1 }),
                       affine: Affine(c.study.affine))
    let empty = Volume(spatialShape: c.study.shape, data: .float32(Array(repeating: 0.1, count: c.study.label.count)),
                       affine: Affine(c.study.affine))
    let spleen = FixedProbability(truth, name: "spleen_model")
    let organs = FixedProbability(empty, name: "organs", labels: ["liver": 1, "kidney": 2])
    let task = ISegGraphCutTask(first: spleen, others: [organs])
    #expect(task.description.contains("spleen_model, organs"))
    let (liver, json) = try runScribbles(task, image: c.imageURL, scribbles: nil, ["selected_label_name": "liver"])
    #expect(organs.calls == 1 && spleen.calls == 0)
    #expect(liver.floats.allSatisfy { $0 == 0 })
    #expect(json["label_names"] == ["liver": 1, "kidney": 2])
    // A scribbles segment is no model label: the first model's first label is refined.
    let (fallback, _) = try runScribbles(task, image: c.imageURL, scribbles: nil, ["selected_label_name": "foreground_scribbles"])
    #expect(spleen.calls == 1)
    #expect(dice(fallback.floats, c.study.label) >= 0.9)
}
