import Foundation
import Imaging
import TorchCheckpoint
import TorchKit

/// The request keys every trainer reads (upstream's `BasicTrainTask` config: `max_epochs`, `val_split`,
/// `val_interval`, `early_stop_patience`, `name`, `pretrained`, `lr`, `seed`, `device`), the client's values
/// over the model's defaults, and the moment the run started.
struct TrainSettings: Sendable {
    /// The client's request as sent (the planner lets it override the plan).
    let request: JSONObject
    /// The whole merged config, for the keys only one trainer reads.
    let config: JSONObject
    let maxEpochs: Int
    let valSplit: Double
    let valInterval: Int
    let patience: Int
    let runName: String
    let pretrained: Bool
    let lr: Double
    let seed: UInt64
    /// CUDA when libtorch has it, unless the client picked "cpu" from the device list; a data-parallel rank's
    /// own GPU (`gpus`).
    var device: Device
    let started: Date
    /// Names this run's `stats_<run_id>.json`.
    let runID: String
    /// How many processes train the job (`world_size`, `multi_gpu`).
    let parallel: ParallelSettings
    /// This process's rank in a data-parallel job (set by `MONAILabelApp.train`); nil for a single process.
    var dataParallel: DataParallel?
    /// The client's `amp` (upstream's trainers' mixed-precision switch, a constructor argument there); nil when
    /// absent.
    let ampRequested: Bool?

    /// Mixed precision for the forward pass: on by default on CUDA, as upstream's trainers (`amp=True`), as
    /// float16 (with a `GradScaler`); on the CPU only when `amp` asks, as bfloat16 (no scaler: bfloat16 has
    /// float32's range).
    var autocast: Autocast? {
        guard ampRequested ?? (device != .cpu) else { return nil }
        return Autocast(device: device, dtype: device == .cpu ? .bfloat16 : .float16)
    }

    /// Reads and range-checks the merged config; every key a trainer reads is checked here, so the server can
    /// refuse a request (422 naming the key) before a job is queued, by building this from the request.
    init(definition: TrainDefinition, request: JSONObject) throws {
        var cfg = definition.clientConfig()
        for (k, v) in request { cfg[k] = v }
        self.request = request
        config = cfg
        maxEpochs = try cfg.intParam("max_epochs", in: 1...100_000) ?? 50
        valSplit = try cfg.doubleParam("val_split", in: 0...1) ?? 0.2
        valInterval = try cfg.intParam("val_interval", in: 1...100_000) ?? definition.valInterval
        patience = try cfg.intParam("early_stop_patience", in: -1...100_000) ?? -1
        runName = try SegmentationTrainer.safeName(try cfg.stringParam("name") ?? "train_01")
        pretrained = try cfg.boolParam("pretrained") ?? true
        lr = try cfg.doubleParam("lr", in: 0...10) ?? definition.lr
        seed = UInt64(try cfg.intParam("seed", in: 0...Int.max) ?? 0)
        let dims = definition.spatialSize.count
        _ = try cfg.intParam("train_batch_size", in: 1...1024)
        _ = try cfg.intParam("val_batch_size", in: 1...1024)
        _ = try cfg.intParam("num_samples", in: 1...1024)
        if let size = try cfg.intListParam("spatial_size", count: dims, in: 1...4096) {
            do { try ImagingLimits.checkVoxels(size, what: "spatial_size") } catch let e as ImagingError {
                throw MONAILabelError.invalid(e.message)
            }
        }
        _ = try cfg.doubleListParam("target_spacing", count: dims, in: 0.01...1000)
        for key in ["deepgrow_probability_train", "deepgrow_probability_val"] { _ = try cfg.doubleParam(key, in: 0...1) }
        for key in ["max_train_interactions", "max_val_interactions"] { _ = try cfg.intParam(key, in: 0...1000) }
        device = cfg["device"]?.stringValue == "cpu" ? .cpu : .best
        ampRequested = try cfg.boolParam("amp")
        parallel = try ParallelSettings(config: cfg, cudaDevices: { Torch.cudaDeviceCount })
        started = Date()
        runID = SegmentationTrainer.runID(started)
    }
}

