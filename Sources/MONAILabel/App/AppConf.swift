import Foundation
import TorchKit

/// Upstream's radiology `--conf` keys (its `main.py` and `lib/configs/*.py`), read and checked once at start-up.
/// A malformed value is a start-up error naming the key; a key this app does not read is listed in
/// `unknownKeys` (and upstream keys of features this build lacks in `unsupportedKeys`) for the server to log,
/// because upstream takes any key and a misspelt one would otherwise change nothing without a word.
public struct AppConf: Sendable, Equatable {
    /// Every key this app reads.
    public static let knownKeys: [String] = [
        "models", "scribbles", "scribbles_model", "use_pretrained_model", "pretrained_path", "preload", "network",
        "labels", "skip_scoring", "skip_strategies", "skip_trainers", "epistemic_enabled", "epistemic_samples",
        "tta_enabled", "tta_samples", "zoo_source", "zoo_repo", "auth_token",
    ]
    /// Upstream radiology keys of features this build does not have (SAM2, zoo bundles by name, the planner's
    /// overrides): accepted, and logged as having no effect.
    public static let unsupportedUpstreamKeys: [String] = [
        "sam2", "bundles", "heuristic_planner", "spatial_size", "target_spacing",
    ]
    /// Where upstream's radiology app downloads its pretrained weights from.
    public static let defaultPretrainedPath = "https://github.com/Project-MONAI/MONAILabel/releases/download/pretrained"
    /// DeepEdit's networks (`--conf network`).
    public static let deepEditNetworks = ["dynunet", "unetr"]

    /// `models none`: no model at all (review-only mode: datastore, sessions, labels, active learning).
    public var reviewOnly: Bool
    /// `use_pretrained_model` (default true): fetch a model's missing pretrained weights at start-up.
    public var usePretrainedModel: Bool
    /// `pretrained_path`: where pretrained weights are fetched from; nil means `MONAI_LABEL_PRETRAINED_PATH`, else
    /// `defaultPretrainedPath`.
    public var pretrainedPath: String?
    /// `preload` (default false): load every model's network at start-up instead of at its first request.
    public var preload: Bool
    /// `network` (default `dynunet`): DeepEdit's network.
    public var network: String
    /// `labels`: custom labels for every model, in order, `background` (value 0) included where given.
    public var labels: [(name: String, value: Int)]?
    /// `skip_scoring` (ours default false): no scoring methods at all.
    public var skipScoring: Bool
    /// `skip_strategies` (ours default false): only random, first and last; no model-based strategies.
    public var skipStrategies: Bool
    /// `skip_trainers` (default false): no trainers.
    public var skipTrainers: Bool
    public var epistemicEnabled: Bool
    public var epistemicSamples: Int
    public var ttaEnabled: Bool
    public var ttaSamples: Int
    /// Keys this app does not read, sorted.
    public var unknownKeys: [String]
    /// Upstream keys this build accepts but does not act on, sorted.
    public var unsupportedKeys: [String]

    public init(_ conf: [String: String]) throws {
        reviewOnly = conf["models"]?.trimmingCharacters(in: .whitespaces).lowercased() == "none"
        usePretrainedModel = try Self.flag(conf, "use_pretrained_model", default: true)
        pretrainedPath = conf["pretrained_path"].map { $0.trimmingCharacters(in: .whitespaces) }
        if let p = pretrainedPath, p.isEmpty { throw MONAILabelError.invalid("--conf pretrained_path is empty") }
        preload = try Self.flag(conf, "preload", default: false)
        network = conf["network"]?.trimmingCharacters(in: .whitespaces).lowercased() ?? "dynunet"
        guard Self.deepEditNetworks.contains(network) else {
            throw MONAILabelError.invalid(
                "--conf network must be one of \(Self.deepEditNetworks.joined(separator: ", ")), not '\(conf["network"] ?? "")'")
        }
        labels = try conf["labels"].map(Self.parseLabels)
        skipScoring = try Self.flag(conf, "skip_scoring", default: false)
        skipStrategies = try Self.flag(conf, "skip_strategies", default: false)
        skipTrainers = try Self.flag(conf, "skip_trainers", default: false)
        epistemicEnabled = try Self.flag(conf, "epistemic_enabled", default: false)
        epistemicSamples = try Self.count(conf, "epistemic_samples", default: 5)
        ttaEnabled = try Self.flag(conf, "tta_enabled", default: false)
        ttaSamples = try Self.count(conf, "tta_samples", default: 5)
        unknownKeys = conf.keys.filter { !Self.knownKeys.contains($0) && !Self.unsupportedUpstreamKeys.contains($0) }.sorted()
        unsupportedKeys = conf.keys.filter { Self.unsupportedUpstreamKeys.contains($0) }.sorted()
    }

