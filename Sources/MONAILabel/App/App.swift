import Foundation

/// An inference model as `/info/` lists it and `/model/` serves its weights (spec sections 2.1, 4.1).
public protocol InferTask: Sendable {
    var name: String { get }
    /// segmentation, annotation, classification, deepgrow, deepedit, scribbles, detection or others.
    var type: String { get }
    /// A list of names or a `{name: index}` map.
    var labels: JSONValue { get }
    var dimension: Int { get }
    var description: String { get }
    var config: JSONObject { get }
    /// Model files in priority order, pretrained first and published last; the last existing one is used.
    var modelPaths: [URL] { get }
    /// Runs the model on one image.
    func infer(_ request: InferRequest) throws -> InferResult
    /// Checks that `file` would load as this task's weights when stored at `destination` (its extension picks
    /// checkpoint or TorchScript); `invalidInput` saying what does not fit otherwise.
    func verifyWeights(_ file: URL, as destination: URL) throws
    /// Range-checks the parameters that need no image, in the server before a model worker is involved: a bad
    /// value is a 422 at once, and no value has to survive the trip to the worker as JSON (which has no NaN).
    func validate(params: JSONObject) throws
}

extension InferTask {
    /// `{"type","labels","dimension","description","config"}`.
    public var info: JSONValue {
        ["type": .string(type), "labels": labels, "dimension": .int(dimension), "description": .string(description),
         "config": .object(config)]
    }

    /// Tasks without image-independent numeric parameters have nothing to check early.
    public func validate(params: JSONObject) throws {}

    /// Tasks without a network of their own have no weights to replace.
    public func verifyWeights(_ file: URL, as destination: URL) throws {
        throw MONAILabelError.invalid("model \(name) has no network weights to replace")
    }

    /// The model file inference would load now, if any.
    public var currentModelFile: URL? { modelPaths.last { FileOps.isRegularFile($0.path) } }
}

/// The static description of an app, read from `<app>/app.json`.
public struct AppDefinition: Sendable {
    public var name: String
    public var description: String
    public var version: String
    /// Model names this app knows, with their definitions, in file order.
    public var models: JSONObject
    public var strategies: [String]
    /// Scribbles tasks the app offers (`Histogram+GraphCut`), added unless `--conf scribbles false`.
    public var scribbles: [String]
    /// The app serves the MONAI bundles `--conf models` names (upstream's `monaibundle`; see `addBundles`).
    public var bundleModels: Bool

    public init(json: JSONValue) throws {
        guard let o = json.objectValue else { throw MONAILabelError.invalid("app.json is not an object") }
        name = o["name"]?.stringValue ?? "MONAILabel App"
        description = o["description"]?.stringValue ?? ""
        version = o["version"]?.stringValue ?? "0.8.5"
        models = o["models"]?.objectValue ?? JSONObject()
        strategies = o["strategies"]?.arrayValue?.compactMap(\.stringValue) ?? ["random", "first"]
        scribbles = o["scribbles"]?.arrayValue?.compactMap(\.stringValue) ?? []
        bundleModels = o["bundle_models"]?.boolValue ?? false
    }

    public static func load(appDir: URL) throws -> AppDefinition {
        let url = appDir.appendingPathComponent("app.json")
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw MONAILabelError.notFound("\(url.path) not found: is \(appDir.path) a MONAI Label app?")
        }
        do {
            return try AppDefinition(json: try JSONValue.parse(Array(data)))
        } catch let e as JSONParseError {
            throw MONAILabelError.invalid("\(url.path): \(e)")
        }
    }

    /// Resolves `--conf models a,b` (or `all`) against the known models, as upstream's radiology app requires;
    /// `none` (ours) selects no model: the review-only mode.
    public func selectModels(_ conf: [String: String]) throws -> [String] {
        let known = models.keys
        guard let spec = conf["models"], !spec.trimmingCharacters(in: .whitespaces).isEmpty else {
            throw MONAILabelError.invalid(
                "--conf models is required; choose from: all, none, \(known.joined(separator: ", "))")
        }
        if spec.trimmingCharacters(in: .whitespaces) == "all" { return known }
        if spec.trimmingCharacters(in: .whitespaces).lowercased() == "none" { return [] }
        let names = spec.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        for n in names where models[n] == nil {
            throw MONAILabelError.invalid("unknown model '\(n)'; choose from: all, none, \(known.joined(separator: ", "))")
        }
        return names
    }
}

/// The radiology app's models: every definition with a `network` becomes a `SegmentationTask`, or the task of
/// its interactive `type` (`deepgrow`, `deepedit`).
public let defaultInferTaskFactory: InferTaskFactory = { name, definition, context in
    guard definition["network"] != nil else { return nil }
    switch definition["type"]?.stringValue {
    case "deepedit": return try DeepEditTask(name: name, definition: definition, modelDir: context.modelDir)
    case "deepgrow": return try DeepGrowTask(name: name, definition: definition, modelDir: context.modelDir)
    default: break
    }
    return try SegmentationTask(name: name, definition: definition, modelDir: context.modelDir)
}

