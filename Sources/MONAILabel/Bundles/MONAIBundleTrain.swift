import Foundation

/// A bundle's `configs/train.json` turned into the `train` section of its model definition, which the
/// segmentation trainer runs the way upstream's `BundleTrainTask` runs the bundle's own trainer: the datastore's
/// labelled images instead of the bundle's datalist, `max_epochs`, `val_split` and `pretrained` from the request,
/// starting from and publishing to `models/model.pt`. Read from train.json:
/// `network_def` (must be inference.json's, since the infer task loads the result), the trainer's
/// `loss_function` (`DiceCELoss` or `DiceLoss` with softmax on class-index labels) and `optimizer`
/// (`torch.optim.Adam`, `AdamW` or `SGD`), the training transforms (the deterministic ones this server
/// implements, `CropForegroundd`, `RandCropByPosNegLabeld`, `RandFlipd`, `RandRotate90d`, `RandShiftIntensityd`),
/// the training dataloader's `batch_size`, the `ValidationHandler` interval (or `val_interval`), the validation
/// transforms (the training's deterministic ones), the `SlidingWindowInferer` roi and the post-processing and key
/// metric (softmax, argmax, `MeanDice`). Anything else is an error naming the config id.
public enum MONAIBundleTrain {
    /// The model definition's key for why a bundle has no train task (its train.json cannot be run here).
    public static let unavailableKey = "train_unavailable"

    /// Random transforms the crop loader runs.
    static let randomTransforms: Set<String> = ["RandCropByPosNegLabel", "RandFlip", "RandRotate90", "RandShiftIntensity"]

