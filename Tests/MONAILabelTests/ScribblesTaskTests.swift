import Foundation
import Imaging
import Testing
@testable import MONAILabel

/// A synthetic CT with a spleen and scribbles drawn from its known mask: foreground strokes through the
/// spleen's core, background strokes across the body and air that keep 3 voxels away from the spleen.
struct ScribbledCase {
    let study: SyntheticCase
    let imageURL: URL
    let scribblesURL: URL

    init(in dir: URL, shape: [Int] = [64, 64, 32], spacing: [Double] = [2.5, 2.5, 5.0], background: UInt8 = 2,
         foreground: UInt8 = 3) throws {
        let c = SyntheticCase.generate(index: 1, shape: shape, spacing: spacing)
        study = c
        let (nx, ny, nz) = (shape[0], shape[1], shape[2])
        func at(_ i: Int, _ j: Int, _ k: Int) -> Int { (i * ny + j) * nz + k }
        func mask(_ i: Int, _ j: Int, _ k: Int) -> Bool {
            i >= 0 && j >= 0 && k >= 0 && i < nx && j < ny && k < nz && c.label[at(i, j, k)] != 0
        }
        /// Every voxel within `r` (in-plane) and one slice of the spleen, or none of them.
        func near(_ i: Int, _ j: Int, _ k: Int, _ r: Int, slices: Int = 1) -> (any: Bool, all: Bool) {
            var any = false, all = true
            for di in -r...r { for dj in -r...r { for dk in -slices...slices {
                let m = mask(i + di, j + dj, k + dk)
                any = any || m
                all = all && m
            } } }
            return (any, all)
        }
        var sumI = 0, sumJ = 0, sumK = 0, count = 0
        for i in 0..<nx { for j in 0..<ny { for k in 0..<nz where mask(i, j, k) {
            sumI += i; sumJ += j; sumK += k; count += 1
        } } }
        let (ci, cj, ck) = (sumI / max(count, 1), sumJ / max(count, 1), sumK / max(count, 1))
        var scribbles = [UInt8](repeating: 0, count: c.label.count)
        let sliceStep = max(1, nz / 12)
        for k in stride(from: ck - 2 * sliceStep, through: ck + 2 * sliceStep, by: sliceStep) where k >= 0 && k < nz {
            for i in 0..<nx where near(i, cj, k, 1, slices: 0).all { scribbles[at(i, cj, k)] = foreground }
            for j in 0..<ny where near(ci, j, k, 1, slices: 0).all { scribbles[at(ci, j, k)] = foreground }
            for i in 0..<nx where near(i, i - ci + cj, k, 1, slices: 0).all { scribbles[at(i, i - ci + cj, k)] = foreground }
            // Like a user, stroke the tissue around the spleen and the air only once (a border row).
            for x in 0..<nx { scribbles[at(x, 1, k)] = background }
            for f in 1..<12 {
                let j = f * ny / 12, i = f * nx / 12
                for x in 0..<nx where c.image[at(x, j, k)] > -500 && !near(x, j, k, 3).any {
                    scribbles[at(x, j, k)] = background
                }
                for y in 0..<ny where c.image[at(i, y, k)] > -500 && !near(i, y, k, 3).any {
                    scribbles[at(i, y, k)] = background
                }
            }
        }
        let affine = Affine(c.affine)
        imageURL = dir.appendingPathComponent("image.nii.gz")
        scribblesURL = dir.appendingPathComponent("scribbles.nii.gz")
        try NIfTI.write(Volume(spatialShape: shape, data: .int16(c.image), affine: affine), to: imageURL)
        try NIfTI.write(Volume(spatialShape: shape, data: .uint8(scribbles), affine: affine), to: scribblesURL)
    }
}

func dice(_ a: [Float], _ b: [UInt8]) -> Double {
    var inter = 0, sa = 0, sb = 0
    for i in a.indices {
        let x = a[i] != 0, y = b[i] != 0
        if x { sa += 1 }
        if y { sb += 1 }
        if x && y { inter += 1 }
    }
    return sa + sb == 0 ? 1 : 2 * Double(inter) / Double(sa + sb)
}

/// Runs a scribbles `task` on `image`, `scribbles` (when given) as its `label` param; the result label and JSON.
func runScribbles(_ task: any InferTask, image: URL, scribbles: URL?, _ params: JSONObject = [:]) throws
    -> (Volume, JSONObject)
{
    var p = params
    if let scribbles { p["label"] = .string(scribbles.path) }
    let r = try task.infer(InferRequest(imagePath: image.path, params: p))
    let file = try #require(r.file)
    defer { try? FileManager.default.removeItem(at: file) }
    return (try ImageIO.load(file), r.json)
}

private func runTask(_ c: ScribbledCase, _ params: JSONObject = [:]) throws -> (Volume, JSONObject) {
    try runScribbles(HistogramGraphCutTask(labels: ["spleen": 1]), image: c.imageURL, scribbles: c.scribblesURL, params)
}

