import Foundation
import Testing
import Imaging
import TestSupport
import TorchKit
@testable import MONAILabel

// MARK: JobBook (the train task list's state machine)

@Test(.tags(.unit)) func jobBook_secondSubmitWhileRunning_isBusyUnlessEnqueued() {
    var b = JobBook()
    let r1 = b.submit(id: "a", request: [:], enqueue: false, now: "t0")
    #expect(r1 == .start("a"))
    let r2 = b.started("a")
    #expect(r2)
    let r3 = b.submit(id: "b", request: [:], enqueue: false, now: "t1")
    #expect(r3 == .busy)
    let r4 = b.submit(id: "c", request: [:], enqueue: true, now: "t1")
    #expect(r4 == .queued("c"))
    #expect(b.jobs.map(\.id) == ["a", "c"])
    let r5 = b.finished("a", exitCode: 0, now: "t2")
    #expect(r5 == "c")
    #expect(b.job("a")?.status == .done)
    #expect(b.job("a")?.endTS == "t2")
    #expect(b.job("c")?.status == .submitted)
}

@Test(.tags(.unit)) func jobBook_start_addsGpusAllToRequestLikeUpstream() {
    var b = JobBook()
    _ = b.submit(id: "a", request: ["model": "m"], enqueue: false, now: "t0")
    #expect(b.job("a")?.request["gpus"] == nil)
    let r6 = b.started("a")
    #expect(r6)
    #expect(b.job("a")?.request["gpus"] == "all")
    #expect(b.job("a")?.json["details"] == .array([]))
}

@Test(.tags(.unit)) func jobBook_stop_marksStoppedAndExitKeepsStopped() {
    var b = JobBook()
    _ = b.submit(id: "a", request: [:], enqueue: false, now: "t0")
    _ = b.started("a")
    let s = b.stop(now: "t1")
    #expect(s?.status == .stopped)
    #expect(s?.endTS == "t1")
    #expect(s?.details.isEmpty == false, "Slicer reads details[-1] after a stop")
    _ = b.finished("a", exitCode: nil, reason: "killed", now: "t2")
    #expect(b.job("a")?.status == .stopped)
    #expect(b.job("a")?.endTS == "t1")
    let again = b.stop(now: "t3")
    #expect(again == nil)
}

@Test(.tags(.unit)) func jobBook_stopBeforeLaunch_preventsTheStart() {
    var b = JobBook()
    _ = b.submit(id: "a", request: [:], enqueue: false, now: "t0")
    let stopped = b.stop(now: "t1")
    #expect(stopped?.status == .stopped)
    let started = b.started("a")
    #expect(!started)
}

@Test(.tags(.unit)) func jobBook_signalOrNonZeroExit_isError() {
    var b = JobBook()
    _ = b.submit(id: "a", request: [:], enqueue: false, now: "t0")
    _ = b.started("a")
    _ = b.finished("a", exitCode: nil, reason: "killed by signal 9", now: "t1")
    #expect(b.job("a")?.status == .error)
    #expect(b.job("a")?.details.last == "killed by signal 9")
    _ = b.submit(id: "b", request: [:], enqueue: false, now: "t2")
    _ = b.started("b")
    _ = b.finished("b", exitCode: 1, now: "t3")
    #expect(b.job("b")?.status == .error)
}

@Test(.tags(.unit)) func jobBook_output_keepsLast20LinesAndParsesProgress() {
    var b = JobBook()
    _ = b.submit(id: "a", request: [:], enqueue: false, now: "t0")
    _ = b.started("a")
    for i in 0..<30 { b.output("a", line: "line \(i)") }
    b.output("a", line: JobBook.progressPrefix + #"{"epoch": 3, "total_epochs": 9}"#)
    let j = b.job("a")
    #expect(j?.details.count == 20)
    #expect(j?.details.first == "line 10")
    #expect(j?.progress?["epoch"] == 3)
}

@Test(.tags(.unit)) func jobLaunch_arguments_namesKindRequestAppResultAndSortedConf() {
    var settings = Settings(appDir: URL(fileURLWithPath: "/apps/radiology"), studies: "/data/studies",
                            conf: ["models": "spleen", "epistemic_enabled": "true"])
    settings.taskRunner = "/opt/bin/monailabel"
    settings.torchThreads = 2
    let launch = JobLaunch(settings: settings)
    #expect(launch.executable.path == "/opt/bin/monailabel")
    #expect(launch.environment["MONAI_LABEL_TORCH_THREADS"] == "2")
    #expect(launch.environment["MONAI_LABEL_DATASTORE_AUTO_RELOAD"] == "false")
    let args = launch.arguments(kind: .batchInfer, request: ["model": "spleen", "images": "all"],
                                resultFile: URL(fileURLWithPath: "/tmp/r.json"))
    #expect(args == ["run_task", "--method", "batch_infer", "--request", #"{"model":"spleen","images":"all"}"#,
                     "--app", "/apps/radiology", "--studies", "/data/studies", "--output", "/tmp/r.json",
                     "--conf", "epistemic_enabled", "true", "--conf", "models", "spleen"])
}

