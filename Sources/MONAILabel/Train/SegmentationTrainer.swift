import Foundation
import Imaging
import TorchKit

/// Where a run reads and writes (spec section 4.2): `<model_dir>/<name>/model.pt` (best validation Dice),
/// `checkpoint_final.pt`, `stats_<run_id>.json`; `<model_dir>/train_stats.json`; and the published file
/// inference loads.
public struct TrainPaths: Sendable {
    public var modelDir: URL
    public var publishPath: URL
    /// Weights to start from when `pretrained` (upstream's `load_path`); nil or missing means random init.
    public var loadPath: URL?

    public init(modelDir: URL, publishPath: URL, loadPath: URL?) {
        self.modelDir = modelDir
        self.publishPath = publishPath
        self.loadPath = loadPath
    }
}

/// Upstream's `BasicTrainTask` for segmentation models, in-process: split the datalist, plan, cache the
/// preprocessed cases, train with DiceCE, validate by sliding-window Dice every `val_interval` epochs, keep
/// and publish the best model atomically, and write `train_stats.json` after every epoch.
public final class SegmentationTrainer {
    /// A line for the job's log (the server shows the last 20 as `details`).
    public typealias LogSink = (String) -> Void
    /// Progress after each iteration: epoch, total_epochs, iteration, total_iterations, eta (seconds).
    public typealias ProgressSink = (JSONObject) -> Void

    let definition: TrainDefinition
    let datalist: [DatalistItem]
    let paths: TrainPaths
    let settings: TrainSettings
    let machine: MachineResources
    let log: LogSink
    let progress: ProgressSink

    init(definition: TrainDefinition, datalist: [DatalistItem], paths: TrainPaths, settings: TrainSettings,
         machine: MachineResources = .current(), log: @escaping LogSink, progress: @escaping ProgressSink = { _ in })
    {
        self.definition = definition
        self.datalist = datalist.sorted { $0.image < $1.image }
        self.paths = paths
        self.settings = settings
        self.machine = machine
        self.log = log
        self.progress = progress
    }

    /// The deterministic split of `val_split` (MONAI `partition_dataset(shuffle=False)`): the first part
    /// trains, the rest validates; at least one case trains.
    public static func split(count: Int, valSplit: Double) -> (train: Range<Int>, val: Range<Int>) {
        guard valSplit > 0, count >= 2 else { return (0..<count, count..<count) }
        let nTrain = min(count - 1, max(1, Int(Double(count) * (1 - min(valSplit, 1)))))
        return (0..<nTrain, nTrain..<count)
    }