/// Builds the infer task for a model definition, or nil when this build cannot run that model yet.
public typealias InferTaskFactory = @Sendable (_ name: String, _ definition: JSONObject, _ app: AppContext) throws
    -> (any InferTask)?

/// What a task factory may need from the app being built.
public struct AppContext: Sendable {
    public var appDir: URL
    public var modelDir: URL { appDir.appendingPathComponent("model") }
    public var settings: Settings
}

/// A MONAI Label app: datastore, models, strategies, sessions (spec section 2). One instance per server.
public final class MONAILabelApp: @unchecked Sendable {
    /// The settings as given, with `--conf skip_trainers` / `skip_scoring` applied.
    public let settings: Settings
    /// The `--conf` keys, checked.
    public let conf: AppConf
    /// `app.json` with the `--conf` keys applied to the selected models (`AppConf.apply`).
    public let definition: AppDefinition
    public let appDir: URL
    public let datastore: Datastore
    public let sessions: SessionStore?
    public let inferTasks: OrderedMap<any InferTask>
    public let strategies: OrderedMap<any Strategy>
    /// Bounds concurrent inferences (`MONAI_LABEL_INFER_QUEUE`, default 4).
    public let admission: InferAdmission
    /// The model worker processes inference runs in (`MONAI_LABEL_INFER_WORKERS`); nil runs models in this
    /// process.
    public let inferWorkers: InferWorkerPool?
    /// Hands inference's freed memory back once this process is idle (`MONAI_LABEL_MEMORY_TRIM_DELAY_MS`).
    public let memoryTrimmer: IdleMemoryTrimmer
    /// Train jobs and the planner (Train/Training.swift).
    public let training: TrainingService
    /// Scoring methods and their jobs (Scoring/ScoringService.swift).
    public let scoring: ScoringService
    /// Batch inference jobs (BatchInfer/BatchInferService.swift).
    public let batchInfer: BatchInferService

    public var modelDir: URL { appDir.appendingPathComponent("model") }
    public var logFile: URL { appDir.appendingPathComponent("logs/app.log") }