@Test(.tags(.unit)) func jobChild_readsBackKindAndRequest_refusesUnknownMethodAndNonObject() throws {
    let child = try JobChild(method: "batch_infer", request: #"{"model":"spleen"}"#, appDir: "/a", studies: "/s",
                             conf: [:], output: nil)
    #expect(child.kind == .batchInfer)
    #expect(child.request == ["model": "spleen"])
    #expect(throws: MONAILabelError.self) {
        try JobChild(method: "segment", request: "{}", appDir: "/a", studies: "/s", conf: [:], output: nil)
    }
    #expect(throws: MONAILabelError.self) {
        try JobChild(method: "train", request: "[1]", appDir: "/a", studies: "/s", conf: [:], output: nil)
    }
}

// MARK: TrainLoop (the epoch loop every trainer shares)

@Test(.tags(.unit)) func trainLoop_validatesEveryIntervalPublishesTheBestStopsEarlyAndReportsAnETA() throws {
    let tmp = TempDir()
    let definition = try #require(try TrainDefinition(model: "tiny", definition: [
        "labels": ["spleen": 1],
        "network": ["name": "UNet", "spatial_dims": 3, "in_channels": 1, "out_channels": 2, "channels": [4, 8],
                    "strides": [2], "num_res_units": 0],
        "train": ["spatial_size": [8, 8, 8]],
    ]))
    let settings = try TrainSettings(definition: definition, request: [
        "max_epochs": 10, "val_interval": 2, "early_stop_patience": 2, "device": "cpu",
    ])
    let published = tmp.url.appendingPathComponent("tiny.pt")
    var progress: [JSONObject] = []
    let loop = try TrainLoop(
        definition: definition, settings: settings,
        paths: TrainPaths(modelDir: tmp.url.appendingPathComponent("tiny"), publishPath: published, loadPath: nil),
        epochLength: 3, validating: true, log: { _ in }, progress: { progress.append($0) })
    // The best validation is the first; the next two do not improve, which is the patience.
    let scores = [2: 0.5, 4: 0.4, 6: 0.3]
    var validated: [Int] = []
    let stats = try loop.run(
        step: { _, _ in TrainLoop.Step(loss: 1, dice: [0.25, 0.75]) },
        validate: { epoch in
            validated.append(epoch)
            return scores[epoch] ?? 0
        })
    #expect(validated == [2, 4, 6])
    #expect(stats["current_epoch"] == 6)
    #expect(stats["best_metric"]?.doubleValue == 0.5)
    #expect(stats["train"]?["metrics"]?["train_mean_dice"]?.doubleValue == 0.5)
    #expect(FileManager.default.fileExists(atPath: published.path))
    #expect(progress.count == 6 * 3)
    #expect(progress.allSatisfy { $0["eta"]?.doubleValue != nil }, "every iteration reports an ETA")
    #expect(progress.last?["epoch"] == 6)
    #expect(progress.last?["total_iterations"] == 3)
}

// MARK: Loss and metric

@Test(.tags(.unit)) func diceCELoss_perfectPrediction_isNearZeroAndWrongIsLarge() throws {
    // Two classes on 1x1x2x2x2: logits strongly favour the true class.
    let labels: [Float] = [0, 1, 1, 0, 0, 0, 1, 1]
    let y = try Tensor(labels, shape: [1, 1, 2, 2, 2])
    let good = try Tensor(labels.map { $0 == 0 ? 20 : -20 } + labels.map { $0 == 1 ? 20 : -20 }, shape: [1, 2, 2, 2, 2])
    let bad = try Tensor(labels.map { $0 == 0 ? -20 : 20 } + labels.map { $0 == 1 ? -20 : 20 }, shape: [1, 2, 2, 2, 2])
    let loss = DiceCELoss(squaredPred: true, batch: true)
    #expect(try loss(good, y).item() < 1e-3)
    #expect(try loss(bad, y).item() > 10)
}

