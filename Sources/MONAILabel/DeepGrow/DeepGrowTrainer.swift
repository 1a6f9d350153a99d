import Foundation
import Imaging
import TorchKit

/// One DeepGrow training sample after the deterministic transforms: a depth-first image (`[D, H, W]`, or one
/// `[H, W]` slice for 2D) at the model's size, normalised, and the binary mask of one label value.
struct DeepGrowSample: Sendable {
    var image: [Float]
    var label: [Float]
    /// `FindAllValidSlicesd` (3D only).
    var validSlices: [Int]
}

/// Upstream's radiology `Deepgrow` trainer (spec section 5.2), in-process: `create_dataset` (RAS, 1 mm, depth
/// first; one sample per label value, per slice for 2D), `SpatialCropForegroundd` (`roi_size`), `Resized`
/// (area / nearest) to `model_size`, `NormalizeIntensityd` (−208, ÷388); then per batch `AddInitialSeedPointd`
/// and `max_train_interactions` rounds of click simulation (network in eval mode, `FindDiscrepancyRegionsd`,
/// `AddRandomGuidanced` with probability 1 − j/max, `AddGuidanceSignald`) before the training step with
/// `DiceLoss(sigmoid, squared_pred)` and Adam. Validation every `val_interval` epochs simulates
/// `max_val_interactions` clicks (probability 1) and scores Dice of sigmoid > 0.5. The best model is saved and
/// published atomically, `train_stats.json` written after every epoch, as for segmentation.
///
/// One deliberate difference: upstream's train-time click probability is a one-element list zipped with the
/// batch, so only the first sample of a batch ever gets corrective clicks; here every sample does.
public final class DeepGrowTrainer {
    let definition: TrainDefinition
    let datalist: [DatalistItem]
    let paths: TrainPaths
    let settings: TrainSettings
    let log: SegmentationTrainer.LogSink
    let progress: SegmentationTrainer.ProgressSink
    let dimension: Int
    let roiSize: [Int]
    let modelSize: [Int]
    let maxTrainInteractions: Int
    let maxValInteractions: Int

    /// A trainer for the client's `request` over the definition's defaults; 422 naming a malformed parameter.
    public convenience init(definition: TrainDefinition, datalist: [DatalistItem], paths: TrainPaths, request: JSONObject,
                            log: @escaping SegmentationTrainer.LogSink,
                            progress: @escaping SegmentationTrainer.ProgressSink = { _ in }) throws
    {
        try self.init(definition: definition, datalist: datalist, paths: paths,
                      settings: try TrainSettings(definition: definition, request: request), log: log, progress: progress)
    }

    init(definition: TrainDefinition, datalist: [DatalistItem], paths: TrainPaths, settings: TrainSettings,
         log: @escaping SegmentationTrainer.LogSink, progress: @escaping SegmentationTrainer.ProgressSink) throws
    {
        self.definition = definition
        self.datalist = datalist.sorted { $0.image < $1.image }
        self.paths = paths
        self.settings = settings
        self.log = log
        self.progress = progress
        let d = definition.modelDefinition
        let t = d["train"]?.objectValue ?? JSONObject()
        dimension = d["dimension"]?.intValue ?? 3
        let defaultSize = dimension == 2 ? [256, 256] : [128, 192, 192]
        modelSize = try DeepGrowTask.sizes(t["model_size"] ?? d["model_size"], default: defaultSize, what: "model_size")
        roiSize = try DeepGrowTask.sizes(t["roi_size"], default: modelSize, what: "roi_size")
        guard modelSize.count == dimension, roiSize.count == dimension else {
            throw MONAILabelError.invalid("\(definition.model): roi_size and model_size need \(dimension) values")
        }
        maxTrainInteractions = max(0, t["max_train_interactions"]?.intValue ?? (dimension == 2 ? 10 : 15))
        maxValInteractions = max(0, t["max_val_interactions"]?.intValue ?? (dimension == 2 ? 5 : 10))
    }