    /// The `train` section for the bundle in `folder`, whose inference definition is `inference`; nil when the
    /// bundle has no train config (upstream then has no train task either). Throws what cannot be interpreted.
    static func section(folder: URL, name: String, inference: JSONObject) throws -> JSONObject? {
        let configs = folder.appendingPathComponent("configs")
        let url = configs.appendingPathComponent("train.json")
        guard FileOps.isRegularFile(url.path) else {
            if FileOps.isRegularFile(configs.appendingPathComponent("train.yaml").path) {
                throw MONAILabelError.invalid("configs/train.yaml is not read: convert it to JSON")
            }
            return nil
        }
        // The trainer loads and publishes a state dict; a TorchScript-only bundle has none to start from.
        if inference["files"]?["published"]?.stringValue?.hasSuffix(".ts") == true {
            throw MONAILabelError.invalid("models/model.ts only: training needs the state dict models/model.pt")
        }
        let config = try BundleConfig.read(url, bundleRoot: folder)
        let file = config.fileName

        let network = try MONAIBundle.network(config)
        guard canonical(.object(network)) == canonical(inference["network"] ?? .null) else {
            throw MONAILabelError.invalid("\(file): network_def differs from inference.json's: the infer task could not "
                + "load the trained weights")
        }
        var t = JSONObject()
        t["description"] = .string(inference["description"]?.stringValue ?? "")
        try readOptimizer(config, into: &t)
        t["loss"] = .object(try readLoss(config))

        // Training transforms: deterministic ones first, then the crop and the random ones.
        let trainList = try transformsID(config, dataset: "train#dataset#transform", fallback: "train#preprocessing")
        var pre: [JSONObject] = []
        var augmentation = JSONObject()
        var flips: [JSONValue] = []
        var cropForeground = false, randomSeen = false, sampled = false
        for id in try transformIDs(config, trainList) {
            guard let cls = try MONAIBundle.target(config, id) else { continue }
            let base = MONAIBundle.baseName(cls)
            if MONAIBundle.implicitTransforms.contains(base) { continue }
            let args = try config.resolve(id).objectValue ?? JSONObject()
            if MONAIBundle.preTransforms.contains(base) {
                guard !randomSeen, !cropForeground else {
                    throw MONAILabelError.invalid("\(file): \(id): '\(cls)' after the cropping and random transforms is "
                        + "not supported (deterministic transforms come first here)")
                }
                if let spec = try MONAIBundle.preTransformSpec(config, id, cls) { pre.append(spec) }
                continue
            }
            switch base {
            case "CropForeground":
                try allow(args, ["source_key", "allow_smaller", "start_coord_key", "end_coord_key"], at: id, file: file)
                guard (args["source_key"]?.stringValue ?? "image") == "image" else {
                    throw MONAILabelError.invalid("\(file): \(id)#source_key: only the image is supported")
                }
                guard !randomSeen else {
                    throw MONAILabelError.invalid("\(file): \(id): CropForegroundd after random transforms is not supported")
                }
                cropForeground = true
            case "RandCropByPosNegLabel":
                try allow(args, ["spatial_size", "pos", "neg", "num_samples", "image_threshold", "label_key", "image_key",
                                 "allow_smaller"], at: id, file: file)
                guard !sampled else { throw MONAILabelError.invalid("\(file): \(id): a second random crop is not supported") }
                let dims = inference["dimension"]?.intValue ?? 3
                guard let size = args["spatial_size"], let sizes = TrainDefinition.ints(size, count: dims),
                      sizes.allSatisfy({ $0 <= 4096 })
                else {
                    throw MONAILabelError.invalid("\(file): \(id)#spatial_size must be \(dims) sizes in 1...4096")
                }
                t["spatial_size"] = .array(sizes.map { .int($0) })
                t["num_samples"] = .int(try int(args, "num_samples", in: 1...1024, at: id, file: file) ?? 1)
                for k in ["pos", "neg", "image_threshold"] where args[k] != nil { augmentation[k] = args[k] }
                sampled = true
            case "RandFlip":
                try allow(args, ["prob", "spatial_axis"], at: id, file: file)
                var f: JSONObject = ["prob": args["prob"] ?? 0.1]
                if let axes = args["spatial_axis"], axes != .null { f["axes"] = axes }
                flips.append(.object(f))
            case "RandRotate90":
                try allow(args, ["prob", "max_k", "spatial_axes"], at: id, file: file)
                guard augmentation["rotate90"] == nil else {
                    throw MONAILabelError.invalid("\(file): \(id): a second RandRotate90d is not supported")
                }
                augmentation["rotate90"] = ["prob": args["prob"] ?? 0.1, "max_k": args["max_k"] ?? 3,
                                            "axes": args["spatial_axes"] ?? [0, 1]]
            case "RandShiftIntensity":
                try allow(args, ["prob", "offsets"], at: id, file: file)
                guard augmentation["shift_intensity"] == nil, args["offsets"]?.doubleValue != nil else {
                    throw MONAILabelError.invalid("\(file): \(id): one RandShiftIntensityd with a single number as "
                        + "offsets is supported")
                }
                augmentation["shift_intensity"] = ["prob": args["prob"] ?? 0.1, "offsets": args["offsets"] ?? 0.1]
            default:
                throw MONAILabelError.invalid("\(file): \(id)#_target_: transform '\(cls)' is not supported for training "
                    + "(supported: the inference pre-transforms, CropForegroundd, RandCropByPosNegLabeld, RandFlipd, "
                    + "RandRotate90d, RandShiftIntensityd)")
            }
            if randomTransforms.contains(base) { randomSeen = true }
        }
        guard sampled else {
            throw MONAILabelError.invalid("\(file): \(trainList): no RandCropByPosNegLabeld (training on whole images "
                + "is not supported)")
        }
        augmentation["flips"] = .array(flips)
        t["pre"] = .array(pre.map { .object($0) })
        t["crop_foreground"] = .bool(cropForeground)
        t["augmentation"] = .object(augmentation)

        var trainerConfig = JSONObject()
        let loader = referenced(config, "train#trainer#train_data_loader", fallback: "train#dataloader")
        if config.has("\(loader)#batch_size") {
            let size: JSONObject = ["batch_size": try config.resolve("\(loader)#batch_size")]
            trainerConfig["train_batch_size"] = .int(try int(size, "batch_size", in: 1...1024, at: loader, file: file) ?? 1)
        }
        t["config"] = .object(trainerConfig)
        if let interval = try validationInterval(config) { t["val_interval"] = .int(interval) }
        try readValidation(config, trainPre: pre, into: &t)
        // The trainer's own checks (augmentation ranges, ...), now rather than at the first train request.
        var d = inference
        d["train"] = .object(t)
        _ = try TrainDefinition(model: name, definition: d)
        return t
    }

