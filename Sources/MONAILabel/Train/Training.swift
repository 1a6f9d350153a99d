import Foundation

/// The app's training side: the train job queue and the planner's last plan for `/info/`.
public final class TrainingService: @unchecked Sendable {
    public let jobs: BackgroundJobs
    private let lock = NSLock()
    private var plans: (key: String, byModel: [String: JSONObject])?
    private var planning = false
    private var finalLabelsSinceTrain = 0

    /// - Parameter afterTraining: runs on the job's thread after each successful train job.
    init(settings: Settings, afterTraining: (@Sendable () -> Void)? = nil) {
        jobs = BackgroundJobs(kind: .train, launch: JobLaunch(settings: settings),
                              stopGrace: Double(settings.trainStopGrace),
                              onResult: afterTraining.map { hook in { @Sendable value in hook(); return value } })
    }

    /// Counts a saved final label; true when `every` have accumulated since the last auto-train (and resets).
    func countFinalLabel(every: Int) -> Bool {
        guard every > 0 else { return false }
        lock.lock()
        defer { lock.unlock() }
        finalLabelsSinceTrain += 1
        guard finalLabelsSinceTrain >= every else { return false }
        finalLabelsSinceTrain = 0
        return true
    }

    /// The datastore state the last finished plan was computed for (nil before the first); `/info/`'s cache
    /// keys on it, so a plan finishing in the background shows at once.
    var planKey: String? {
        lock.lock()
        defer { lock.unlock() }
        return plans?.key
    }

    /// The plan per model for the datastore state `key`, computing it in the background when stale (it reads
    /// images, and `/info/` must stay fast); the previous plan meanwhile.
    func plans(key: String, compute: @escaping @Sendable () -> [String: JSONObject]) -> [String: JSONObject] {
        lock.lock()
        defer { lock.unlock() }
        if plans?.key != key && !planning {
            planning = true
            let t = Thread { [self] in
                let result = compute()
                lock.lock()
                plans = (key, result)
                planning = false
                lock.unlock()
            }
            t.name = "train-planner"
            t.start()
        }
        return plans?.byModel ?? [:]
    }
}

extension MONAILabelApp {
    /// Trainers of the served models that have a `train` section (none when `MONAI_LABEL_TASKS_TRAIN=false`).
    public var trainDefinitions: OrderedMap<TrainDefinition> {
        var out = OrderedMap<TrainDefinition>()
        guard settings.tasksTrain else { return out }
        for (name, _) in inferTasks {
            if let d = try? TrainDefinition(model: name, definition: definition.models[name]?.objectValue ?? JSONObject()) {
                out[name] = d
            }
        }
        return out
    }

    /// `info().trainers`: upstream's `{description, config, labels}` plus `planner`, the heuristic plan a run
    /// would use on the current datastore (absent until first computed).
    public func trainerInfo() -> JSONObject {
        let defs = trainDefinitions
        guard !defs.isEmpty else { return JSONObject() }
        let st = datastore.status()
        let ds = datastore
        let plans = training.plans(key: "\(st.total)/\(st.completed)") {
            let items = ds.datalist().sorted { $0.image < $1.image }
            var out: [String: JSONObject] = [:]
            let machine = MachineResources.current()
            // The planner sizes segmentation crops; DeepEdit trains on whole volumes resized to spatial_size and
            // DeepGrow on its fixed roi and model sizes.
            for (name, d) in defs where d.type != "deepedit" && d.type != "deepgrow" {
                let cfg = d.clientConfig()
                let (train, _) = SegmentationTrainer.split(count: items.count, valSplit: cfg["val_split"]?.doubleValue ?? 0.2)
                let stats = Planner.sampleStats(items[train].map(\.image))
                out[name] = Planner.plan(definition: d, images: stats, datasetSize: items.count, machine: machine).json
            }
            return out
        }
        var out = JSONObject()
        for (name, d) in defs {
            var t = JSONObject()
            t["description"] = .string(d.description)
            t["config"] = .object(d.clientConfig())
            t["labels"] = d.labels
            if let p = plans[name] { t["planner"] = .object(p) }
            out[name] = .object(t)
        }
        return out
    }

    /// Bundles served without a train task and why (their train.json cannot be run here), for the start-up log.
    public var unavailableTrainers: [(model: String, reason: String)] {
        inferTasks.compactMap { name, _ in
            definition.models[name]?[MONAIBundleTrain.unavailableKey]?.stringValue.map { (name, $0) }
        }
    }