@Test(.tags(.unit)) func histogramGraphCut_scribblesAlone_segmentTheSpleen() throws {
    let tmp = TempDir()
    let c = try ScribbledCase(in: tmp.url)
    let (result, json) = try runTask(c)
    #expect(result.spatialShape == c.study.shape)
    let d = dice(result.floats, c.study.label)
    #expect(d >= 0.9, "Dice \(d)")
    // The bounding box is MONAI's BoundingRect of the result: [start, end) per axis.
    let bbox = json["bbox"]?.arrayValue?.compactMap(\.intValue) ?? []
    #expect(bbox == ScribblesPipeline.boundingRect(result.floats, shape: result.spatialShape))
    #expect(bbox.count == 6 && bbox[0] < bbox[1])
    #expect(json["label_names"] == ["spleen": 1])
    #expect(json["latencies"]?["transform"]?["post"]?["ApplyGraphCutOptimisationd"] != nil)
}

@Test(.tags(.unit)) func histogramGraphCut_imageOnAnotherGrid_isResampledAndRestored() throws {
    // A bright box in soft tissue on a 2 x 2 x 3 mm grid: the cut runs on the 2.5 x 2.5 x 5 mm grid and must land
    // back on this one, box where the box is.
    let tmp = TempDir()
    let shape = [80, 80, 48]
    func at(_ i: Int, _ j: Int, _ k: Int) -> Int { (i * 80 + j) * 48 + k }
    var image = [Int16](repeating: 20, count: 80 * 80 * 48), truth = [UInt8](repeating: 0, count: image.count)
    var scribbles = [UInt8](repeating: 0, count: image.count)
    for i in 0..<80 { for j in 0..<80 { for k in 0..<48 {
        let inBox = (30..<55).contains(i) && (20..<45).contains(j) && (15..<35).contains(k)
        if inBox { image[at(i, j, k)] = 150; truth[at(i, j, k)] = 1 }
    } } }
    for k in [20, 25, 30] {
        for i in 34..<51 { scribbles[at(i, 32, k)] = 3 }
        for i in 0..<80 { scribbles[at(i, 10, k)] = 2; scribbles[at(i, 60, k)] = 2 }
    }
    let affine = Affine([2, 0, 0, -80, 0, 2, 0, -80, 0, 0, 3, -70, 0, 0, 0, 1])
    let imageURL = tmp.url.appendingPathComponent("box.nii.gz"), labelURL = tmp.url.appendingPathComponent("s.nii.gz")
    try NIfTI.write(Volume(spatialShape: shape, data: .int16(image), affine: affine), to: imageURL)
    try NIfTI.write(Volume(spatialShape: shape, data: .uint8(scribbles), affine: affine), to: labelURL)
    let r = try HistogramGraphCutTask(labels: ["spleen": 1]).infer(
        InferRequest(imagePath: imageURL.path, params: ["label": .string(labelURL.path)]))
    let file = try #require(r.file)
    defer { try? FileManager.default.removeItem(at: file) }
    let result = try ImageIO.load(file)
    #expect(result.spatialShape == shape)
    #expect(result.affine == affine)
    let d = dice(result.floats, truth)
    #expect(d >= 0.9, "Dice \(d) through 2.5 x 2.5 x 5 mm resampling")
}

@Test(.tags(.unit)) func histogramGraphCut_labelInfo_overridesScribbleValues() throws {
    let tmp = TempDir()
    let c = try ScribbledCase(in: tmp.url, background: 5, foreground: 4)
    let info: JSONValue = [["name": "spleen", "id": 1], ["name": "foreground_scribbles", "id": 4],
                           ["name": "background_scribbles", "id": 5]]
    let (result, _) = try runTask(c, ["label_info": info])
    #expect(dice(result.floats, c.study.label) >= 0.9)
    // With the default values (2, 3) this label has no scribbles at all.
    #expect(throws: MONAILabelError.self) { try runTask(c) }
}

@Test(.tags(.unit)) func histogramGraphCut_roi_makesOutsideBackground() throws {
    let tmp = TempDir()
    let c = try ScribbledCase(in: tmp.url)
    let (result, json) = try runTask(c, ["roi": [0, 64, 0, 64, 0, 16]])
    let v = result.floats
    let outside = (0..<v.count).filter { $0 % 32 >= 16 }.allSatisfy { v[$0] == 0 }
    #expect(outside)
    let bbox = json["bbox"]?.arrayValue?.compactMap(\.intValue) ?? []
    #expect(bbox.count == 6 && bbox[5] <= 16)
}