/// The epoch loop every trainer shares, around the trainer's own step and validation: the run folder and the
/// network with its starting weights; per iteration the log line and the progress (with an ETA from the time
/// iterations and validations took so far); validation every `val_interval` epochs and on the last; the best
/// model saved and published atomically; `stats_<run_id>.json` and `train_stats.json` after every epoch; early
/// stopping; then the final checkpoint and stats.
final class TrainLoop {
    /// What one training iteration reports.
    struct Step {
        var loss: Double
        /// The training Dice values the epoch's train metric averages (per sample, or one per batch).
        var dice: [Double]
    }

    let settings: TrainSettings
    let paths: TrainPaths
    /// `<model_dir>/<name>`.
    let runDir: URL
    /// `<run>/model.pt`: the best model so far, and where a later run with the same name resumes from.
    let resume: URL
    let net: any Layer
    /// Mixed precision of the forward pass (`TrainSettings.autocast`), fixed for the run.
    let autocast: Autocast?
    /// Loss scaling for float16 autocast (PyTorch's defaults); nil otherwise. Tests swap in their own.
    var scaler: GradScaler?
    /// Iterations per epoch.
    let epochLength: Int
    var record: StatsRecord
    private let log: SegmentationTrainer.LogSink
    private let progress: SegmentationTrainer.ProgressSink
    /// Validations in a row without improvement, for `early_stop_patience`.
    private var sinceBest = 0

    /// Makes the run folder and the network, starting from the run's own `model.pt` when resuming, else from
    /// `load_path` when `pretrained`, else random weights; `initialSeed` (when given) seeds libtorch's global
    /// generator first, so it fixes those random weights too.
    init(definition: TrainDefinition, settings: TrainSettings, paths: TrainPaths, epochLength: Int, validating: Bool,
         initialSeed: UInt64? = nil, log: @escaping SegmentationTrainer.LogSink,
         progress: @escaping SegmentationTrainer.ProgressSink) throws
    {
        self.settings = settings
        self.paths = paths
        self.epochLength = epochLength
        self.log = log
        self.progress = progress
        let runDir = paths.modelDir.appendingPathComponent(settings.runName)
        try FileOps.makeDirectory(runDir)
        if let initialSeed { Torch.manualSeed(initialSeed) }
        let net = try NetworkFactory.make(definition.network)
        let resume = runDir.appendingPathComponent("model.pt")
        let start = FileOps.isRegularFile(resume.path) ? resume
            : (settings.pretrained ? paths.loadPath.flatMap { FileOps.isRegularFile($0.path) ? $0 : nil } : nil)
        if let start {
            let sd = try Checkpoint.stateDict(from: start, key: "model")
            try net.load(stateDict: sd.map { ($0.name, $0.tensor) }, strict: true)
            log("Loaded weights from \(start.path)")
        }
        try net.to(settings.device)
        // Every rank starts from rank 0's weights (random initialisation differs per process).
        try settings.dataParallel?.broadcastParameters(net.parameters())
        self.runDir = runDir
        self.resume = resume
        self.net = net
        let autocast = settings.autocast
        if let autocast, !Autocast.isSupported(on: autocast.device, dtype: autocast.dtype) {
            throw MONAILabelError.invalid("amp: \(autocast) is not available in this server's libtorch backend")
        }
        self.autocast = autocast
        scaler = autocast?.dtype == .float16 ? GradScaler() : nil
        if let autocast { log("Mixed precision: \(autocast)\(scaler == nil ? "" : " with a gradient scaler")") }
        record = StatsRecord(totalEpochs: settings.maxEpochs, epochLength: epochLength,
                             startTS: Int(settings.started.timeIntervalSince1970), validating: validating)
    }

    /// The optimizer `app.json` names (`Adam`, `AdamW`, or `SGD` with `momentum`, 0.9 unless given); any other
    /// name gets the trainer's own `fallback`, since upstream's trainers differ there.
    func optimizer(named name: String, fallback: String, weightDecay: Double, momentum: Double? = nil) throws -> Optimizer {
        let params = net.parameters()
        let lr = settings.lr
        switch ["Adam", "AdamW", "SGD"].contains(name) ? name : fallback {
        case "SGD": return try SGD(parameters: params, lr: lr, momentum: momentum ?? 0.9, weightDecay: weightDecay)
        case "AdamW": return try AdamW(parameters: params, lr: lr, weightDecay: weightDecay)
        default: return try Adam(parameters: params, lr: lr, weightDecay: weightDecay)
        }
    }

