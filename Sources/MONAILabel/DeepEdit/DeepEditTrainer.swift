import Foundation
import Imaging
import TorchKit

/// Upstream's radiology DeepEdit trainer (spec sections 4.2 and 5.2), in-process: the model's pre-transforms
/// (`Orientationd`, `ScaleIntensityRanged`), `NormalizeLabelsInDatasetd`, `Resized` to `spatial_size` (area for
/// the image, nearest for the label), random flips / quarter turns / intensity shift, initial seed clicks per
/// label, and MONAI's DeepEdit `Interaction`: with probability `deepgrow_probability` (0.4 training, 1.0
/// validation) the network is run `max_*_interactions` times to add clicks where it is wrong, otherwise the
/// guidance channels are zeroed (so the model also learns automatic segmentation). DiceCE (softmax, one-hot),
/// Adam 1e-4; the best validation `val_mean_dice` is saved as `model.pt` and published atomically, and
/// `train_stats.json` is written after every epoch.
///
/// One deliberate difference: the random flips and turns are applied after `Resized` instead of before (the
/// resized volume is cached once, so an iteration does not resize a full-size CT again); with a cubic
/// `spatial_size` the distribution of training samples is the same.
public final class DeepEditTrainer {
    let definition: TrainDefinition
    let model: JSONObject
    let datalist: [DatalistItem]
    let paths: TrainPaths
    let settings: TrainSettings
    let log: SegmentationTrainer.LogSink
    let progress: SegmentationTrainer.ProgressSink

    /// `model` is the model's whole `app.json` definition (labels, pre-transforms, `sigma`, ...).
    init(definition: TrainDefinition, model: JSONObject, datalist: [DatalistItem], paths: TrainPaths,
         settings: TrainSettings, log: @escaping SegmentationTrainer.LogSink,
         progress: @escaping SegmentationTrainer.ProgressSink)
    {
        self.definition = definition
        self.model = model
        self.datalist = datalist.sorted { $0.image < $1.image }
        self.paths = paths
        self.settings = settings
        self.log = log
        self.progress = progress
    }

    /// A trainer for the client's `request` over the definition's defaults; 422 naming a malformed parameter.
    public convenience init(definition: TrainDefinition, model: JSONObject, datalist: [DatalistItem], paths: TrainPaths,
                            request: JSONObject, log: @escaping SegmentationTrainer.LogSink,
                            progress: @escaping SegmentationTrainer.ProgressSink = { _ in }) throws
    {
        self.init(definition: definition, model: model, datalist: datalist, paths: paths,
                  settings: try TrainSettings(definition: definition, request: request), log: log, progress: progress)
    }

    /// A cached case: the resized image (intensity channels) and its normalised label volume.
    struct Case {
        var id: String
        var image: Volume
        var label: Volume
    }

    /// The click-simulation settings of a run.
    struct Interaction {
        var deepgrowProbability: Double
        var maxInteractions: Int
        var train: Bool
    }