    /// Which item lists a stage's transforms: the dataset's `transform` reference, else `fallback`.
    static func transformsID(_ config: BundleConfig, dataset: String, fallback: String) throws -> String {
        if case .string(let s) = config.raw(dataset), s.hasPrefix("@") { return String(s.dropFirst()) }
        guard config.has(fallback) else { throw MONAILabelError.invalid("\(config.fileName): no '\(fallback)'") }
        return fallback
    }

    /// The ids of the transforms of a Compose or list item, following `@` references, same-file `%` macros and
    /// the concatenation `$@a + @b` that bundles use to join their deterministic and random lists.
    static func transformIDs(_ config: BundleConfig, _ id: String, depth: Int = 0) throws -> [String] {
        let file = config.fileName
        guard depth < BundleConfig.maxDepth else {
            throw MONAILabelError.invalid("\(file): \(id): references nest deeper than \(BundleConfig.maxDepth) (a cycle?)")
        }
        guard let v = config.raw(id) else { throw MONAILabelError.invalid("\(file): \(id): no transform list") }
        func follow(_ s: String, at site: String) throws -> [String]? {
            if s.hasPrefix("@") || (s.hasPrefix("%") && !s.contains(".json")) {
                return try transformIDs(config, String(s.dropFirst()), depth: depth + 1)
            }
            guard s.hasPrefix("$") else { return nil }
            let parts = s.dropFirst().split(separator: "+").map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.allSatisfy({ $0.hasPrefix("@") && $0.dropFirst().allSatisfy { $0.isLetter || $0.isNumber || "_#".contains($0) } })
            else {
                throw MONAILabelError.invalid("\(file): \(site): the Python expression '\(s)' cannot be evaluated here "
                    + "(only '$@a + @b' joins transform lists)")
            }
            return try parts.flatMap { try transformIDs(config, String($0.dropFirst()), depth: depth + 1) }
        }
        switch v {
        case .string(let s):
            guard let ids = try follow(s, at: id) else { throw MONAILabelError.invalid("\(file): \(id): not a transform list") }
            return ids
        case .object(let o) where o["_target_"] != nil:
            guard MONAIBundle.className(o["_target_"]?.stringValue ?? "") == "Compose", o["transforms"] != nil else { return [id] }
            return try transformIDs(config, "\(id)#transforms", depth: depth + 1)
        case .array(let a):
            return try a.indices.flatMap { i -> [String] in
                if case .string(let s) = a[i], let ids = try follow(s, at: "\(id)#\(i)") { return ids }
                return ["\(id)#\(i)"]
            }
        default:
            throw MONAILabelError.invalid("\(file): \(id): not a transform list")
        }
    }

    /// The id an `@` reference at `id` points to, else `fallback`.
    static func referenced(_ config: BundleConfig, _ id: String, fallback: String) -> String {
        if case .string(let s) = config.raw(id), s.hasPrefix("@") { return String(s.dropFirst()) }
        return fallback
    }