    /// `info().train_stats`: each trainer's `train_stats.json`, `{}` when never trained.
    public func trainStatsInfo() -> JSONObject {
        var out = JSONObject()
        for (name, _) in trainDefinitions { out[name] = .object(trainStats(name) ?? JSONObject()) }
        return out
    }

    /// The paths a run of `model` uses: `<app>/model/<model>/`, the infer task's published file, and the
    /// start weights (pretrained file if present, else the published one).
    public func trainPaths(_ model: String) throws -> TrainPaths {
        let task = try inferTask(model)
        guard let published = task.modelPaths.last else { throw MONAILabelError.io("model \(model) has no model file path") }
        let load = task.modelPaths.first { FileOps.isRegularFile($0.path) }
        return TrainPaths(modelDir: modelDir.appendingPathComponent(model), publishPath: published, loadPath: load)
    }

    /// Decodes a train request (the job's JSON: `model` and the client's params): a known trainer (404), every
    /// parameter a trainer reads of the right type and in range (422 naming it; the child would only fail
    /// later), and at least one labelled image.
    public func trainRequest(_ json: JSONObject) throws -> TrainRequest {
        guard let model = try json.stringParam("model") else { throw MONAILabelError.invalid("train request has no model") }
        guard let definition = trainDefinitions[model] else {
            if let why = self.definition.models[model]?[MONAIBundleTrain.unavailableKey]?.stringValue {
                throw MONAILabelError.notFound("Train Task for model '\(model)' not found: the bundle's \(why)")
            }
            throw MONAILabelError.notFound("Train Task for model '\(model)' not found; trainers: "
                + trainDefinitions.keys.joined(separator: ", "))
        }
        let settings = try TrainSettings(definition: definition, request: json)
        guard !datastore.datalist().isEmpty else {
            throw MONAILabelError.invalid("no images with a final label to train \(model) on: save final labels first")
        }
        return TrainRequest(model: model, json: json, definition: definition, settings: settings)
    }

    /// Upstream's `on_save_label` hook, used for auto-training: after every `MONAI_LABEL_AUTO_TRAIN_EVERY` newly
    /// saved final labels, queues a train job per trainer (unless one for that model is already waiting).
    /// Returns the jobs queued.
    @discardableResult
    public func onSaveLabel(imageID: String, tag: String) -> [Job] {
        guard tag == LabelTag.final, training.countFinalLabel(every: settings.autoTrainEvery) else { return [] }
        var queued: [Job] = []
        let waiting = Set(training.jobs.all.filter { $0.status == .submitted }.compactMap { $0.request["model"]?.stringValue })
        for (model, _) in trainDefinitions where !waiting.contains(model) {
            guard let request = try? jobRequest(.train, ["model": .string(model)]),
                let job = try? submitJob(request, enqueue: true)
            else { continue }
            queued.append(job)
        }
        return queued
    }

    /// `app.train(request)` in-process (what the child runs): the trainer of `request.model` with the request's
    /// settings.
    /// `dataParallel`: this process's rank when the job trains on several (`DataParallelTraining`).
    public func train(_ request: TrainRequest, dataParallel: DataParallel? = nil, log: @escaping (String) -> Void,
                      progress: @escaping (JSONObject) -> Void) throws -> JSONObject {
        let model = request.model, d = request.definition
        var settings = request.settings
        if let dp = dataParallel {
            settings.dataParallel = dp
            let gpus = settings.parallel.gpus
            if !gpus.isEmpty { settings.device = .cuda(gpus[dp.rank % gpus.count]) }
        }
        switch d.type {
        case "deepedit":
            return try DeepEditTrainer(definition: d, model: definition.models[model]?.objectValue ?? JSONObject(),
                                       datalist: datastore.datalist(), paths: try trainPaths(model), settings: settings,
                                       log: log, progress: progress).run()
        case "deepgrow":
            return try DeepGrowTrainer(definition: d, datalist: datastore.datalist(), paths: try trainPaths(model),
                                       settings: settings, log: log, progress: progress).run()
        default:
            return try SegmentationTrainer(definition: d, datalist: datastore.datalist(), paths: try trainPaths(model),
                                           settings: settings, log: log, progress: progress).run()
        }
    }
}

/// A train job's request decoded (`MONAILabelApp.trainRequest`): the trainer and its settings.
public struct TrainRequest: Sendable {
    public let model: String
    /// The request as the job shows it and the child receives it.
    public let json: JSONObject
    let definition: TrainDefinition
    let settings: TrainSettings
}