    public static func == (a: AppConf, b: AppConf) -> Bool {
        a.reviewOnly == b.reviewOnly && a.usePretrainedModel == b.usePretrainedModel && a.pretrainedPath == b.pretrainedPath
            && a.preload == b.preload && a.network == b.network
            && a.labels?.map(\.name) == b.labels?.map(\.name) && a.labels?.map(\.value) == b.labels?.map(\.value)
            && a.skipScoring == b.skipScoring && a.skipStrategies == b.skipStrategies && a.skipTrainers == b.skipTrainers
            && a.epistemicEnabled == b.epistemicEnabled && a.epistemicSamples == b.epistemicSamples
            && a.ttaEnabled == b.ttaEnabled && a.ttaSamples == b.ttaSamples && a.unknownKeys == b.unknownKeys
            && a.unsupportedKeys == b.unsupportedKeys
    }

    /// The start-up warnings for keys that change nothing.
    public var warnings: [String] {
        unknownKeys.map { "--conf \($0) is not a setting of this app and is ignored; known keys: \(Self.knownKeys.joined(separator: ", "))" }
            + unsupportedKeys.map { "--conf \($0) is an upstream setting of a feature this build does not have and is ignored" }
    }

    /// Upstream's `strtobool`: y/yes/t/true/on/1 and n/no/f/false/off/0, case-insensitive; anything else is an error
    /// naming the key.
    static func flag(_ conf: [String: String], _ key: String, default d: Bool) throws -> Bool {
        guard let v = conf[key] else { return d }
        switch v.trimmingCharacters(in: .whitespaces).lowercased() {
        case "y", "yes", "t", "true", "on", "1": return true
        case "n", "no", "f", "false", "off", "0": return false
        default: throw MONAILabelError.invalid("--conf \(key) must be true or false, not '\(v)'")
        }
    }

    /// A sample count of the epistemic and TTA keys: 1...100 (each sample is one full inference).
    static func count(_ conf: [String: String], _ key: String, default d: Int) throws -> Int {
        guard let v = conf[key] else { return d }
        guard let n = Int(v.trimmingCharacters(in: .whitespaces)), (1...100).contains(n) else {
            throw MONAILabelError.invalid("--conf \(key) must be an integer from 1 to 100, not '\(v)'")
        }
        return n
    }

