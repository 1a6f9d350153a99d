import Foundation
import Imaging
import TorchCheckpoint
import TorchKit
import Testing
@testable import MONAILabel
@testable import MONAILabelCore

/// The segmentation_spleen recipe with the small fixture UNet, as `fixtures/pipeline/ct_lps_aniso.json` lists it.
func smallSpleenTask(_ tmp: TempDir) throws -> SegmentationTask {
    let modelDir = tmp.url.appendingPathComponent("model")
    try FileManager.default.createDirectory(at: modelDir, withIntermediateDirectories: true)
    try FileManager.default.copyItem(
        at: Fixtures.shared.appendingPathComponent("fixtures/monai/unet_segmentation_spleen.small.pt"),
        to: modelDir.appendingPathComponent("pretrained_segmentation_spleen.pt"))
    let definition: JSONObject = [
        "type": "segmentation", "labels": ["spleen": 1], "dimension": 3,
        "network": ["name": "UNet", "spatial_dims": 3, "in_channels": 1, "out_channels": 2, "channels": [4, 8, 16, 32],
                    "strides": [2, 2, 2], "num_res_units": 2, "norm": "batch"],
        "pre": [["name": "Orientationd", "axcodes": "RAS"], ["name": "Spacingd", "pixdim": [1.0, 1.0, 1.0], "mode": "bilinear"],
                ["name": "ScaleIntensityRanged", "a_min": -57, "a_max": 164, "b_min": 0.0, "b_max": 1.0, "clip": true],
                ["name": "ScaleIntensityd", "minv": -1.0, "maxv": 1.0]],
        "inferer": ["roi_size": [32, 32, 32], "sw_batch_size": 1, "overlap": 0.25, "mode": "constant"],
        "post": ["largest_cc": true],
    ]
    return try SegmentationTask(name: "segmentation_spleen", definition: definition, modelDir: modelDir)
}

func pipelineFixture(_ name: String) -> URL { Fixtures.shared.appendingPathComponent("fixtures/pipeline/\(name)") }

@Test(.tags(.unit)) func pipeline_ctLpsAniso_reproducesMONAILogits() throws {
    let tmp = TempDir()
    let task = try smallSpleenTask(tmp)
    var x = try ImageIO.load(pipelineFixture("ct_lps_aniso.nii.gz"))
    for t in task.pre { x = try t.apply(x) }
    let logits = try task.predict(x, params: [:])
    let expected = try NPYArray.read(pipelineFixture("ct_lps_aniso.logits.npy"))
    #expect(expected.shape == [2, 56, 54, 58])
    let e = expected.floats
    try #require(logits.count == e.count)
    let maxDiff = zip(logits, e).reduce(Float(0)) { max($0, abs($1.0 - $1.1)) }
    #expect(maxDiff <= 1e-3, "max abs logit difference \(maxDiff)")
}