@Test(.tags(.unit)) func diceCELoss_uniformLogits_matchesClosedForm() throws {
    // softmax = 0.5 everywhere; CE = ln 2; squared dice per class c with n_c voxels:
    // 1 - 2 * 0.5 n_c / (n_c + 0.25 * 8).
    let labels: [Float] = [0, 1, 1, 0, 0, 0, 1, 1]
    let y = try Tensor(labels, shape: [1, 1, 2, 2, 2])
    let x = try Tensor.zeros([1, 2, 2, 2, 2])
    let v = try DiceCELoss(squaredPred: true, batch: true)(x, y).item()
    let dice = 1 - (2 * 0.5 * 4 + 1e-5) / (4 + 2 + 1e-5)
    #expect(abs(v - (dice + log(2.0))) < 1e-4)
}

@Test(.tags(.unit)) func diceCELoss_backward_givesGradients() throws {
    let y = try Tensor([Float](repeating: 1, count: 8), shape: [1, 1, 2, 2, 2])
    let x = try Tensor.zeros([1, 2, 2, 2, 2])
    try x.setRequiresGrad(true)
    try DiceCELoss()(x, y).backward()
    let g = try #require(try x.grad()).floats()
    #expect(g.contains { $0 != 0 })
}

@Test(.tags(.unit)) func diceMetric_ignoresBackgroundAndEmptyTruth() {
    #expect(DiceMetric.mean(prediction: [0, 1, 1, 0], truth: [0, 1, 0, 0], classes: 2) == 2.0 / 3.0)
    #expect(DiceMetric.mean(prediction: [1, 1], truth: [0, 0], classes: 2) == nil)
}

// MARK: Split and planner

@Test(.tags(.unit)) func split_isDeterministicFirstPartTrains() {
    let s = SegmentationTrainer.split(count: 10, valSplit: 0.2)
    #expect(s.train == 0..<8)
    #expect(s.val == 8..<10)
    #expect(SegmentationTrainer.split(count: 1, valSplit: 0.2).val.isEmpty)
    #expect(SegmentationTrainer.split(count: 5, valSplit: 0).train == 0..<5)
}

private func spleenDefinition() throws -> TrainDefinition {
    let json = try JSONValue.parse("""
        {"labels": {"spleen": 1}, "dimension": 3,
         "network": {"name": "UNet", "out_channels": 2, "channels": [16, 32, 64, 128, 256], "strides": [2, 2, 2, 2]},
         "pre": [{"name": "Spacingd", "pixdim": [1.0, 1.0, 1.0]}],
         "train": {"spatial_size": [96, 96, 96], "num_samples": 4}}
        """)
    let object = try #require(json.objectValue)
    return try #require(try TrainDefinition(model: "spleen", definition: object))
}

@Test(.tags(.unit)) func planner_cpu_shrinksCropAndSamplesAndExplainsWhy() throws {
    let d = try spleenDefinition()
    let images = Array(repeating: ImageStats(spatialShape: [96, 96, 64], spacing: [1.5, 1.5, 2.0]), count: 4)
    let p = Planner.plan(definition: d, images: images, datasetSize: 10,
                         machine: MachineResources(cores: 2, availableRAMMB: 16000, gpuMemoryMB: nil))
    #expect(p.targetSpacing == [1, 1, 1])
    #expect(p.patchSize == [64, 64, 64])
    #expect(p.patchSize.allSatisfy { $0 % d.divisor == 0 })
    #expect(p.numSamples == 2)
    #expect(p.notes.count == 2)
    #expect(p.meanShape == [96, 96, 64])
}

@Test(.tags(.unit)) func planner_gpuAndSmallImages_keepModelCropUpToImageSize() throws {
    let d = try spleenDefinition()
    let images = [ImageStats(spatialShape: [40, 40, 20], spacing: [2, 2, 2])]  // 80 x 80 x 40 mm
    let p = Planner.plan(definition: d, images: images, datasetSize: 1,
                         machine: MachineResources(cores: 16, availableRAMMB: 64000, gpuMemoryMB: 24000))
    #expect(p.patchSize == [80, 80, 48])
    #expect(p.numSamples == 4)
    #expect(p.device == "cuda")
}

@Test(.tags(.unit)) func planner_littleRAM_coarsensSpacing() throws {
    let d = try spleenDefinition()
    let images = [ImageStats(spatialShape: [512, 512, 200], spacing: [0.8, 0.8, 2.5])]
    let p = Planner.plan(definition: d, images: images, datasetSize: 100,
                         machine: MachineResources(cores: 2, availableRAMMB: 2000, gpuMemoryMB: nil))
    #expect(p.targetSpacing[0] > 1)
    #expect(p.notes.contains { $0.contains("coarsened") })
}