    public func run() throws -> JSONObject {
        let cfg = settings.config
        let train = model["train"]?.objectValue ?? JSONObject()
        func setting(_ key: String, _ fallback: Double) throws -> Double {
            try cfg.doubleParam(key, in: 0...1000) ?? train.doubleParam(key, in: 0...1000) ?? fallback
        }
        let maxEpochs = settings.maxEpochs, seed = settings.seed, device = settings.device
        let spatial = TrainDefinition.ints(cfg["spatial_size"], count: 3) ?? definition.spatialSize
        let trainInteraction = Interaction(
            deepgrowProbability: try setting("deepgrow_probability_train", 0.4),
            maxInteractions: max(1, Int(try setting("max_train_interactions", 1))), train: true)
        let valInteraction = Interaction(
            deepgrowProbability: try setting("deepgrow_probability_val", 1.0),
            maxInteractions: max(1, Int(try setting("max_val_interactions", 1))), train: false)
        let labels = try DeepEditLabel.from(definition.labels)
        let intensity = model["number_intensity_ch"]?.intValue ?? 1
        let signal = AddGuidanceSignalDeepEdit(sigma: model["sigma"]?.doubleValue ?? 3, intensityChannels: intensity)
        let simulation = DeepEditClickSimulation(labels: labels, shape: spatial)

        guard !datalist.isEmpty else {
            throw MONAILabelError.invalid("no images with a final label: save a final label before training")
        }
        let (trainRange, valRange) = SegmentationTrainer.split(count: datalist.count, valSplit: settings.valSplit)
        log("Train: \(trainRange.count) cases; validation: \(valRange.count) cases; epochs: \(maxEpochs); "
            + "spatial_size: \(spatial)")
        let pre = try (model["pre"]?.arrayValue ?? []).compactMap(\.objectValue).map { try PreTransform($0) }
        let axcodes = (model["pre"]?.arrayValue ?? []).compactMap(\.objectValue)
            .first { ($0["name"]?.stringValue ?? "").hasPrefix("Orientation") }.map { $0["axcodes"]?.stringValue ?? "RAS" }
        var cases: [Case] = []
        for item in datalist {
            let id = URL(fileURLWithPath: item.image).lastPathComponent
            do {
                cases.append(try Self.load(item, id: id, pre: pre, axcodes: axcodes, labels: labels, spatial: spatial))
            } catch {
                log("WARNING: \(id): \(error); case skipped")
            }
        }
        let trainCases = trainRange.compactMap { i in cases.first { $0.id == URL(fileURLWithPath: datalist[i].image).lastPathComponent } }
        let valCases = valRange.compactMap { i in cases.first { $0.id == URL(fileURLWithPath: datalist[i].image).lastPathComponent } }
        guard !trainCases.isEmpty else { throw MONAILabelError.invalid("no usable training case (see warnings)") }

        // A given seed also fixes the network's initial weights (libtorch's global generator).
        let loop = try TrainLoop(definition: definition, settings: settings, paths: paths,
                                 epochLength: settings.shardCount(trainCases.count),
                                 validating: !valCases.isEmpty,
                                 initialSeed: cfg["seed"]?.intValue.flatMap { $0 >= 0 ? UInt64($0) : nil }, log: log,
                                 progress: progress)
        let net = loop.net
        // Upstream trains DeepEdit with plain Adam (no weight decay); app.json may name another optimizer.
        let optimizer = try loop.optimizer(named: definition.optimizer, fallback: "Adam",
                                           weightDecay: train["weight_decay"]?.doubleValue ?? 0)
        let loss = DiceCELoss(squaredPred: false, batch: false)
        let classes = labels.filter { !$0.isBackground }.count + 1

        loop.record.train.name = "train_dice"
        var shuffler = SeededGenerator(seed: seed &+ 17)
        var order: [Int] = []
        var perLabel = [String: (sum: Double, count: Int)]()
        return try loop.run(
            beginEpoch: { _ in
                order = Array(0..<trainCases.count)
                order.shuffle(using: &shuffler)
                order = settings.shard(order)
                perLabel = [:]
            },
            step: { epoch, iteration in
                let it = iteration - 1
                var rng = SeededGenerator(seed: seed &+ UInt64(epoch) &* 0x9E37_79B9 &+ UInt64(it) &* 0x85EB_CA6B)
                let c = try Self.augment(trainCases[order[it]], using: &rng)
                let labelBytes = c.label.floats.map { UInt8(clamping: Int($0)) }
                let input = try interact(net, image: c.image, label: labelBytes, simulation: simulation, signal: signal,
                                         settings: trainInteraction, device: device, using: &rng)
                net.train()
                let y = try Tensor(c.label.floats, shape: [1, 1] + spatial).to(device)
                let (logits, lv) = try loop.step(input, y, optimizer: optimizer) { try loss($0, $1) }
                let pred = try Torch.withNoGrad { try logits.detach().argmax(dim: 1).to(dtype: .float32, device: .cpu).floats() }
                let truth = c.label.floats
                for l in labels where !l.isBackground {
                    guard let d = Self.labelDice(pred, truth, index: l.index) else { continue }
                    let s = perLabel[l.name] ?? (0, 0)
                    perLabel[l.name] = (s.sum + d, s.count + 1)
                }
                let dice = DiceMetric.mean(prediction: pred, truth: truth, classes: classes)
                return TrainLoop.Step(loss: lv, dice: dice.map { [$0] } ?? [])
            },
            epochNote: {
                labels.filter { !$0.isBackground }.compactMap { l in
                    perLabel[l.name].map { String(format: "%@_dice: %.4f", l.name, $0.sum / Double(max($0.count, 1))) }
                }.joined(separator: ", ")
            },
            validate: { _ in
                var scores: [Double] = []
                for (vi, c) in valCases.enumerated() {
                    var rng = SeededGenerator(seed: seed &+ 0xDEED &+ UInt64(vi))
                    let labelBytes = c.label.floats.map { UInt8(clamping: Int($0)) }
                    let input = try interact(net, image: c.image, label: labelBytes, simulation: simulation,
                                             signal: signal, settings: valInteraction, device: device, using: &rng)
                    let pred = try predict(net, input)
                    if let d = DiceMetric.mean(prediction: pred.map(Float.init), truth: c.label.floats, classes: classes) {
                        scores.append(d)
                    }
                }
                return scores.isEmpty ? 0 : scores.reduce(0, +) / Double(scores.count)
            })
    }