@Test(.tags(.unit)) func histogramGraphCut_badRequests_areClearErrors() throws {
    let tmp = TempDir()
    let c = try ScribbledCase(in: tmp.url)
    let task = HistogramGraphCutTask(labels: ["spleen": 1])
    #expect(throws: MONAILabelError.self) { try task.infer(InferRequest(imagePath: c.imageURL.path, params: [:])) }
    #expect(throws: MONAILabelError.self) { try runTask(c, ["roi": [1, 2, 3]]) }
    #expect(throws: MONAILabelError.self) { try runTask(c, ["sigma": 0]) }
    #expect(throws: MONAILabelError.self) { try runTask(c, ["num_bins": -1]) }
    let empty = tmp.url.appendingPathComponent("empty.nii.gz")
    try NIfTI.write(Volume(spatialShape: c.study.shape, data: .uint8(Array(repeating: 0, count: c.study.label.count)),
                           affine: Affine(c.study.affine)), to: empty)
    #expect(throws: MONAILabelError.self) {
        try task.infer(InferRequest(imagePath: c.imageURL.path, params: ["label": .string(empty.path)]))
    }
}

@Test(.tags(.unit)) func histogramGraphCut_info_matchesUpstream() throws {
    let task = HistogramGraphCutTask(labels: ["spleen": 1])
    #expect(task.info["type"] == "scribbles")
    #expect(task.info["config"]?.objectValue?.keys == ["num_bins", "lamda", "sigma", "device"])
    #expect(task.info["config"]?["num_bins"] == 64)
    #expect(task.info["config"]?["lamda"] == 1.0)
    #expect(task.info["config"]?["sigma"] == 0.1)
}

@Test(.tags(.unit)) func isegUnary_normalisesLikelihoodsInsteadOfSoftmax() throws {
    // One bright foreground scribble, one dark background scribble: the histograms put all their
    // non-pseudo-count mass in different bins, so a voxel in the foreground bin is very likely foreground.
    let image: [Float] = [0.9, 0.1, 0.9, 0.1, 0.5]
    let ids = try ScribbleIDs(labelInfo: nil, background: 2, foreground: 3)
    let p = try ScribblesPipeline.histogramLikelihood(image, scribbles: [3, 2, 0, 0, 0], ids: ids, bins: 4)
    // fg histogram: (1, 1, 1, 2) / 5, bg: (2, 1, 1, 1) / 5 -> p_fg = 2/3 in the last bin, 1/3 in the first.
    #expect(abs(p[2] - 2.0 / 3.0) < 1e-6)
    #expect(abs(p[3] - 1.0 / 3.0) < 1e-6)
    #expect(abs(p[4] - 0.5) < 1e-6)
    let u = ScribblesPipeline.isegUnary(foreground: p, scribbles: [3, 2, 0, 0, 0], ids: ids)
    #expect(u[0] == 1 - Float.ulpOfOne && u[1] == Float.ulpOfOne && u[2] == p[2])
}

@Test(.tags(.unit)) func scribbleIDs_hugeOrEqualLabelInfoIds_are422NotTraps() throws {
    // Int.max as a Float rounds past Int's range: it used to trap formatting the "same value" error.
    let huge: JSONValue = [["name": "background_scribbles", "id": .int(Int.max)], ["name": "foreground_scribbles", "id": .int(Int.max)]]
    #expect(throws: MONAILabelError.self) { try ScribbleIDs(labelInfo: huge, background: 2, foreground: 3) }
    let fractional: JSONValue = [["name": "foreground_scribbles", "id": .double(2.5)]]
    #expect { try ScribbleIDs(labelInfo: fractional, background: 2, foreground: 3) } throws: {
        ($0 as? MONAILabelError)?.message.contains("id") == true
    }
}

@Test(.tags(.unit)) func histogramLikelihood_nanAndInfiniteVoxels_landInBinsInsteadOfTrapping() throws {
    let ids = try ScribbleIDs(labelInfo: nil, background: 2, foreground: 3)
    let image: [Float] = [.nan, .infinity, -.infinity, 0.5, 0.25, 0.75]
    let scribbles: [Float] = [2, 3, 2, 3, 2, 3]
    let p = try ScribblesPipeline.histogramLikelihood(image, scribbles: scribbles, ids: ids, bins: 8)
    #expect(p.count == image.count)
}

@Test(.tags(.unit), arguments: [("lamda", JSONValue.double(1e308)), ("lamda", .double(-1)), ("sigma", .double(0)), ("sigma", .string("0.1")),
                  ("num_bins", .int(0)), ("num_bins", .double(2.5))])
func scribblesParameters_outOfRange_areRefusedNamingThem(key: String, value: JSONValue) {
    #expect { _ = try ScribblesParameters.histogram.overridden(by: [key: value]) } throws: {
        ($0 as? MONAILabelError)?.message.hasPrefix(key) == true
    }
}

@Test(.tags(.unit)) func geosParameters_hugeGammaOrNegativeTheta_areRefusedNamingThem() {
    #expect { _ = try GeoSParameters.standard.overridden(by: ["gamma": .double(1e300)]) } throws: {
        ($0 as? MONAILabelError)?.message.hasPrefix("gamma") == true
    }
    #expect { _ = try GeoSParameters.standard.overridden(by: ["theta": .double(-1)]) } throws: {
        ($0 as? MONAILabelError)?.message.hasPrefix("theta") == true
    }
}