@Test(.tags(.unit)) func planner_requestOverridesPlan() throws {
    let d = try spleenDefinition()
    let p = Planner.plan(definition: d, images: [], datasetSize: 1,
                         machine: MachineResources(cores: 2, availableRAMMB: 8000, gpuMemoryMB: nil),
                         request: ["spatial_size": [32, 32, 32], "target_spacing": 2.0, "num_samples": 3,
                                   "train_batch_size": 2])
    #expect(p.patchSize == [32, 32, 32])
    #expect(p.targetSpacing == [2, 2, 2])
    #expect(p.numSamples == 3)
    #expect(p.trainBatchSize == 2)
}

@Test(.tags(.unit)) func trainDefinition_unknownOptimizer_isRefused() throws {
    let json = try #require(try JSONValue.parse(#"{"network": {"name": "UNet"}, "train": {"optimizer": "Lion"}}"#).objectValue)
    #expect(throws: MONAILabelError.self) { try TrainDefinition(model: "m", definition: json) }
}

// MARK: Pre-processing sanity checks

private func writeVolume(_ url: URL, shape: [Int], values: [Float], spacing: Double = 1) throws {
    let affine = Affine([spacing, 0, 0, 0, 0, spacing, 0, 0, 0, 0, spacing, 0, 0, 0, 0, 1])
    try NIfTI.write(Volume(spatialShape: shape, data: .float32(values), affine: affine), to: url)
}

@Test(.tags(.unit)) func preprocessing_unknownLabelValues_warnAndBecomeBackground() throws {
    let tmp = TempDir()
    let d = try spleenDefinition()
    let plan = Planner.plan(definition: d, images: [], datasetSize: 1,
                            machine: MachineResources(cores: 2, availableRAMMB: 8000, gpuMemoryMB: nil))
    let image = tmp.url.appendingPathComponent("img.nii.gz"), label = tmp.url.appendingPathComponent("lab.nii.gz")
    try writeVolume(image, shape: [4, 4, 4], values: (0..<64).map(Float.init))
    try writeVolume(label, shape: [4, 4, 4], values: (0..<64).map { $0 < 8 ? 1 : ($0 < 12 ? 3 : 0) })
    var warnings: [String] = []
    let c = try #require(try TrainPreprocessing(definition: d, plan: plan).load(image: image.path, label: label.path,
                                                                              warnings: &warnings))
    #expect(warnings.count == 1)
    #expect(warnings.first?.contains("[3]") == true)
    #expect(Set(c.label.floats) == [0, 1])
}

@Test(.tags(.unit)) func preprocessing_mismatchedGrids_skipTheCaseWithAWarning() throws {
    let tmp = TempDir()
    let d = try spleenDefinition()
    let plan = Planner.plan(definition: d, images: [], datasetSize: 1,
                            machine: MachineResources(cores: 2, availableRAMMB: 8000, gpuMemoryMB: nil))
    let image = tmp.url.appendingPathComponent("img.nii.gz"), label = tmp.url.appendingPathComponent("lab.nii.gz")
    try writeVolume(image, shape: [4, 4, 4], values: [Float](repeating: 0, count: 64))
    try writeVolume(label, shape: [4, 4, 2], values: [Float](repeating: 0, count: 32))
    var warnings: [String] = []
    let c = try TrainPreprocessing(definition: d, plan: plan).load(image: image.path, label: label.path, warnings: &warnings)
    #expect(c == nil)
    #expect(warnings.first?.contains("does not match") == true)
}

@Test(.tags(.unit)) func appJsonDimensionOutside2Or3_isAnErrorNamingTheModel_notATrap() throws {
    for dimension in [-1, 0, 1, 4, 1_000_000_000_000] {
        let definition: JSONObject = [
            "dimension": .int(dimension), "labels": ["spleen": 1],
            "network": ["name": "UNet", "spatial_dims": 3, "in_channels": 1, "out_channels": 2, "channels": [4, 8],
                        "strides": [2], "num_res_units": 0],
            "train": ["spatial_size": 8],
        ]
        #expect(throws: MONAILabelError.invalid("model tiny: dimension must be 2 or 3")) {
            _ = try TrainDefinition(model: "tiny", definition: definition)
        }
        #expect(throws: MONAILabelError.invalid("model tiny: dimension must be 2 or 3")) {
            _ = try SegmentationTask(name: "tiny", definition: definition, modelDir: TempDir().url)
        }
    }
    #expect(TrainDefinition.ints(8, count: -1) == nil)
}