    /// `labels`: a JSON map `{"name": value}` (values 1...255, `background` may be 0), a JSON list of names
    /// (values 1, 2, ... in order) or upstream's comma-separated names.
    static func parseLabels(_ text: String) throws -> [(name: String, value: Int)] {
        let t = text.trimmingCharacters(in: .whitespacesAndNewlines)
        var out: [(name: String, value: Int)] = []
        if t.hasPrefix("{") || t.hasPrefix("[") {
            let json: JSONValue
            do { json = try JSONValue.parse(t) } catch {
                throw MONAILabelError.invalid("--conf labels is not valid JSON: \(error)")
            }
            switch json {
            case .object(let o):
                for (name, v) in o {
                    guard let i = v.intValue, (0...255).contains(i) else {
                        throw MONAILabelError.invalid("--conf labels: the value of '\(name)' must be an integer from 0 to 255")
                    }
                    out.append((name, i))
                }
            case .array(let a):
                for (i, v) in a.enumerated() {
                    guard let name = v.stringValue else { throw MONAILabelError.invalid("--conf labels: a list of names must hold strings") }
                    out.append((name, i + 1))
                }
            default: throw MONAILabelError.invalid("--conf labels must be a JSON map, a JSON list or comma-separated names")
            }
        } else {
            for (i, name) in t.split(separator: ",").enumerated() { out.append((name.trimmingCharacters(in: .whitespaces), i + 1)) }
        }
        var names = Set<String>(), values = Set<Int>()
        for (name, value) in out {
            guard !name.isEmpty else { throw MONAILabelError.invalid("--conf labels has an empty name") }
            guard names.insert(name).inserted else { throw MONAILabelError.invalid("--conf labels names '\(name)' twice") }
            guard values.insert(value).inserted else { throw MONAILabelError.invalid("--conf labels gives the value \(value) twice") }
            guard value > 0 || name == "background" else {
                throw MONAILabelError.invalid("--conf labels: only 'background' may have the value 0, not '\(name)'")
            }
        }
        guard out.contains(where: { $0.name != "background" }) else { throw MONAILabelError.invalid("--conf labels names no label") }
        return out
    }

    /// A model's `app.json` definition with these keys applied: custom `labels` (and the network's channels that
    /// follow from them; the pretrained weights, made for other labels, are then not used), DeepEdit's `network`
    /// with its weight files `pretrained_<model>_<network>.pt` / `<model>_<network>.pt` as upstream (UNETR's
    /// arguments from the model's `network_unetr` over upstream's), and
    /// `use_pretrained_model false` as the trainer's `pretrained` default.
    public func apply(model name: String, to definition: JSONObject) throws -> JSONObject {
        var d = definition
        let type = d["type"]?.stringValue ?? "segmentation"
        var files = d["files"]?.objectValue ?? JSONObject()
        if type == "deepedit", network != "dynunet" {
            var net = JSONObject()
            let size = d["spatial_size"]?.arrayValue ?? [128, 128, 128]
            let old = d["network"]?.objectValue ?? JSONObject()
            // Upstream's radiology DeepEdit UNETR.
            net["name"] = "UNETR"
            net["spatial_dims"] = 3
            net["in_channels"] = old["in_channels"] ?? 9
            net["out_channels"] = old["out_channels"] ?? 8
            net["img_size"] = .array(size)
            net["feature_size"] = 64
            net["hidden_size"] = 1536
            net["mlp_dim"] = 3072
            net["num_heads"] = 48
            net["pos_embed"] = "conv"
            net["norm_name"] = "instance"
            net["res_block"] = true
            // An app may size it otherwise (`"network_unetr": {"hidden_size": 96, ...}` in its app.json).
            for (k, v) in d["network_unetr"]?.objectValue ?? JSONObject() { net[k] = v }
            d["network"] = .object(net)
            files["pretrained"] = .string("pretrained_\(name)_\(network).pt")
            files["published"] = .string("\(name)_\(network).pt")
            files["download"] = .string("radiology_deepedit_\(network)_multilabel.pt")
        }
        if let labels {
            guard var net = d["network"]?.objectValue else { return d }
            let foreground = labels.filter { $0.name != "background" }
            switch type {
            case "deepedit":
                var map = JSONObject(foreground.map { ($0.name, JSONValue.int($0.value)) })
                map["background"] = 0
                d["labels"] = .object(map)
                let intensity = d["number_intensity_ch"]?.intValue ?? 1
                net["in_channels"] = .int(intensity + map.count)
                net["out_channels"] = .int(foreground.count + 1)
            case "deepgrow":
                // One binary output whatever the label: only the names change.
                d["labels"] = .array(foreground.map { .string($0.name) })
            default:
                d["labels"] = .object(JSONObject(foreground.map { ($0.name, JSONValue.int($0.value)) }))
                net["out_channels"] = .int(foreground.count + 1)
            }
            d["network"] = .object(net)
            if type != "deepgrow" {
                files["pretrained"] = .null
                files["download"] = nil
            }
        }
        if !files.isEmpty { d["files"] = .object(files) }
        // Upstream passes `use_pretrained_model` on as the trainer's `pretrained` default (a request may still ask).
        if !usePretrainedModel, var train = d["train"]?.objectValue {
            var config = train["config"]?.objectValue ?? JSONObject()
            config["pretrained"] = false
            train["config"] = .object(config)
            d["train"] = .object(train)
        }
        return d
    }
}