    /// One optimisation step of `net` on input `x` and target `y`; returns the logits (for the training
    /// metric) and the loss value. With mixed precision the forward pass runs under autocast and its logits come
    /// back to float32 for the loss; with float16 the loss is scaled for the backward pass and the step is skipped
    /// (on every rank) when the gradients overflowed.
    func step(_ x: Tensor, _ y: Tensor, optimizer: Optimizer, loss: (Tensor, Tensor) throws -> Tensor) throws
        -> (logits: Tensor, loss: Double)
    {
        try optimizer.zeroGrad()
        let logits = try autocast.run { try net(x) }.to(.float32)
        let l = try loss(logits, y)
        try (scaler?.scaled(l) ?? l).backward()
        let params = net.parameters()
        try settings.dataParallel?.averageGradients(of: params)
        if let scaler {
            var overflow = try scaler.unscale(params)
            // Every rank unscaled the same averaged gradients; asking them all keeps the ranks in step even so.
            if let dp = settings.dataParallel { overflow = try dp.anyRank(overflow) }
            if !(try scaler.step(optimizer, foundNonFinite: overflow)) {
                log(String(format: "Gradient scaler: inf/NaN gradients, step skipped; loss scale now %g", scaler.scale))
            }
        } else {
            try optimizer.step()
        }
        return (logits, try l.item())
    }

    /// Runs the epochs and returns the final stats (the `train_stats.json` dict). The network is in training
    /// mode for `step` and in eval mode for `validate`.
    ///
    /// - Parameters:
    ///   - beginEpoch: before an epoch's first iteration (a trainer's shuffle).
    ///   - step: iteration `iteration` (1-based) of `epoch`.
    ///   - epochNote: appended to the epoch's metrics line (a trainer's own metrics).
    ///   - validate: the validation Dice after `epoch`.
    func run(beginEpoch: (_ epoch: Int) -> Void = { _ in }, step: (_ epoch: Int, _ iteration: Int) throws -> Step,
             epochNote: () -> String = { "" }, validate: (_ epoch: Int) throws -> Double) throws -> JSONObject
    {
        let maxEpochs = settings.maxEpochs
        var iterationTime = 0.0, iterationsDone = 0
        var validationTime = 0.0, validations = 0
        net.train()
        try settings.dataParallel?.publishProgress(["epoch": 0, "total_epochs": .int(maxEpochs), "iteration": 0,
                                                   "total_iterations": .int(epochLength)])
        for epoch in 1...maxEpochs {
            let epochStart = Date()
            beginEpoch(epoch)
            var lossSum = 0.0, diceSum = 0.0, diceCount = 0
            for it in 1...epochLength {
                let t0 = Date()
                let s = try step(epoch, it)
                lossSum += s.loss
                for d in s.dice {
                    diceSum += d
                    diceCount += 1
                }
                iterationTime += Date().timeIntervalSince(t0)
                iterationsDone += 1
                record.iteration += 1
                let remainingIterations = (maxEpochs - epoch) * epochLength + (epochLength - it)
                let remainingValidations = record.validating ? (maxEpochs - epoch) / settings.valInterval + 1 : 0
                let eta = iterationTime / Double(iterationsDone) * Double(remainingIterations)
                    + (validations > 0 ? validationTime / Double(validations) * Double(remainingValidations) : 0)
                log(String(format: "Epoch: %d/%d, Iter: %d/%d -- train_loss: %.4f", epoch, maxEpochs, it, epochLength, s.loss))
                try report(["epoch": .int(epoch), "total_epochs": .int(maxEpochs), "iteration": .int(it),
                            "total_iterations": .int(epochLength), "eta": .double((eta * 10).rounded() / 10)])
            }
            let trainDice = diceCount > 0 ? diceSum / Double(diceCount) : 0
            record.epochDone(epoch, trainDice: trainDice)
            let note = epochNote()
            log("Epoch[\(epoch)] Metrics -- \(record.train.name): "
                + String(format: "%.4f, mean loss %.4f (%.1f s)", trainDice, lossSum / Double(epochLength),
                         Date().timeIntervalSince(epochStart)) + (note.isEmpty ? "" : "; " + note))

            var valDice: Double?
            if validates(epoch) {
                let v0 = Date()
                net.eval()
                let dice = try validate(epoch)
                net.train()
                validationTime += Date().timeIntervalSince(v0)
                validations += 1
                valDice = dice
                log(String(format: "Epoch[%d] Metrics -- val_mean_dice: %.4f (%.1f s)", epoch, dice, Date().timeIntervalSince(v0)))
            }
            guard try endEpoch(epoch, valDice: valDice) else { break }
        }
        let final = try finish()
        log("Training finished: best \(record.validating ? record.eval.name : record.train.name) \(record.bestMetric)")
        return final
    }

