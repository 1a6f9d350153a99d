import Foundation
import Testing
import Imaging
@testable import MONAILabel

/// MONAI 1.4's numbers for MONAI Label's DeepGrow pre- and post-processing on a small image with anisotropic
/// voxels, printed by scripts/fixtures/deepgrow_monai_reference.py (same image, clicks and sizes).
private struct MONAIReference {
    var dimension: Int
    var modelSize: [Int]
    var foreground: [[Int]]
    var background: [[Int]]
    var slice: Int?
    var points: Guidance
    var guidance: Guidance
    var box: SpatialBox
    var preCropShape: [Int]
    var channelSums: [Double]
    var samples: [Double]
    var predCount: Int
    var restoredCount: Int
    var restoredIndexSum: [Int]
}

private let references = [
    MONAIReference(
        dimension: 3, modelSize: [4, 8, 8], foreground: [[5, 4, 3]], background: [[10, 1, 1]], slice: nil,
        points: Guidance(positive: [[3, 7, 7]], negative: [[1, 15, 1]]),
        guidance: Guidance(positive: [[2, 3, 2]], negative: [[0, 6, 0]]),
        box: SpatialBox(start: [0, 0, 0], end: [6, 18, 19]), preCropShape: [6, 18, 19],
        channelSums: [26.64437869208632, 72.57534656021744, 33.589084442292915],
        samples: [0.08963342756032944, 0.11397481709718704, 0.022336704656481743, -0.01489128079265356,
                  0.03665519133210182, 0.16838490962982178, 0.3295593559741974, 0.4776177704334259,
                  0.2003733068704605, 0.2003733068704605, 0.4776177704334259, 0.14098885655403137,
                  0.010758788324892521, 0.8847764730453491, 0.37553682923316956, 0.04683705419301987],
        predCount: 204, restoredCount: 604, restoredIndexSum: [3256, 2280, 1538]),
    MONAIReference(
        dimension: 2, modelSize: [8, 8], foreground: [[5, 4, 3], [2, 2, 1]], background: [[9, 8, 3]], slice: 3,
        points: Guidance(positive: [[7, 7]], negative: [[13, 15]]),
        guidance: Guidance(positive: [[3, 2]], negative: [[5, 6]]),
        box: SpatialBox(start: [0, 0], end: [18, 19]), preCropShape: [18, 19],
        channelSums: [5.388602139486466, 21.395061250776052, 17.64913112227805],
        samples: [-0.010595695115625858, -0.07598322629928589, 0.13831612467765808, 0.026155097410082817,
                  -0.2368270307779312, 0.13115692138671875, 0.37139254808425903, 0.5391628742218018,
                  0.5391628742218018, 0.37139254808425903, 0.08033307641744614, 0.028143852949142456,
                  0.003475871402770281, 0.3751870393753052, 0.011607720516622066, 0.541944682598114],
        predCount: 44, restoredCount: 87, restoredIndexSum: [483, 351, 261]),
]

/// The script's image: `[12, 10, 6]`, voxels 1.5 x 2 x 3 mm, values `(7i + 13j + 29k) mod 50 * 10`.
private func referenceImage() -> Volume {
    let shape = [12, 10, 6]
    var x = [Float](repeating: 0, count: 720)
    for i in 0..<12 { for j in 0..<10 { for k in 0..<6 { x[(i * 10 + j) * 6 + k] = Float((i * 7 + j * 13 + k * 29) % 50 * 10) } } }
    return Volume(spatialShape: shape, data: .float32(x),
                  affine: Affine([1.5, 0, 0, -9, 0, 2, 0, 4, 0, 0, 3, 1.5, 0, 0, 0, 1]))
}

@Test(.tags(.unit), arguments: [0, 1])
func deepGrowPreAndPost_matchMONAI(_ n: Int) throws {
    let ref = references[n]
    let dims = ref.dimension
    let text = """
        {"type": "deepgrow", "dimension": \(dims), "labels": ["spleen"],
         "network": {"name": "BasicUNet", "spatial_dims": \(dims), "in_channels": 3, "out_channels": 1,
                     "features": [4, 4, 4, 4, 4, 4]},
         "spatial_size": [8, 8], "model_size": \(ref.modelSize)}
        """
    let definition = try #require(try JSONValue.parse(Array(text.utf8)).objectValue)
    let task = try DeepGrowTask(name: "dg", definition: definition, modelDir: URL(fileURLWithPath: "/nonexistent"))
    var timings = Timings()
    let p = try task.prepare(referenceImage(), foreground: ref.foreground, background: ref.background, slice: ref.slice,
                             timings: &timings)
    #expect(p.preCropShape == ref.preCropShape, "in-plane Spacingd with depth as channels")
    #expect(p.points == ref.points, "AddGuidanceFromPointsd")
    #expect(p.box == ref.box, "SpatialCropGuidanced")
    #expect(p.guidance == ref.guidance, "ResizeGuidanced")
    let per = ref.modelSize.reduce(1, *)
    #expect(p.input.count == 3 * per)
    for c in 0..<3 {
        let sum = p.input[(c * per)..<((c + 1) * per)].reduce(0.0) { $0 + Double($1) }
        #expect(abs(sum - ref.channelSums[c]) < 1e-3 * max(1, abs(ref.channelSums[c])), "channel \(c): \(sum)")
    }
    let step = max(1, p.input.count / 16)
    for (s, expected) in ref.samples.enumerated() {
        #expect(abs(Double(p.input[s * step]) - expected) < 1e-4, "input[\(s * step)] = \(p.input[s * step]), MONAI \(expected)")
    }

    // The script's stand-in prediction, restored onto the loaded [i, j, k] grid.
    let pred = (0..<per).map { i -> Float in p.input[i] > -0.1 && p.input[per + i] > 0.05 ? 1 : 0 }
    #expect(Int(pred.reduce(0, +)) == ref.predCount)
    let restored = try DeepGrow.restoreLabel(pred, modelShape: ref.modelSize, box: p.box, preCropShape: p.preCropShape,
                                             originalShape: [12, 10, 6], slice: p.slice)
    var count = 0, sums = [0, 0, 0]
    for (idx, v) in restored.enumerated() where v > 0 {
        count += 1
        sums[0] += idx / 60
        sums[1] += (idx / 6) % 10
        sums[2] += idx % 6
    }
    #expect(count == ref.restoredCount, "RestoreLabeld")
    #expect(sums == ref.restoredIndexSum, "RestoreLabeld + AsChannelLastd")
}