@Test(.tags(.unit)) func pipeline_ctLpsAniso_finalLabel_agreesWithMONAIWhereItsGeometryIsRight() throws {
    let tmp = TempDir()
    let task = try smallSpleenTask(tmp)
    let result = try task.infer(InferRequest(imagePath: pipelineFixture("ct_lps_aniso.nii.gz").path,
                                             params: ["result_extension": ".nii.gz", "result_dtype": "uint8"]))
    let file = try #require(result.file)
    defer { try? FileManager.default.removeItem(at: file) }
    let ours = try ImageIO.load(file)
    let image = try ImageIO.load(pipelineFixture("ct_lps_aniso.nii.gz"))
    #expect(ours.spatialShape == [70, 60, 24])
    #expect(ours.data.type == .uint8)
    for (a, b) in zip(ours.affine.m, image.affine.m) { #expect(abs(a - b) < 1e-5, "label written on the image's grid") }
    // MONAI's result keeps the RAS voxel order on the LPS grid (upstream's Restored only resizes); mirrored back
    // into LPS it is in the right place, apart from the slices its extent-ratio resize shifts.
    let upstream = try NPYArray.read(pipelineFixture("ct_lps_aniso.result.npy")).floats
    var mirrored = [Float](repeating: 0, count: upstream.count)
    for i in 0..<70 { for j in 0..<60 { for k in 0..<24 {
        mirrored[(i * 60 + j) * 24 + k] = upstream[((69 - i) * 60 + (59 - j)) * 24 + k]
    } } }
    let o = ours.floats
    let agree = Double(zip(o, mirrored).filter { $0 == $1 }.count) / Double(o.count)
    let agreeRaw = Double(zip(o, upstream).filter { $0 == $1 }.count) / Double(o.count)
    #expect(agree > 0.85, "agreement with MONAI's result mirrored into LPS: \(agree)")
    #expect(agree > agreeRaw, "mirrored \(agree) vs as-is \(agreeRaw): upstream's label is flipped on this image")
    #expect(result.json["label_names"] == ["spleen": 1])
    let lat = try #require(result.json["latencies"]?.objectValue)
    #expect(lat.keys == ["pre", "infer", "invert", "post", "write", "total", "transform"])
    #expect(lat["transform"]?["pre"]?.objectValue?.keys == ["LoadImaged", "EnsureTyped", "EnsureChannelFirstd", "Orientationd",
                                                             "Spacingd", "ScaleIntensityRanged", "ScaleIntensityd"])
}

@Test(.tags(.unit)) func pipeline_untrainedNetwork_runsAndSaysSo_badResultOptionsAreRejected() throws {
    let tmp = TempDir()
    let task = try smallSpleenTask(tmp)
    try FileManager.default.removeItem(at: task.modelPaths[0])
    #expect(task.weights.hasPrefix("untrained"))
    #expect(throws: MONAILabelError.self) {
        try task.infer(InferRequest(imagePath: pipelineFixture("ct_lps_aniso.nii.gz").path, params: ["result_dtype": "complex128"]))
    }
    #expect(throws: MONAILabelError.self) {
        try task.infer(InferRequest(imagePath: pipelineFixture("ct_lps_aniso.nii.gz").path, params: ["result_extension": ".exe"]))
    }
    let r = try task.infer(InferRequest(imagePath: pipelineFixture("ct_lps_aniso.nii.gz").path, params: ["result_extension": ".nrrd"]))
    let f = try #require(r.file)
    defer { try? FileManager.default.removeItem(at: f) }
    #expect(f.pathExtension == "nrrd")
    #expect(try ImageIO.load(f).spatialShape == [70, 60, 24])
}

/// Upstream's writer sends a `.nrrd` result raw unless `result_compress` asks for gzip (OHIF's NRRD reader decodes
/// only raw data and asks with `result_compress: false`); both read back to the same label.
@Test(.tags(.unit)) func pipeline_nrrdResult_isRawUnlessResultCompressAsksForGzip() throws {
    let tmp = TempDir()
    let task = try smallSpleenTask(tmp)
    func encoding(_ params: JSONObject) throws -> (String, Volume) {
        let r = try task.infer(InferRequest(imagePath: pipelineFixture("ct_lps_aniso.nii.gz").path, params: params))
        let f = try #require(r.file)
        defer { try? FileManager.default.removeItem(at: f) }
        let header = String(decoding: try Data(contentsOf: f).prefix(1024), as: UTF8.self)
        let line = header.split(separator: "\n").first { $0.hasPrefix("encoding:") }.map(String.init) ?? ""
        return (line, try ImageIO.load(f))
    }
    let (plain, plainLabel) = try encoding(["result_extension": ".nrrd", "result_dtype": "uint8"])
    let (ohif, _) = try encoding(["result_extension": ".nrrd", "result_dtype": "uint8", "result_compress": false])
    let (gzip, gzipLabel) = try encoding(["result_extension": ".nrrd", "result_dtype": "uint8", "result_compress": true])
    #expect(plain == "encoding: raw")
    #expect(ohif == "encoding: raw")
    #expect(gzip == "encoding: gzip")
    #expect(plainLabel.data.asFloat() == gzipLabel.data.asFloat())
}