    /// The trainer's optimizer: `lr`, `weight_decay` and SGD's `momentum`; torch's other arguments at their defaults.
    static func readOptimizer(_ config: BundleConfig, into t: inout JSONObject) throws {
        let file = config.fileName
        let id = referenced(config, "train#trainer#optimizer", fallback: "optimizer")
        guard case .object(let o) = config.raw(id) else { throw MONAILabelError.invalid("\(file): no '\(id)' optimizer") }
        guard config.has("\(id)#_target_"), let target = try config.resolve("\(id)#_target_").stringValue else {
            throw MONAILabelError.invalid("\(file): \(id)#_target_ is missing")
        }
        let cls = MONAIBundle.className(target)
        guard ["Adam", "AdamW", "SGD"].contains(cls) else {
            throw MONAILabelError.invalid("\(file): \(id)#_target_: optimizer '\(target)' is not supported "
                + "(torch.optim.Adam, AdamW, SGD)")
        }
        // torch's defaults for what a bundle may leave out or spell out.
        let defaults: [String: JSONValue] = cls == "SGD"
            ? ["dampening": 0, "nesterov": false, "maximize": false, "foreach": .null]
            : ["betas": [0.9, 0.999], "eps": 1e-8, "amsgrad": false, "maximize": false, "foreach": .null]
        var args = JSONObject()
        for (k, raw) in o {
            switch k {
            case "_target_", "_requires_", "_desc_": continue
            case "params":
                // `$@network.parameters()`: the network being trained, which is the only one here.
                guard case .string(let s) = raw, s.hasPrefix("$@"), s.hasSuffix(".parameters()") else {
                    throw MONAILabelError.invalid("\(file): \(id)#params: only '$@network.parameters()' is supported")
                }
            case "lr", "weight_decay":
                args[k] = try config.resolve("\(id)#\(k)")
            case "momentum" where cls == "SGD":
                args[k] = try config.resolve("\(id)#\(k)")
            default:
                guard let d = defaults[k], try canonical(config.resolve("\(id)#\(k)")) == canonical(d) else {
                    throw MONAILabelError.invalid("\(file): \(id)#\(k): not supported (only lr, weight_decay"
                        + (cls == "SGD" ? ", momentum" : "") + " and torch's defaults otherwise)")
                }
            }
        }
        guard let lr = args["lr"]?.doubleValue ?? (cls == "SGD" ? nil : 1e-3), lr > 0, lr <= 10 else {
            throw MONAILabelError.invalid("\(file): \(id)#lr must be a number in (0, 10]")
        }
        let wd = args["weight_decay"]?.doubleValue ?? (cls == "AdamW" ? 0.01 : 0)
        guard (0...1).contains(wd), args["weight_decay"] == nil || args["weight_decay"]?.doubleValue != nil else {
            throw MONAILabelError.invalid("\(file): \(id)#weight_decay must be a number in [0, 1]")
        }
        t["optimizer"] = .string(cls)
        t["lr"] = .double(lr)
        t["weight_decay"] = .double(wd)
        if cls == "SGD" {
            let m = args["momentum"]?.doubleValue ?? 0
            guard (0...1).contains(m), args["momentum"] == nil || args["momentum"]?.doubleValue != nil else {
                throw MONAILabelError.invalid("\(file): \(id)#momentum must be a number in [0, 1]")
            }
            t["momentum"] = .double(m)
        }
    }

