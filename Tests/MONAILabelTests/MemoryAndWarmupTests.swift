import Foundation
import TorchKit
import Testing
@testable import MONAILabel
@testable import MONAILabelCore

@Test(.tags(.unit)) func processMemory_resetPeak_forgetsAFreedAllocation() throws {
    #expect(ProcessMemory.trim(), "glibc's malloc_trim is found")
    do {
        // 128 MiB touched: above glibc's mmap threshold, so freeing it unmaps it at once.
        let big = [UInt8](repeating: 1, count: 128 << 20)
        #expect(big[big.count - 1] == 1)
    }
    let before = try #require(ProcessMemory.peakResidentBytes)
    #expect(ProcessMemory.resetPeak())
    let after = try #require(ProcessMemory.peakResidentBytes)
    let resident = try #require(ProcessMemory.residentBytes)
    #expect(after < before - (64 << 20), "peak \(before) -> \(after) after the reset")
    #expect(after >= resident - (16 << 20))
}

@Test(.tags(.unit)) func runModel_latencies_reportThePeakResidentMemory() throws {
    let tmp = TempDir()
    let task = try smallSpleenTask(tmp)
    let appDir = tmp.url.appendingPathComponent("app")
    _ = tmp.write("app/app.json", Array(#"{"name": "t", "models": {"segmentation_spleen": {}}}"#.utf8))
    let studies = tmp.url.appendingPathComponent("studies")
    try FileManager.default.createDirectory(at: studies, withIntermediateDirectories: true)
    var settings = Settings(appDir: appDir, studies: studies.path, conf: ["models": "segmentation_spleen"])
    settings.inferWorkers = 0
    settings.sessions = false
    let app = try MONAILabelApp(settings: settings, datastore: try LocalDatastore(root: studies), factory: { _, _, _ in task })
    let result = try app.runModel(WorkerJob(model: "segmentation_spleen", imagePath: pipelineFixture("ct_lps_aniso.nii.gz").path,
                                            params: ["skip_writer": true]))
    let peak = try #require(result.json["latencies"]?["peak_rss_mb"]?.intValue)
    #expect(peak > 0)
    #expect(peak < 64 << 10, "a plausible MiB count")
    // Upstream's keys are all still there.
    let keys = Set(result.json["latencies"]?.objectValue?.keys ?? [])
    #expect(keys.isSuperset(of: ["pre", "infer", "invert", "post", "write", "total", "transform"]))
}

@Test(.tags(.unit)) func prewarm_loadsTheNetworkBeforeTheFirstRequest() throws {
    let tmp = TempDir()
    let task = try smallSpleenTask(tmp)
    #expect(!task.loader.isLoaded)
    try task.prewarm()
    #expect(task.loader.isLoaded)
}

/// Whatever the windows and blending, an element-wise predictor's blended output is its output on the whole
/// image: each voxel's weighted sum divided by its weights. Covers the single-window shortcut (an image smaller
/// than the window), byte counts (constant blending, few windows per voxel) and float weights (Gaussian, or
/// constant with more than 255 windows over a voxel).
@Test(.tags(.unit), arguments: [
    ([20, 18, 12], [32, 32, 32], 0.25, BlendMode.constant),
    ([70, 60, 24], [32, 32, 16], 0.25, BlendMode.constant),
    ([70, 60, 24], [32, 32, 16], 0.6, BlendMode.gaussian),
    ([24, 24, 24], [8, 8, 8], 0.9, BlendMode.constant),
])
func slidingWindow_elementwisePredictor_blendsBackToItsOutput(image: [Int], roi: [Int], overlap: Double, mode: BlendMode) throws {
    let sw = SlidingWindowInferer(roiSize: roi, swBatchSize: 2, overlap: overlap, mode: mode)
    #expect(overlap < 0.9 || sw.maxCoverage(imageSize: image) >= 256, "the float weight path is exercised")
    let input = try Tensor.randn([1, 1] + image)
    let predictor: (Tensor) throws -> Tensor = { x in try Tensor.cat([x.mul(2), x.add(1)], dim: 1) }
    let out = try Torch.withNoGrad { try sw(input, predictor: predictor) }
    let expected = try predictor(input)
    #expect(out.shape == expected.shape)
    // Float sums of up to 729 windows: relative to the values' size.
    let diff = try (out - expected).abs().max().item()
    let scale = try expected.abs().max().item()
    #expect(diff < 2e-5 * scale, "max abs difference \(diff) for values up to \(scale)")
}