@Test(.tags(.unit)) func slidingWindow_windowStarts_matchMONAIDensePatchSlices() {
    // dense_patch_slices((56, 54, 58), (32, 32, 32), scan_interval 24): starts 0, 24 per axis (last flush).
    #expect(SlidingWindowInferer.windowStarts(imageSize: [56], roi: [32], overlap: 0.25) == [[0], [24]])
    #expect(SlidingWindowInferer.windowStarts(imageSize: [58], roi: [32], overlap: 0.25) == [[0], [24], [26]])
    #expect(SlidingWindowInferer.windowStarts(imageSize: [32], roi: [32], overlap: 0.25) == [[0]])
    #expect(SlidingWindowInferer.windowStarts(imageSize: [10, 20], roi: [10, 8], overlap: 0.5).count == 4)
}

@Test(.tags(.unit)) func modelLoader_reloadsWhenPublishedWeightsChange() throws {
    let tmp = TempDir()
    let task = try smallSpleenTask(tmp)
    var x = try ImageIO.load(pipelineFixture("ct_lps_aniso.nii.gz"))
    for t in task.pre { x = try t.apply(x) }
    let trained = try task.predict(x, params: [:])
    #expect(task.weights == "pretrained_segmentation_spleen.pt")
    // Publishing a different checkpoint (another network's weights would not load; use a perturbed copy of these).
    let state = try Checkpoint.stateDict(from: task.modelPaths[0])
    let perturbed = state.map { entry -> (name: String, tensor: StoredTensor) in
        guard entry.tensor.dtype == .float32, entry.name.hasSuffix("conv.weight") else { return entry }
        var t = entry.tensor
        t.bytes = t.bytes.enumerated().map { $0.offset % 4 == 3 ? $0.element ^ 0x01 : $0.element }
        return (entry.name, t)
    }
    try Checkpoint.write(stateDict: perturbed, key: "model", to: task.modelPaths[1])
    #expect(task.weights == "segmentation_spleen.pt", "the published file wins over the pretrained one")
    let republished = try task.predict(x, params: [:])
    #expect(republished != trained, "the new weights were loaded")
    try FileManager.default.removeItem(at: task.modelPaths[1])
    #expect(try task.predict(x, params: [:]) == trained, "back to the pretrained weights")
}

@Test(.tags(.unit)) func modelLoader_corruptWeights_areAClearErrorNotACrash() throws {
    let tmp = TempDir()
    let task = try smallSpleenTask(tmp)
    try Data("not a checkpoint".utf8).write(to: task.modelPaths[1])
    var x = try ImageIO.load(pipelineFixture("ct_lps_aniso.nii.gz"))
    for t in task.pre { x = try t.apply(x) }
    #expect(throws: MONAILabelError.self) { try task.predict(x, params: [:]) }
}

@Test(.tags(.unit)) func argmaxOverChannels_matchesTorchArgmaxIncludingTies() throws {
    for k in [1, 2, 5] {
        // Values in a small set so ties are common; torch.argmax returns the first maximum.
        let values = (0..<(k * 6 * 7 * 5)).map { _ in Float(Int.random(in: 0..<3)) }
        let t = try Tensor(values, shape: [1, k, 6, 7, 5])
        let ours = try SegmentationTask.argmaxOverChannels(t).array(of: UInt8.self)
        let torch = try t.argmax(dim: 1).array(of: Int64.self).map { UInt8($0) }
        #expect(ours == torch, "k = \(k)")
    }
}