    /// The trainer's loss: `DiceCELoss` or `DiceLoss` with `to_onehot_y` and `softmax`, background included.
    static func readLoss(_ config: BundleConfig) throws -> JSONObject {
        let file = config.fileName
        let id = referenced(config, "train#trainer#loss_function", fallback: "loss")
        guard config.has(id), config.has("\(id)#_target_"), let target = try config.resolve("\(id)#_target_").stringValue else {
            throw MONAILabelError.invalid("\(file): no '\(id)' loss with a _target_")
        }
        let cls = MONAIBundle.className(target)
        guard cls == "DiceCELoss" || cls == "DiceLoss" else {
            throw MONAILabelError.invalid("\(file): \(id)#_target_: loss '\(target)' is not supported (DiceCELoss, DiceLoss)")
        }
        guard case .object(let o) = try config.resolve(id) else { throw MONAILabelError.invalid("\(file): \(id) is not an object") }
        var loss: JSONObject = ["lambda_ce": cls == "DiceLoss" ? 0.0 : 1.0]
        for (k, v) in o {
            func need(_ expected: JSONValue, _ why: String) throws {
                guard v == expected else { throw MONAILabelError.invalid("\(file): \(id)#\(k) must be \(expected.compactString()) (\(why))") }
            }
            switch k {
            case "_target_": continue
            case "to_onehot_y": try need(true, "labels are class indices")
            case "softmax": try need(true, "softmax activation only")
            case "sigmoid": try need(false, "softmax activation only")
            case "other_act", "weight", "ce_weight": try need(.null, "not supported")
            case "include_background": try need(true, "background is included")
            case "jaccard": try need(false, "not supported")
            case "reduction": try need("mean", "mean reduction only")
            case "squared_pred", "batch":
                guard v.boolValue != nil else { throw MONAILabelError.invalid("\(file): \(id)#\(k) must be true or false") }
                loss[k] = v
            case "smooth_nr", "smooth_dr", "lambda_dice", "lambda_ce":
                guard cls == "DiceCELoss" || k.hasPrefix("smooth") else {
                    throw MONAILabelError.invalid("\(file): \(id)#\(k): not supported for \(cls)")
                }
                guard v.doubleValue != nil else { throw MONAILabelError.invalid("\(file): \(id)#\(k) must be a number") }
                loss[k] = v
            default:
                throw MONAILabelError.invalid("\(file): \(id)#\(k): not supported for \(cls)")
            }
        }
        for k in ["to_onehot_y", "softmax"] where o[k] == nil {
            throw MONAILabelError.invalid("\(file): \(id)#\(k) must be true (labels are class indices; softmax activation)")
        }
        // MONAI's defaults where the bundle leaves them out (the trainer's own defaults differ).
        if loss["squared_pred"] == nil { loss["squared_pred"] = false }
        if loss["batch"] == nil { loss["batch"] = false }
        return loss
    }

    /// The epochs between validations: the training handlers' `ValidationHandler` interval, else `val_interval`.
    static func validationInterval(_ config: BundleConfig) throws -> Int? {
        var found: JSONValue?
        if case .array(let handlers) = config.raw("train#handlers") {
            for i in handlers.indices {
                let id = "train#handlers#\(i)"
                guard config.has("\(id)#_target_"), config.has("\(id)#interval"),
                      MONAIBundle.className(try config.resolve("\(id)#_target_").stringValue ?? "") == "ValidationHandler"
                else { continue }
                found = try config.resolve("\(id)#interval")
            }
        }
        if found == nil, config.has("val_interval") { found = try config.resolve("val_interval") }
        guard let found else { return nil }
        guard let n = found.intValue, (1...100_000).contains(n) else {
            throw MONAILabelError.invalid("\(config.fileName): the validation interval must be an integer in 1...100000")
        }
        return n
    }