    /// Runs the training and returns the final stats (the `train_stats.json` dict).
    public func run() throws -> JSONObject {
        let maxEpochs = settings.maxEpochs, seed = settings.seed, device = settings.device

        guard !datalist.isEmpty else {
            throw MONAILabelError.invalid("no images with a final label: save a final label before training")
        }
        let (trainRange, valRange) = Self.split(count: datalist.count, valSplit: settings.valSplit)
        let stats = Planner.sampleStats(datalist[trainRange].map(\.image))
        let plan = Planner.plan(definition: definition, images: stats, datasetSize: datalist.count, machine: machine,
                                request: settings.request)
        log("Plan: \(JSONValue.object(plan.json).compactString())")
        for n in plan.notes { log("Planner: \(n)") }
        log("Train: \(trainRange.count) cases; validation: \(valRange.count) cases; epochs: \(maxEpochs)")

        // CacheDataset: every case preprocessed once, in parallel.
        let pre = try TrainPreprocessing(definition: definition, plan: plan)
        let items = datalist
        let slots = CacheSlots(count: items.count)
        DispatchQueue.concurrentPerform(iterations: items.count) { i in
            var warnings: [String] = []
            do {
                let c = try pre.load(image: items[i].image, label: items[i].label, warnings: &warnings)
                slots.set(i, c, warnings: warnings, error: nil)
            } catch {
                slots.set(i, nil, warnings: warnings, error: "\(URL(fileURLWithPath: items[i].image).lastPathComponent): \(error)")
            }
        }
        for w in slots.warnings { log("WARNING: \(w)") }
        let trainCases = try trainRange.compactMap { slots.cases[$0] }.map {
            try Self.foregroundPadded($0, plan.patchSize, crop: definition.cropForeground)
        }
        let valCases = valRange.compactMap { slots.cases[$0] }
        guard !trainCases.isEmpty else { throw MONAILabelError.invalid("no usable training case (see warnings)") }
        log("Cached \(trainCases.count + valCases.count) preprocessed cases")

        // Network, optimizer, resume / pretrained weights.
        let batchSize = plan.trainBatchSize
        let epochLength = (settings.shardCount(trainCases.count) + batchSize - 1) / batchSize
        let loop = try TrainLoop(definition: definition, settings: settings, paths: paths, epochLength: epochLength,
                                 validating: !valCases.isEmpty, log: log, progress: progress)
        let net = loop.net
        let optimizer = try loop.optimizer(named: definition.optimizer, fallback: "AdamW", weightDecay: definition.weightDecay,
                                           momentum: definition.momentum)
        let loss = definition.diceCELoss

        // Batches for every epoch, built ahead on worker threads.
        var schedule: [[Int]] = []
        var shuffler = SeededGenerator(seed: seed &+ 17)
        for _ in 0..<maxEpochs {
            var order = Array(0..<trainCases.count)
            order.shuffle(using: &shuffler)
            // Every rank shuffles alike (same seed) and takes its own shard of the order.
            let mine = settings.shard(order)
            schedule += stride(from: 0, to: mine.count, by: batchSize).map { Array(mine[$0..<min($0 + batchSize, mine.count)]) }
        }
        let loader = CropLoader(cases: trainCases, schedule: schedule, patch: plan.patchSize,
                                numSamples: plan.numSamples, seed: seed &+ UInt64(settings.dataParallel?.rank ?? 0),
                                augmentation: definition.augmentation, workers: max(1, machine.cores / 2))
        defer { loader.stop() }

        let classes = definition.outChannels
        let inferer = SlidingWindowInferer(roiSize: definition.valRoiSize, swBatchSize: 1, overlap: 0.25)
        return try loop.run(
            step: { epoch, it in
                let b = try loader.batch((epoch - 1) * epochLength + it - 1)
                let x = try Tensor(b.image, shape: b.shape).to(device)
                let y = try Tensor(b.label, shape: b.shape).to(device)
                let (logits, lv) = try loop.step(x, y, optimizer: optimizer) { try loss($0, $1) }
                let pred = try Torch.withNoGrad { try logits.detach().argmax(dim: 1).to(dtype: .float32, device: .cpu).floats() }
                let per = b.shape[2...].reduce(1, *)
                let dice = (0..<b.shape[0]).compactMap { s in
                    DiceMetric.mean(prediction: Array(pred[s * per..<(s + 1) * per]),
                                    truth: Array(b.label[s * per..<(s + 1) * per]), classes: classes)
                }
                return TrainLoop.Step(loss: lv, dice: dice)
            },
            validate: { _ in
                var scores: [Double] = []
                try Torch.withNoGrad {
                    for c in valCases {
                        let input = try Tensor(c.image.floats, shape: [1] + c.image.shape).to(device)
                        let out = try inferer(input, predictingRegion: { try forward(net, $0, outputRegion: $1) })
                        let pred = try out.argmax(dim: 1).to(dtype: .float32, device: .cpu).floats()
                        if let d = DiceMetric.mean(prediction: pred, truth: c.label.floats, classes: classes) { scores.append(d) }
                    }
                }
                return scores.isEmpty ? 0 : scores.reduce(0, +) / Double(scores.count)
            })
    }