/// The `segmentation` recipe's path (SegResNet, Gaussian blending, replicate padding, batches of 2 windows)
/// with the small fixture network: runs end to end and writes a label on the source grid.
@Test(.tags(.unit)) func pipeline_segResNetRecipe_gaussianReplicate_writesLabelOnSourceGrid() throws {
    let tmp = TempDir()
    let modelDir = tmp.url.appendingPathComponent("model")
    try FileManager.default.createDirectory(at: modelDir, withIntermediateDirectories: true)
    try FileManager.default.copyItem(
        at: Fixtures.shared.appendingPathComponent("fixtures/monai/segresnet_segmentation.small.pt"),
        to: modelDir.appendingPathComponent("segmentation.pt"))
    let definition: JSONObject = [
        "type": "segmentation", "labels": ["spleen": 1, "kidney_right": 2], "dimension": 3,
        "network": ["name": "SegResNet", "spatial_dims": 3, "in_channels": 1, "out_channels": 3, "init_filters": 8,
                    "blocks_down": [1, 2, 2, 4], "blocks_up": [1, 1, 1], "dropout_prob": 0.2],
        "pre": [["name": "Orientationd", "axcodes": "RAS"], ["name": "Spacingd", "pixdim": [1.5, 1.5, 1.5]],
                ["name": "NormalizeIntensityd", "nonzero": true], ["name": "GaussianSmoothd", "sigma": 0.4],
                ["name": "ScaleIntensityd", "minv": -1.0, "maxv": 1.0]],
        "inferer": ["roi_size": [32, 32, 32], "sw_batch_size": 2, "overlap": 0.4, "mode": "gaussian", "padding_mode": "replicate"],
    ]
    let task = try SegmentationTask(name: "segmentation", definition: definition, modelDir: modelDir)
    #expect(task.weights == "segmentation.pt")
    let r = try task.infer(InferRequest(imagePath: pipelineFixture("ct_lps_aniso.nii.gz").path, params: ["restore_label_idx": true]))
    let f = try #require(r.file)
    defer { try? FileManager.default.removeItem(at: f) }
    let label = try ImageIO.load(f)
    #expect(label.spatialShape == [70, 60, 24])
    #expect(Set(label.floats).isSubset(of: [0, 1, 2]))
    #expect(r.json["latencies"]?["transform"]?["pre"]?.objectValue?.keys.contains("GaussianSmoothd") == true)
}

@Test(.tags(.unit)) func slidingWindow_gaussianImportance_matchesMONAIFormula() throws {
    let m = try SlidingWindowInferer.importanceMap(roi: [5, 4], mode: .gaussian, sigmaScale: 0.125).floats()
    // MONAI: exp(-x^2 / (2 sigma^2)), x centred, sigma = 0.125 * size, product over axes, clamped below at
    // max(min, 1e-3).
    func g(_ i: Int, _ n: Int) -> Double {
        let x = Double(i) - Double(n - 1) / 2, s = 0.125 * Double(n)
        return Foundation.exp(-x * x / (2 * s * s))
    }
    var expected: [Float] = []
    for i in 0..<5 { for j in 0..<4 { expected.append(Float(g(i, 5) * g(j, 4))) } }
    let floor = max(expected.min() ?? 0, 1e-3)
    expected = expected.map { max($0, floor) }
    #expect(zip(m, expected).allSatisfy { abs($0 - $1) < 1e-6 })
}

/// The task runs pre-transforms in place; every step must equal its copying form and leave shared input alone.
@Test(.tags(.unit)) func preTransforms_runInPlace_matchesApplyAndKeepsSharedInput() throws {
    let tmp = TempDir()
    let task = try smallSpleenTask(tmp)
    var x = try ImageIO.load(pipelineFixture("ct_lps_aniso.nii.gz"))
    for t in task.pre {
        let before = x.floats
        let copied = try t.apply(x)
        var y = x
        try t.run(&y)
        #expect(y.floats == copied.floats, "\(t.name)")
        #expect(y.spatialShape == copied.spatialShape && y.affine == copied.affine, "\(t.name)")
        #expect(x.floats == before, "\(t.name) wrote into the input's buffer")
        x = y
    }
}