/// A pretrained weights file the radiology app would fetch at start-up: `files.download` of a model's definition
/// under the pretrained path, stored as its `files.pretrained` (`files.sha256` when the digest is known).
public struct PretrainedDownload: Sendable, Equatable {
    public var model: String
    public var url: URL
    public var destination: URL
    /// Lower-case hex SHA-256, when known.
    public var sha256: String?

    public init(model: String, url: URL, destination: URL, sha256: String?) {
        self.model = model
        self.url = url
        self.destination = destination
        self.sha256 = sha256
    }

    /// The downloads `models` of `definition` need: those with `use_pretrained_model` whose pretrained file is
    /// missing. `base` is the pretrained path: an `http(s)` URL prefix.
    public static func missing(models: [String], definition: AppDefinition, conf: AppConf, modelDir: URL,
                               base: String) throws -> [PretrainedDownload] {
        guard conf.usePretrainedModel else { return [] }
        var out: [PretrainedDownload] = []
        for name in models {
            let d = try conf.apply(model: name, to: definition.models[name]?.objectValue ?? JSONObject())
            let files = d["files"]?.objectValue ?? JSONObject()
            guard let remote = files["download"]?.stringValue else { continue }
            if files["pretrained"] == .null { continue }
            let local = files["pretrained"]?.stringValue ?? "pretrained_\(name).pt"
            let destination = modelDir.appendingPathComponent(local)
            if FileOps.isRegularFile(destination.path) { continue }
            let prefix = base.hasSuffix("/") ? String(base.dropLast()) : base
            guard let url = URL(string: "\(prefix)/\(remote)"), ["http", "https"].contains(url.scheme?.lowercased() ?? "") else {
                throw MONAILabelError.invalid("the pretrained path must be an http(s) URL, not '\(base)'")
            }
            out.append(PretrainedDownload(model: name, url: url, destination: destination,
                                          sha256: files["sha256"]?.stringValue?.lowercased()))
        }
        return out
    }
}

extension MONAILabelApp {
    /// The network loaders of the app's models, by model name.
    var modelLoaders: [(model: String, loader: ModelLoader)] {
        inferTasks.compactMap { name, t in
            let loader = (t as? SegmentationTask)?.loader ?? (t as? DeepEditTask)?.loader ?? (t as? DeepGrowTask)?.loader
            return loader.map { (name, $0) }
        }
    }

    /// `--conf preload true`: loads every model's network now, in the process that runs the models (the server
    /// with `MONAI_LABEL_INFER_WORKERS=0`, else each model worker). Returns the models loaded.
    @discardableResult
    public func preloadModels(device: Device = .best) throws -> [String] {
        for (_, loader) in modelLoaders { try loader.preload(on: device) }
        return modelLoaders.map(\.model)
    }

    /// Models whose network has no weights file: they run a randomly initialised network.
    public var untrainedModels: [String] {
        inferTasks.compactMap { name, t in !t.modelPaths.isEmpty && t.currentModelFile == nil ? name : nil }
    }

    /// What a result of an untrained model says in its `warning` (and the server's start-up log).
    public static func untrainedWarning(_ model: String) -> String {
        "model \(model) has no trained weights: this is a randomly initialised network's output. Train it, publish "
            + "weights (PUT /model/\(model)) or import them (monailabel models --import)"
    }
}