    /// The network input of one sample after the initial seed clicks and MONAI's DeepEdit `Interaction`.
    func interact(
        _ net: any Layer, image: Volume, label: [UInt8], simulation: DeepEditClickSimulation,
        signal: AddGuidanceSignalDeepEdit, settings: Interaction, device: Device, using rng: inout SeededGenerator
    ) throws -> Tensor {
        var guidance = simulation.initialSeeds(label, using: &rng)
        guard rng.uniform() < settings.deepgrowProbability else {
            // No simulated clicks this time: zero guidance, the automatic-segmentation input.
            let empty = guidance.map { LabelGuidance(label: $0.label, points: []) }
            return try Self.tensor(signal(image, guidance: empty), device: device)
        }
        var input = try Self.tensor(signal(image, guidance: guidance), device: device)
        for j in 0..<settings.maxInteractions {
            let pred = try predict(net, input)
            let probability = settings.train ? 1 - Double(j) / Double(settings.maxInteractions) : 1
            guidance = simulation.addRandomGuidance(guidance, label: label, prediction: pred, probability: probability,
                                                    using: &rng)
            input = try Self.tensor(signal(image, guidance: guidance), device: device)
        }
        return input
    }

    /// Argmax of the network in eval mode, as bytes on the host.
    func predict(_ net: any Layer, _ input: Tensor) throws -> [UInt8] {
        net.eval()
        return try Torch.withNoGrad {
            try SegmentationTask.argmaxOverChannels(try net(input)).to(dtype: .uint8, device: .cpu).array(of: UInt8.self)
        }
    }

    static func tensor(_ v: Volume, device: Device) throws -> Tensor {
        try Tensor(v.floats, shape: [1] + v.shape).to(device)
    }

    /// Dice of one class, nil when the truth lacks it.
    static func labelDice(_ pred: [Float], _ truth: [Float], index: Int) -> Double? {
        let v = Float(index)
        var inter = 0, p = 0, g = 0
        for i in 0..<min(pred.count, truth.count) {
            let a = pred[i] == v, b = truth[i] == v
            if a { p += 1 }
            if b { g += 1 }
            if a && b { inter += 1 }
        }
        return g > 0 ? 2 * Double(inter) / Double(p + g) : nil
    }

    /// Loads one pair: pre-transforms on the image, the same orientation on the label, label values normalised
    /// to channel indices, both resized to `spatial` (area / nearest).
    static func load(_ item: DatalistItem, id: String, pre: [PreTransform], axcodes: String?, labels: [DeepEditLabel],
                     spatial: [Int]) throws -> Case
    {
        var image = try ImageIO.load(URL(fileURLWithPath: item.image))
        var label = try ImageIO.load(URL(fileURLWithPath: item.label))
        guard image.spatialShape.count == 3, image.spatialShape == label.spatialShape, label.channels == 1 else {
            throw MONAILabelError.invalid("label \(label.shape) does not match the image \(image.shape)")
        }
        label = Volume(spatialShape: label.spatialShape, data: .uint8(DeepEditClickSimulation.normalize(label.floats, labels: labels)),
                       affine: label.affine)
        for t in pre { try t.run(&image) }
        if let axcodes { label = try Orientation(axcodes: axcodes)(label) }
        guard image.spatialShape == label.spatialShape else {
            throw MONAILabelError.invalid("image and label reorient to different grids")
        }
        return Case(id: id, image: try Resize(spatialSize: spatial, mode: .area)(image),
                    label: try Resize(spatialSize: spatial, mode: .nearest)(label))
    }

    /// `RandFlipd` per axis (p 0.1), `RandRotate90d` (p 0.1, in the first two axes when they are equal, so the
    /// shape is kept) on image and label together, and `RandShiftIntensityd` (offsets 0.1, p 0.5) on the image.
    static func augment(_ c: Case, using rng: inout SeededGenerator) throws -> Case {
        var vs = [c.image, c.label]
        for axis in 0..<3 { vs = try RandFlip(prob: 0.1, spatialAxis: [axis])(vs, using: &rng) }
        if vs[0].spatialShape[0] == vs[0].spatialShape[1] {
            vs = try RandRotate90(prob: 0.1, maxK: 3, spatialAxes: (0, 1))(vs, using: &rng)
        }
        let image = RandShiftIntensity(offsets: 0.1, prob: 0.5)(vs[0], using: &rng)
        return Case(id: c.id, image: image, label: vs[1])
    }
}