/// The task skips softmax before argmax: softmax is monotonic per voxel, so the labels must be the same.
@Test(.tags(.unit)) func argmaxOverChannels_ofLogits_equalsArgmaxOfSoftmax() throws {
    for k in [2, 3] {
        let values = (0..<(k * 5 * 6 * 7)).map { _ in Float(Int.random(in: -4...4)) * 0.5 }
        let t = try Tensor(values, shape: [1, k, 5, 6, 7])
        let ours = try SegmentationTask.argmaxOverChannels(t).array(of: UInt8.self)
        let viaSoftmax = try t.softmax(dim: 1).argmax(dim: 1).array(of: Int64.self).map { UInt8($0) }
        #expect(ours == viaSoftmax, "k = \(k)")
    }
}

@Suite(.tags(.unit)) struct SlidingWindowLimitTests {
    func expectRefused(_ sw: SlidingWindowInferer, _ image: [Int], naming name: String,
                       sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(sourceLocation: sourceLocation) {
            try sw.validate(imageShape: image)
        } throws: { error in
            guard let e = error as? MONAILabelError else { return false }
            return e.kind == .invalidInput && e.message.contains(name)
        }
    }

    @Test func validate_ordinarySettings_pass() throws {
        try SlidingWindowInferer(roiSize: [96, 96, 96], swBatchSize: 4, overlap: 0.5).validate(imageShape: [300, 300, 300])
        // A large batch is harmless when the image holds a single window.
        try SlidingWindowInferer(roiSize: [128, 128, 128], swBatchSize: 512).validate(imageShape: [100, 128, 64])
    }

    @Test func validate_hostileSettings_areRefusedNamingTheParameter() {
        expectRefused(SlidingWindowInferer(roiSize: [400, 400, 400]), [400, 400, 400], naming: "roi_size")
        expectRefused(SlidingWindowInferer(roiSize: [128, 128, 128], swBatchSize: 32), [512, 512, 512], naming: "sw_batch_size")
        expectRefused(SlidingWindowInferer(roiSize: [96, 96, 96], overlap: 0.99), [512, 512, 512], naming: "sw_overlap")
        expectRefused(SlidingWindowInferer(roiSize: [96, 96, 96], overlap: .nan), [100, 100, 100], naming: "sw_overlap")
        expectRefused(SlidingWindowInferer(roiSize: [96, 96, 96], overlap: 1e300), [100, 100, 100], naming: "sw_overlap")
        expectRefused(SlidingWindowInferer(roiSize: [-96, 96, 96]), [100, 100, 100], naming: "roi_size")
        expectRefused(SlidingWindowInferer(roiSize: [96, 96]), [100, 100, 100], naming: "roi_size")
        expectRefused(SlidingWindowInferer(roiSize: [Int.max, 2, 2]), [100, 100, 100], naming: "roi_size")
    }
}

@Test(.tags(.unit)) func pipeline_ctLpsAniso_channelsLastAndConvolutionSlabs_keepLogitsWithin1e4() throws {
    let tmp = TempDir()
    let task = try smallSpleenTask(tmp)
    var x = try ImageIO.load(pipelineFixture("ct_lps_aniso.nii.gz"))
    for t in task.pre { x = try t.apply(x) }
    let reference = try task.predict(x, params: ["channels_last": false])
    for channelsLast in [false, true] {
        // Every convolution with more than 64 output voxels runs in slabs.
        let logits = try Conv.$slabVoxels.withValue(64) { try task.predict(x, params: ["channels_last": .bool(channelsLast)]) }
        try #require(logits.count == reference.count)
        let maxDiff = zip(logits, reference).reduce(Float(0)) { max($0, abs($1.0 - $1.1)) }
        #expect(maxDiff <= 1e-4, "channels_last \(channelsLast): max abs logit difference \(maxDiff)")
    }
    #expect(throws: MONAILabelError.self) { try task.predict(x, params: ["channels_last": "yes"]) }
}