    /// Whether `epoch` validates: every `val_interval` epochs and the last one, when there is a validation set;
    /// in a data-parallel job only on rank 0.
    private func validates(_ epoch: Int) -> Bool {
        isLeader && record.validating && (epoch % settings.valInterval == 0 || epoch == settings.maxEpochs)
    }

    /// Rank 0 of a data-parallel job, or the only process: the one that validates, saves and publishes.
    private var isLeader: Bool { settings.dataParallel?.isLeader ?? true }

    /// Hands an iteration's progress to the job; in a data-parallel job every rank publishes its own and rank
    /// 0's carries them all (`ranks`) with the slowest rank's ETA as the job's.
    private func report(_ p: JSONObject) throws {
        guard let dp = settings.dataParallel else { return progress(p) }
        var mine = p
        mine["rank"] = .int(dp.rank)
        try dp.publishProgress(mine)
        guard dp.isLeader else { return }
        let ranks = try dp.progressOfAllRanks()
        var combined = p
        combined["ranks"] = .array(ranks.map { .object($0) })
        combined["eta"] = .double(ranks.compactMap { $0["eta"]?.doubleValue }.max() ?? 0)
        progress(combined)
    }

    /// Closes an epoch whose training metrics `record` already has; `valDice` is its validation score when it
    /// validated. Without a validation set the best training Dice decides which model is published. Returns
    /// false when early stopping ends the run.
    private func endEpoch(_ epoch: Int, valDice: Double?) throws -> Bool {
        // The other ranks of a data-parallel job write nothing and follow rank 0's decision.
        guard isLeader else { return try settings.dataParallel?.leaderDecides(true) ?? true }
        let goOn = try closeEpoch(epoch, valDice: valDice)
        return try settings.dataParallel?.leaderDecides(goOn) ?? goOn
    }

    private func closeEpoch(_ epoch: Int, valDice: Double?) throws -> Bool {
        let improved: Bool
        if let valDice {
            improved = record.validated(epoch, valDice: valDice)
        } else {
            improved = !record.validating && record.train.bestEpoch == epoch
        }
        if improved {
            sinceBest = 0
            try save(epoch: epoch, to: resume)
            try FileOps.atomicCopy(from: resume, to: paths.publishPath)
            log("New Model published: \(resume.path) => \(paths.publishPath.path)")
        } else if record.validating && epoch % settings.valInterval == 0 {
            sinceBest += 1
        }
        try writeStats(record.json(epoch: epoch, elapsed: Date().timeIntervalSince(settings.started)))
        if settings.patience > 0 && sinceBest >= settings.patience {
            log("Early stopping: no improvement of val_mean_dice for \(settings.patience) validations")
            return false
        }
        return true
    }

    /// Writes `checkpoint_final.pt` and the final stats; returns them (the `train_stats.json` dict).
    private func finish() throws -> JSONObject {
        let final = record.json(epoch: record.currentEpoch, elapsed: Date().timeIntervalSince(settings.started),
                                finished: true)
        guard isLeader else { return final }
        try save(epoch: record.currentEpoch, to: runDir.appendingPathComponent("checkpoint_final.pt"))
        try writeStats(final)
        return final
    }

    private func writeStats(_ stats: JSONObject) throws {
        let bytes = JSONValue.object(stats).prettyBytes()
        try FileOps.atomicWrite(bytes, to: runDir.appendingPathComponent("stats_\(settings.runID).json"))
        try FileOps.atomicWrite(bytes, to: paths.modelDir.appendingPathComponent("train_stats.json"))
    }

    /// `stateDict()` copies to the host, so checkpoints are CPU tensors whatever the training device.
    private func save(epoch: Int, to url: URL) throws {
        let sd = try net.stateDict().map { (name: $0.0, tensor: $0.1) }
        try Checkpoint.write(stateDict: sd, key: "model", extra: [(key: "epoch", value: .int(epoch))], to: url)
    }
}