    /// Runs the training and returns the final stats (the `train_stats.json` dict).
    public func run() throws -> JSONObject {
        let seed = settings.seed, device = settings.device
        let batchSize = max(1, settings.config["train_batch_size"]?.intValue ?? 1)

        guard !datalist.isEmpty else {
            throw MONAILabelError.invalid("no images with a final label: save a final label before training")
        }
        let samples = try buildDataset()
        guard !samples.isEmpty else { throw MONAILabelError.invalid("no labelled voxels to train \(definition.model) on") }
        let (trainRange, valRange) = SegmentationTrainer.split(count: samples.count, valSplit: settings.valSplit)
        let train = Array(samples[trainRange]), val = Array(samples[valRange])
        log("Deepgrow-\(dimension)D dataset: \(samples.count) samples (train \(train.count), validation \(val.count)); "
            + "roi \(roiSize), model \(modelSize); interactions \(maxTrainInteractions)/\(maxValInteractions)")

        let epochLength = (settings.shardCount(train.count) + batchSize - 1) / batchSize
        let loop = try TrainLoop(definition: definition, settings: settings, paths: paths, epochLength: epochLength,
                                 validating: !val.isEmpty, log: log, progress: progress)
        let net = loop.net
        let optimizer = try loop.optimizer(named: definition.optimizer, fallback: "Adam", weightDecay: definition.weightDecay)
        let loss = SigmoidDiceLoss(squaredPred: true)
        var rng = SeededGenerator(seed: seed &+ 0xD6)
        let perSample = modelSize.reduce(1, *)

        var order: [Int] = []
        return try loop.run(
            beginEpoch: { epoch in
                order = Array(0..<train.count)
                if settings.dataParallel == nil {
                    order.shuffle(using: &rng)
                } else {
                    // `rng` also simulates clicks, differently on every rank: the ranks' common order needs a
                    // generator of its own, seeded alike on every rank.
                    var epochOrder = SeededGenerator(seed: seed &+ 0xD6 &+ UInt64(epoch) &* 0x9E37_79B9)
                    order.shuffle(using: &epochOrder)
                    order = settings.shard(order)
                }
            },
            step: { _, it in
                let batch = order[((it - 1) * batchSize)..<min(it * batchSize, order.count)].map { train[$0] }
                var guidance = try batch.map { try seedGuidance($0, using: &rng) }
                try simulateClicks(net, batch, &guidance, rounds: maxTrainInteractions, device: device, train: true,
                                   using: &rng)
                net.train()
                let x = try Tensor(input(batch, guidance), shape: [batch.count, 3] + modelSize).to(device)
                let y = try Tensor(batch.flatMap(\.label), shape: [batch.count, 1] + modelSize).to(device)
                let (logits, lv) = try loop.step(x, y, optimizer: optimizer) { try loss($0, $1) }
                let pred = try Torch.withNoGrad { try logits.detach().to(dtype: .float32, device: .cpu).floats() }
                var dice = 0.0
                for (b, s) in batch.enumerated() {
                    dice += Self.dice(Array(pred[b * perSample..<(b + 1) * perSample]), s.label) / Double(batch.count)
                }
                return TrainLoop.Step(loss: lv, dice: [dice])
            },
            validate: { _ in
                // The same clicks every validation, so scores compare across epochs.
                var vrng = SeededGenerator(seed: seed &+ 0x7A1)
                var scores: [Double] = []
                for s in val {
                    var g = [try seedGuidance(s, using: &vrng)]
                    try simulateClicks(net, [s], &g, rounds: maxValInteractions, device: device, train: false, using: &vrng)
                    let logits = try forward(net, [s], g, device: device)
                    scores.append(Self.dice(logits, s.label))
                }
                return scores.reduce(0, +) / Double(scores.count)
            })
    }

    // MARK: Dataset

    /// `create_dataset` plus the cached part of `train_pre_transforms`.
    func buildDataset() throws -> [DeepGrowSample] {
        var out: [DeepGrowSample] = []
        for item in datalist {
            let id = URL(fileURLWithPath: item.image).lastPathComponent
            var img = try ImageIO.load(URL(fileURLWithPath: item.image))
            var lab = try ImageIO.load(URL(fileURLWithPath: item.label))
            guard img.spatialShape.count == 3, img.spatialShape == lab.spatialShape,
                TrainPreprocessing.close(img.affine, lab.affine)
            else {
                log("WARNING: \(id): label grid \(lab.spatialShape) does not match the image's \(img.spatialShape); case skipped")
                continue
            }
            img = try Spacing(pixdim: [1, 1, 1], mode: .bilinear)(try Orientation(axcodes: "RAS")(img))
            lab = try Spacing(pixdim: [1, 1, 1], mode: .nearest)(try Orientation(axcodes: "RAS")(lab))
            let shape = img.spatialShape
            let image = DeepGrow.depthFirst(img.floats, shape: shape)
            let label = DeepGrow.depthFirst(lab.floats, shape: shape).map { $0.rounded() }
            let depthFirstShape = [shape[2], shape[0], shape[1]]
            if dimension == 3 {
                for value in Set(label).subtracting([0]).sorted() {
                    out.append(try sample(image, label.map { $0 == value ? 1 : 0 }, shape: depthFirstShape))
                }
            } else {
                let plane = shape[0] * shape[1]
                for sid in 0..<shape[2] {
                    let ls = Array(label[sid * plane..<(sid + 1) * plane])
                    let values = Set(ls).subtracting([0]).sorted()
                    guard !values.isEmpty else { continue }
                    let slice = Array(image[sid * plane..<(sid + 1) * plane])
                    for value in values {
                        out.append(try sample(slice, ls.map { $0 == value ? 1 : 0 }, shape: [shape[0], shape[1]]))
                    }
                }
            }
        }
        return out
    }