    /// CropForegroundd on the image (`x > 0`; unless `crop` is false), the same box on the label, then
    /// SpatialPadd to the crop.
    static func foregroundPadded(_ c: CachedCase, _ patch: [Int], crop: Bool = true) throws -> CachedCase {
        var box = CropForeground().boundingBox(of: c.image)
        if !crop || box.size.contains(where: { $0 <= 0 }) {
            box = SpatialBox(start: [Int](repeating: 0, count: patch.count), end: c.image.spatialShape)
        }
        let pad = SpatialPad(spatialSize: patch)
        return CachedCase(id: c.id, image: try pad(try c.image.cropped(to: box)), label: try pad(try c.label.cropped(to: box)))
    }

    static func runID(_ d: Date) -> String {
        let f = DateFormatter()
        f.dateFormat = "yyyyMMdd_HHmmss"
        f.locale = Locale(identifier: "en_US_POSIX")
        return f.string(from: d)
    }

    /// The run folder name comes from the request: one plain path component.
    static func safeName(_ n: String) throws -> String {
        guard !n.isEmpty, n != ".", n != "..", !n.contains("/"), !n.contains("\0") else {
            throw MONAILabelError.invalid("train 'name' must be a plain folder name, not '\(n)'")
        }
        return n
    }
}

/// Results of the parallel caching step.
private final class CacheSlots: @unchecked Sendable {
    private let lock = NSLock()
    private(set) var cases: [CachedCase?]
    private var warningLists: [[String]]

    init(count: Int) {
        cases = Array(repeating: nil, count: count)
        warningLists = Array(repeating: [], count: count)
    }

    func set(_ i: Int, _ c: CachedCase?, warnings: [String], error: String?) {
        lock.lock()
        cases[i] = c
        warningLists[i] = warnings + (error.map { ["\($0); case skipped"] } ?? [])
        lock.unlock()
    }

    var warnings: [String] { warningLists.flatMap { $0 } }
}

/// The numbers behind upstream's `train_stats.json` (spec section 4.2).
struct StatsRecord {
    struct Metric {
        var name: String
        var value = 0.0
        var best = -1.0
        var bestEpoch = -1
    }

    let totalEpochs: Int
    let epochLength: Int
    let startTS: Int
    let validating: Bool
    var iteration = 0
    var currentEpoch = 0
    var train = Metric(name: "train_mean_dice")
    var eval = Metric(name: "val_mean_dice")

    init(totalEpochs: Int, epochLength: Int, startTS: Int, validating: Bool) {
        self.totalEpochs = totalEpochs
        self.epochLength = epochLength
        self.startTS = startTS
        self.validating = validating
    }

    mutating func epochDone(_ epoch: Int, trainDice: Double) {
        currentEpoch = epoch
        train.value = trainDice
        if trainDice > train.best {
            train.best = trainDice
            train.bestEpoch = epoch
        }
    }

    /// Records a validation; true when it is the best so far.
    mutating func validated(_ epoch: Int, valDice: Double) -> Bool {
        eval.value = valDice
        guard valDice > eval.best else { return false }
        eval.best = valDice
        eval.bestEpoch = epoch
        return true
    }

    var bestMetric: Double { validating ? eval.best : train.best }

    func json(epoch: Int, elapsed: Double, finished: Bool = false) -> JSONObject {
        func section(_ m: Metric) -> JSONValue {
            ["metrics": .object([m.name: .double(m.value)]), "key_metric_name": .string(m.name),
             "best_metric": .double(m.best), "best_metric_epoch": .int(m.bestEpoch)]
        }
        var o = JSONObject()
        o["rank"] = 0
        o["current_epoch"] = .int(epoch)
        o["current_iteration"] = .int(iteration)
        o["total_epochs"] = .int(totalEpochs)
        o["total_iterations"] = .int(totalEpochs * epochLength)
        o["epoch"] = .int(epoch)
        o["start_ts"] = .int(startTS)
        let s = Int(elapsed)
        let hms = String(format: "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60)
        o[finished || epoch == totalEpochs ? "total_time" : "current_time"] = .string(hms)
        o["best_metric"] = .double(bestMetric)
        o["train"] = section(train)
        if validating { o["eval"] = section(eval) }
        return o
    }
}