    public init(settings given: Settings, datastore: Datastore, factory: InferTaskFactory? = defaultInferTaskFactory) throws {
        let conf = try AppConf(given.conf)
        var settings = given
        if conf.skipTrainers { settings.tasksTrain = false }
        if conf.skipScoring { settings.tasksScoring = false }
        self.settings = settings
        self.conf = conf
        appDir = settings.appDir
        var definition = try AppDefinition.load(appDir: settings.appDir)
        let modelNames = definition.bundleModels
            ? try definition.addBundles(conf: settings.conf, appDir: settings.appDir)
            : try definition.selectModels(settings.conf)
                for name in modelNames {
            definition.models[name] = .object(try conf.apply(model: name, to: definition.models[name]?.objectValue ?? JSONObject()))
        }
        self.definition = definition
        self.datastore = datastore
        for sub in ["model", "logs", "lib", "bin"] {
            try FileOps.makeDirectory(appDir.appendingPathComponent(sub))
        }
        let context = AppContext(appDir: appDir, settings: settings)
        var tasks = OrderedMap<any InferTask>()
        for name in modelNames {
            let d = definition.models[name]?.objectValue ?? JSONObject()
            do {
                if let f = factory, let t = try f(name, d, context) { tasks[t.name] = t }
            } catch let e as MONAILabelError where d["type"]?.stringValue == "deepedit" && conf.network != "dynunet" {
                throw MONAILabelError.invalid("model \(name) with --conf network \(conf.network): \(e.message)")
            }
        }
        // Upstream's radiology app adds the scribbles tasks after the models, with the last model's labels; they
        // label for a model, so review-only mode has none.
        if settings.confFlag("scribbles", default: true) && !conf.reviewOnly {
            let lastLabels = tasks.values.last?.labels ?? .array([])
            for name in definition.scribbles {
                switch name {
                case "Histogram+GraphCut": tasks[name] = HistogramGraphCutTask(name: name, labels: lastLabels)
                case "Scribbles+GeoS": tasks[name] = GeoSTask(name: name, labels: lastLabels)
                case "ISeg+GraphCut":
                    // Refines a segmentation model's output: listed only when one is loaded.
                    let models = try Self.scribblesModels(tasks, conf: settings.conf)
                    if let first = models.first {
                        tasks[name] = ISegGraphCutTask(name: name, first: first, others: Array(models.dropFirst()))
                    }
                default: throw MONAILabelError.invalid("app.json names an unknown scribbles task '\(name)'")
                }
            }
        }
        inferTasks = tasks
        var strats = OrderedMap<any Strategy>()
        if settings.tasksStrategy {
            for s in definition.strategies {
                switch s {
                case "random": strats[s] = RandomStrategy()
                case "first": strats[s] = FirstStrategy()
                case "last": strats[s] = LastStrategy()
                default: throw MONAILabelError.invalid("app.json names an unknown strategy '\(s)'")
                }
            }
        }
        // Model-based active learning: `--conf epistemic_enabled true` (upstream's radiology flag) and
        // `--conf tta_enabled true`. Per model that supports it, `<model>_epistemic` / `<model>_tta` scoring and
        // strategy as upstream names them, plus plain `epistemic` / `tta` for the first such model.
        // `skip_strategies` keeps the scoring methods and drops their strategies.
        var modelScoring: [any ScoringMethod] = []
        let segmentation = tasks.values.compactMap { $0 as? SegmentationTask }
        let modelStrategies = settings.tasksStrategy && !conf.skipStrategies
        if conf.epistemicEnabled {
            for (i, t) in segmentation.filter(EpistemicScoring.supports).enumerated() {
                for name in (i == 0 ? ["epistemic"] : []) + ["\(t.name)_epistemic"] {
                    modelScoring.append(EpistemicScoring(name: name, samples: conf.epistemicSamples, task: t))
                    if modelStrategies { strats[name] = ScoreRankingStrategy(name: name) }
                }
            }
        }
        if conf.ttaEnabled {
            for (i, t) in segmentation.enumerated() {
                for name in (i == 0 ? ["tta"] : []) + ["\(t.name)_tta"] {
                    modelScoring.append(TTAScoring(name: name, samples: conf.ttaSamples, task: t))
                    if modelStrategies {
                        strats[name] = ScoreRankingStrategy(name: name, key: "tta_variance",
                                                            description: "Get First Sample Based on TTA score")
                    }
                }
            }
        }
        strategies = strats
        memoryTrimmer = IdleMemoryTrimmer(delayMilliseconds: settings.memoryTrimDelayMs)
        // Review-only mode starts no model worker: nothing would run there.
        let pool = settings.inferWorkers > 0 && !conf.reviewOnly
            ? InferWorkerPool(workers: settings.inferWorkers, devices: DeviceRouting.backendGroups(),
                              launch: .inferWorker(settings: settings)) : nil
        inferWorkers = pool
        // Never fewer admitted than there are workers (MONAI_LABEL_INFER_WORKERS per GPU), or GPUs would idle.
        admission = InferAdmission(capacity: max(settings.inferQueue, pool?.snapshot.slots.count ?? 0))
        let scoring = ScoringService(settings: settings, datastore: datastore, modelMethods: modelScoring)
        self.scoring = scoring
        // Upstream re-scores after every training run when auto-update-scoring is on; the new model makes the
        // epistemic scores stale. This runs on the train job's thread, never on a request.
        var refresh: (@Sendable () -> Void)?
        if settings.autoUpdateScoring { refresh = { _ = scoring.refreshStale(newModel: true) } }
        training = TrainingService(settings: settings, afterTraining: refresh)
        batchInfer = BatchInferService(settings: settings, datastore: datastore)
        sessions = settings.sessions
            ? try SessionStore(
                root: settings.sessionRoot, globalExpiry: settings.sessionExpiry,
                maxBytes: Int64(settings.sessionMaxBytes)) : nil
    }

    /// The models `ISeg+GraphCut` refines: `--conf scribbles_model <name>`, else every segmentation model in
    /// model order (a request refines the first that segments its `selected_label_name`).
    private static func scribblesModels(_ tasks: OrderedMap<any InferTask>, conf: [String: String]) throws -> [SegmentationTask] {
        if let wanted = conf["scribbles_model"] {
            guard let t = tasks[wanted] as? SegmentationTask else {
                throw MONAILabelError.invalid("--conf scribbles_model: '\(wanted)' is no loaded segmentation model")
            }
            return [t]
        }
        return tasks.values.compactMap { $0 as? SegmentationTask }.filter { $0.type == "segmentation" }
    }