    /// `SpatialCropForegroundd`, `Resized` (area for the image, nearest for the label), `NormalizeIntensityd`,
    /// `FindAllValidSlicesd`.
    private func sample(_ image: [Float], _ label: [Float], shape: [Int]) throws -> DeepGrowSample {
        let box = DeepGrow.foregroundCropBox(label, shape: shape, spatialSize: roiSize)
        let img = try Resize(spatialSize: modelSize, mode: .area)(
            try Volume(spatialShape: shape, data: .float32(image), affine: .identity).cropped(to: box))
        let lab = try Resize(spatialSize: modelSize, mode: .nearest)(
            try Volume(spatialShape: shape, data: .float32(label), affine: .identity).cropped(to: box))
        let l = lab.floats
        return DeepGrowSample(image: img.floats.map { ($0 - 208) / 388 }, label: l,
                              validSlices: dimension == 3 ? DeepGrow.validSlices(l, shape: modelSize) : [])
    }

    // MARK: Click simulation

    private func seedGuidance(_ s: DeepGrowSample, using rng: inout SeededGenerator) throws -> Guidance {
        try DeepGrow.initialSeedPoints(label: s.label, shape: modelSize, validSlices: s.validSlices, using: &rng)
    }

    /// Upstream's `Interaction`: `rounds` times, predict with the current clicks (eval mode, no gradients) and
    /// add a corrective click where the prediction is most wrong.
    private func simulateClicks(
        _ net: any Layer, _ batch: [DeepGrowSample], _ guidance: inout [Guidance], rounds: Int, device: Device,
        train: Bool, using rng: inout SeededGenerator
    ) throws {
        guard rounds > 0 else { return }
        net.eval()
        let n = modelSize.reduce(1, *)
        for j in 0..<rounds {
            let logits = try forward(net, batch, guidance, device: device)
            let probability = train ? 1 - Double(j) / Double(rounds) : 1
            for b in 0..<batch.count {
                let probs = logits[b * n..<(b + 1) * n].map { 1 / (1 + Foundation.exp(-$0)) }
                let (missed, extra) = DeepGrow.discrepancy(label: batch[b].label, probability: probs)
                DeepGrow.addRandomGuidance(&guidance[b], missed: missed, extra: extra, shape: modelSize,
                                           probability: probability, using: &rng)
            }
        }
    }

    /// The network's logits for `batch` with `guidance`, no gradients, on the host.
    private func forward(_ net: any Layer, _ batch: [DeepGrowSample], _ guidance: [Guidance], device: Device) throws -> [Float] {
        try Torch.withNoGrad {
            let x = try Tensor(input(batch, guidance), shape: [batch.count, 3] + modelSize).to(device)
            return try net(x).to(dtype: .float32, device: .cpu).floats()
        }
    }

    /// `AddGuidanceSignald`: image, positive and negative signal per sample, stacked.
    private func input(_ batch: [DeepGrowSample], _ guidance: [Guidance]) -> [Float] {
        var out: [Float] = []
        for (s, g) in zip(batch, guidance) { out += s.image + DeepGrow.guidanceSignal(g, shape: modelSize) }
        return out
    }

    /// Dice of `logits >= 0` (sigmoid > 0.5) against a binary label; 1 when both are empty.
    static func dice(_ logits: [Float], _ label: [Float]) -> Double {
        var inter = 0, p = 0, g = 0
        for i in 0..<min(logits.count, label.count) {
            let a = logits[i] >= 0, b = label[i] > 0.5
            if a { p += 1 }
            if b { g += 1 }
            if a && b { inter += 1 }
        }
        return p + g == 0 ? 1 : 2 * Double(inter) / Double(p + g)
    }
}