    /// Validation: its transforms must be the training's deterministic ones (validation runs on the same cache),
    /// its inferer's roi becomes `val_roi_size`, its post-processing softmax/argmax and its key metric MeanDice.
    static func readValidation(_ config: BundleConfig, trainPre: [JSONObject], into t: inout JSONObject) throws {
        let file = config.fileName
        guard config.has("validate") else { return }
        if let list = try? transformsID(config, dataset: "validate#dataset#transform", fallback: "validate#preprocessing") {
            var pre: [JSONObject] = []
            for id in try transformIDs(config, list) {
                guard let cls = try MONAIBundle.target(config, id) else { continue }
                let base = MONAIBundle.baseName(cls)
                if MONAIBundle.implicitTransforms.contains(base) { continue }
                guard MONAIBundle.preTransforms.contains(base), let spec = try MONAIBundle.preTransformSpec(config, id, cls) else {
                    throw MONAILabelError.invalid("\(file): \(id)#_target_: validation transform '\(cls)' is not supported "
                        + "(validation runs on the training's deterministic transforms)")
                }
                pre.append(spec)
            }
            guard pre.map({ canonical(.object($0)) }) == trainPre.map({ canonical(.object($0)) }) else {
                throw MONAILabelError.invalid("\(file): \(list): the validation transforms differ from the training's "
                    + "deterministic ones (not supported: validation runs on the training's cache)")
            }
        }
        let infererID = referenced(config, "validate#evaluator#inferer", fallback: "validate#inferer")
        if config.has(infererID) {
            guard case .object(let o) = try config.resolve(infererID), let target = o["_target_"]?.stringValue else {
                throw MONAILabelError.invalid("\(file): \(infererID)#_target_ is missing")
            }
            switch MONAIBundle.className(target) {
            case "SlidingWindowInferer":
                guard let roi = o["roi_size"] else { throw MONAILabelError.invalid("\(file): \(infererID)#roi_size is missing") }
                t["val_roi_size"] = roi
            case "SimpleInferer": break
            default:
                throw MONAILabelError.invalid("\(file): \(infererID)#_target_: '\(target)' is not supported "
                    + "(SimpleInferer, SlidingWindowInferer)")
            }
        }
        let postID = referenced(config, "validate#evaluator#postprocessing", fallback: "validate#postprocessing")
        if config.has(postID) {
            for id in try transformIDs(config, postID) {
                guard let cls = try MONAIBundle.target(config, id) else { continue }
                let o = try config.resolve(id).objectValue ?? JSONObject()
                switch MONAIBundle.baseName(cls) {
                case "EnsureType", "ToTensor", "ToDevice", "CopyItems", "ToNumpy", "Invert", "SaveImage": continue
                case "Activations":
                    guard o["sigmoid"]?.boolValue != true, o["other"] == nil || o["other"] == .null else {
                        throw MONAILabelError.invalid("\(file): \(id): only softmax activation is supported")
                    }
                case "AsDiscrete":
                    guard o["threshold"] == nil || o["threshold"] == .null else {
                        throw MONAILabelError.invalid("\(file): \(id)#threshold: only argmax is supported")
                    }
                default:
                    throw MONAILabelError.invalid("\(file): \(id)#_target_: validation post-transform '\(cls)' is not "
                        + "supported (Activationsd, AsDiscreted)")
                }
            }
        }
        let metricID = referenced(config, "validate#evaluator#key_val_metric", fallback: "validate#key_metric")
        if case .object(let metrics) = config.raw(metricID) {
            for (name, _) in metrics {
                let id = "\(metricID)#\(name)"
                guard config.has("\(id)#_target_"),
                      MONAIBundle.className(try config.resolve("\(id)#_target_").stringValue ?? "") == "MeanDice"
                else {
                    throw MONAILabelError.invalid("\(file): \(id)#_target_: only MeanDice is supported as the key metric")
                }
                if config.has("\(id)#include_background"), try config.resolve("\(id)#include_background") != .bool(false) {
                    throw MONAILabelError.invalid("\(file): \(id)#include_background must be false (as the server's Dice)")
                }
            }
        }
    }

    /// Only `keys` (and the arguments every dictionary transform has) besides `allowed`.
    static func allow(_ args: JSONObject, _ allowed: Set<String>, at id: String, file: String) throws {
        let common: Set<String> = ["_target_", "keys", "allow_missing_keys", "meta_keys", "meta_key_postfix", "lazy"]
        for (k, _) in args where !allowed.contains(k) && !common.contains(k) {
            throw MONAILabelError.invalid("\(file): \(id)#\(k): not supported")
        }
    }

    static func int(_ o: JSONObject, _ key: String, in range: ClosedRange<Int>, at id: String, file: String) throws -> Int? {
        guard let v = o[key] else { return nil }
        guard let n = v.intValue, range.contains(n) else {
            throw MONAILabelError.invalid("\(file): \(id)#\(key) must be an integer in \(range)")
        }
        return n
    }

    /// `v` with every object's keys sorted, so configs compare by content.
    static func canonical(_ v: JSONValue) -> JSONValue {
        switch v {
        case .object(let o):
            var out = JSONObject()
            for k in o.keys.sorted() { out[k] = canonical(o[k] ?? .null) }
            return .object(out)
        case .array(let a): return .array(a.map(canonical))
        case .int(let i): return .double(Double(i))
        default: return v
        }
    }
}