    /// `app.info()` in upstream's exact shape (spec section 2.1). There is deliberately no `config` key: the
    /// Slicer plugin refuses servers whose info has one.
    public func info() -> JSONValue {
        var models = JSONObject()
        for (name, t) in inferTasks {
            var m = t.info
            // Not in upstream's schema (clients ignore it): says whether real weights or a fresh network serve.
            let w = (t as? any ModelTask)?.weights
            if case .object(var o) = m, let w {
                o["weights"] = .string(w)
                m = .object(o)
            }
            models[name] = m
        }
        var strategyInfo = JSONObject()
        for (name, s) in strategies { strategyInfo[name] = ["description": .string(s.description)] }
        var info = JSONObject()
        info["name"] = .string("\(definition.name) (\(definition.version))")
        info["description"] = .string(definition.description)
        info["version"] = .string(definition.version)
        info["labels"] = .array(mergedLabels().map { .string($0) })
        info["models"] = .object(models)
        info["trainers"] = .object(trainerInfo())
        info["strategies"] = .object(strategyInfo)
        info["scoring"] = .object(scoring.info)
        info["train_stats"] = .object(trainStatsInfo())
        info["datastore"] = datastore.status().json
        // Review-only mode never loads libtorch: asking it for its version would.
        info["torch"] = conf.reviewOnly ? ["libtorch": .null, "devices": .array([])] : DeviceList.backendInfo()
        return .object(info)
    }

    /// Upstream's label union: every model's labels in model order, a `{name: index}` map sorted by index,
    /// duplicates dropped.
    func mergedLabels() -> [String] {
        var out: [String] = []
        for (_, t) in inferTasks {
            var names: [String] = []
            switch t.labels {
            case .array(let a): names = a.compactMap(\.stringValue)
            case .object(let o):
                names = o.map { ($0.key, $0.value.doubleValue ?? 0) }.sorted { $0.1 < $1.1 }.map(\.0)
            case .string(let s): names = [s]
            default: break
            }
            for n in names where !out.contains(n) { out.append(n) }
        }
        return out
    }

    // MARK: Active learning

    /// `POST /activelearning/{strategy}` (spec section 1.5): picks an image, records who got it and when, and
    /// answers the strategy's output plus `path` and the image's info; `{}` when nothing is left.
    public func nextSample(strategy name: String, request: JSONObject, user: String = "admin") throws -> JSONObject {
        guard let strategy = strategies[name] else {
            throw MONAILabelError.notFound("Strategy '\(name)' not found; available: \(strategies.keys.joined(separator: ", "))")
        }
        guard var result = try strategy.select(request: request, datastore: datastore),
            let id = result["id"]?.stringValue
        else { return JSONObject() }
        var strategyInfo = datastore.imageInfo(id)?["strategy"]?.objectValue ?? JSONObject()
        strategyInfo[name] = [
            "ts": .int(Int(Date().timeIntervalSince1970)),
            "client_id": request["client_id"] ?? .string(user),
        ]
        try? datastore.updateImageInfo(id, info: ["strategy": .object(strategyInfo)])
        result["path"] = .string(try datastore.fetchImage(id))
        result.merge(datastore.imageInfo(id) ?? JSONObject())
        // Upstream re-scores after every selection; only stale model-based scores need it (a queued job).
        if settings.autoUpdateScoring { scoring.refreshStale() }
        return result
    }

    // MARK: Model files

    public func inferTask(_ model: String) throws -> any InferTask {
        guard let t = inferTasks[model] else { throw MONAILabelError.notFound("Model '\(model)' not found") }
        return t
    }

    /// The weights file `GET /model/{model}` serves: the last existing of the task's paths.
    public func modelFile(_ model: String) throws -> URL {
        guard let t = inferTasks[model], let f = t.currentModelFile else {
            throw MONAILabelError.notFound("Model File NOT Found for \(model)")
        }
        return f
    }

    /// Replaces a model's published weights (`PUT /model/{model}`); inference sees the new file on its next
    /// request. The upload is first loaded into the model's network (strictly: every parameter, every shape),
    /// so a file that would break every later inference is refused (`invalidInput` naming the bad key or shape)
    /// and the working weights stay. The weights being replaced are kept as `<file>.prev` (one generation), then
    /// the upload is swapped in atomically.
    public func publishModel(_ model: String, from source: URL, to destination: URL) throws {
        guard let task = inferTasks[model] else { throw MONAILabelError.notFound("Model File Name NOT configured for \(model)") }
        try task.verifyWeights(source, as: destination)
        try FileOps.makeDirectory(destination.deletingLastPathComponent())
        if FileOps.isRegularFile(destination.path) {
            try FileOps.keepPrevious(destination, as: Self.previousWeights(of: destination))
        }
        try FileOps.atomicCopy(from: source, to: destination)
    }

    /// Where `publishModel` keeps the weights it replaced: `<file>.prev` beside them.
    public static func previousWeights(of file: URL) -> URL {
        file.deletingLastPathComponent().appendingPathComponent(file.lastPathComponent + ".prev")
    }

    /// `<model>/train_stats.json` under the model folder, as `/info/` and `/model/info/` report it; nil when
    /// the model has never been trained here.
    public func trainStats(_ model: String) -> JSONObject? {
        let url = modelDir.appendingPathComponent(model).appendingPathComponent("train_stats.json")
        guard let data = FileManager.default.contents(atPath: url.path) else { return nil }
        return (try? JSONValue.parse(Array(data)))?.objectValue
    }
}
