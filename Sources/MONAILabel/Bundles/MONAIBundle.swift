import Foundation

/// A MONAI bundle folder (`configs/metadata.json`, `configs/inference.json`, `models/model.pt` or `model.ts`)
/// turned into the model definition a `SegmentationTask` runs, as upstream's `BundleInferTask` reads it:
/// `network_def`, the `preprocessing` (or `pre_transforms`) list, the `inferer` and the `postprocessing` (or
/// `post_transforms`) list, the labels from the metadata's output `channel_def`. Every `_target_` is mapped by
/// its MONAI class name to what this server implements; anything else stops the start-up with a message that
/// names the config id.
public struct MONAIBundle: Sendable {
    public let name: String
    public let folder: URL
    /// `{"type", "labels", "dimension", "description", "network", "pre", "inferer", "post", "files"}`.
    public let definition: JSONObject
    /// The metadata's `version`.
    public let version: String?
    /// Where the weights live (`<bundle>/models`), the `modelDir` of the task.
    public var modelDir: URL { folder.appendingPathComponent("models") }

    /// Transforms that load or re-type the image, which the task's own loader already does.
    static let implicitTransforms: Set<String> = [
        "LoadImage", "EnsureChannelFirst", "AddChannel", "EnsureType", "ToTensor", "ToDevice", "CastToType", "Identity",
    ]
    /// Pre-transforms with a Swift implementation (`PreTransform`).
    static let preTransforms: Set<String> = [
        "Orientation", "Spacing", "ScaleIntensityRange", "ScaleIntensity", "NormalizeIntensity", "GaussianSmooth",
    ]
    static let inferers: Set<String> = ["SlidingWindowInferer", "SimpleInferer"]

    /// Reads the bundle in `folder`, served under `name`.
    public static func load(folder: URL, name: String) throws -> MONAIBundle {
        let configs = folder.appendingPathComponent("configs")
        guard FileOps.isDirectory(folder.path) else {
            throw MONAILabelError.notFound("bundle \(name): folder not found")
        }
        let inference = configs.appendingPathComponent("inference.json")
        guard FileOps.isRegularFile(inference.path) else {
            let yaml = FileOps.isRegularFile(configs.appendingPathComponent("inference.yaml").path)
            throw MONAILabelError.invalid("bundle \(name): no configs/inference.json"
                + (yaml ? " (configs/inference.yaml is not read: convert it to JSON)" : ""))
        }
        let config = try BundleConfig.read(inference, bundleRoot: folder)
        let metadataURL = configs.appendingPathComponent("metadata.json")
        guard let metaData = FileManager.default.contents(atPath: metadataURL.path) else {
            throw MONAILabelError.invalid("bundle \(name): no configs/metadata.json")
        }
        let metadata: JSONValue
        do { metadata = try JSONValue.parse(Array(metaData)) } catch {
            throw MONAILabelError.invalid("bundle \(name): metadata.json is not valid JSON: \(error)")
        }

        let type = taskType(name)
        guard type == "segmentation" else {
            throw MONAILabelError.invalid("bundle \(name): \(type) bundles are not served yet (segmentation only)")
        }
        let format = metadata["network_data_format"]
        let input = format?["inputs"]?.objectValue?.values.first
        let output = format?["outputs"]?.objectValue?.values.first
        var labels = JSONObject()
        for (k, v) in output?["channel_def"]?.objectValue ?? JSONObject() {
            guard let label = v.stringValue, let index = Int(k) else { continue }
            if label.lowercased() != "background" { labels[label.lowercased()] = .int(index) }
        }
        let dimension = input?["spatial_shape"]?.arrayValue?.count ?? 3
        guard dimension == 2 || dimension == 3 else {
            throw MONAILabelError.invalid("bundle \(name): metadata.json: the input's spatial_shape must have 2 or 3 sizes")
        }

        let models = folder.appendingPathComponent("models")
        let weights: String
        if FileOps.isRegularFile(models.appendingPathComponent("model.pt").path) {
            weights = "model.pt"
        } else if FileOps.isRegularFile(models.appendingPathComponent("model.ts").path) {
            weights = "model.ts"
        } else {
            throw MONAILabelError.invalid("bundle \(name): neither models/model.pt nor models/model.ts exists")
        }

        var d = JSONObject()
        d["type"] = .string(type)
        d["labels"] = .object(labels)
        d["dimension"] = .int(dimension)
        d["description"] = metadata["description"] ?? .string("")
        d["network"] = .object(try network(config))
        d["pre"] = .array(try preTransforms(config).map { .object($0) })
        d["inferer"] = .object(try inferer(config, dimension: dimension))
        d["post"] = .object(try postTransforms(config))
        // The bundle's weights are both the pretrained and the published file: training here replaces them.
        d["files"] = ["pretrained": .string(weights), "published": .string(weights)]
        return MONAIBundle(name: name, folder: folder, definition: d, version: metadata["version"]?.stringValue)
    }

    /// Upstream's `_get_type`: from the bundle's name.
    static func taskType(_ name: String) -> String {
        let n = name.lowercased()
        for t in ["deepedit", "deepgrow", "detection", "segmentation", "classification"] where n.contains(t) {
            return t
        }
        return "segmentation"
    }

    /// A `_target_` reduced to MONAI's class name (`monai.networks.nets.UNet` -> `UNet`).
    static func className(_ target: String) -> String {
        String(target.split(separator: ".").last ?? Substring(target))
    }

    /// The `network_def` item as a `NetworkFactory` spec.
    static func network(_ config: BundleConfig) throws -> JSONObject {
        let id = "network_def"
        guard config.has(id) else { throw MONAILabelError.invalid("\(config.fileName): no 'network_def'") }
        guard case .object(var spec) = try config.resolve(id) else {
            throw MONAILabelError.invalid("\(config.fileName): network_def is not a {\"_target_\": ...} object")
        }
        guard let target = spec["_target_"]?.stringValue else {
            throw MONAILabelError.invalid("\(config.fileName): network_def#_target_ is missing")
        }
        let cls = className(target)
        guard NetworkFactory.supported.contains(cls) else {
            throw MONAILabelError.invalid("\(config.fileName): network_def#_target_: network '\(target)' is not supported "
                + "(supported: \(NetworkFactory.supported.joined(separator: ", ")))")
        }
        spec["_target_"] = nil
        var out: JSONObject = ["name": .string(cls)]
        out.merge(spec)
        do { _ = try NetworkFactory.make(out) } catch let e as MONAILabelError {
            throw MONAILabelError.invalid("\(config.fileName): network_def: \(e.message)")
        }
        return out
    }

    /// The ids of the transforms of a Compose or list item, following `@` references.
    static func transformIDs(_ config: BundleConfig, _ id: String, depth: Int = 0) throws -> [String] {
        guard depth < BundleConfig.maxDepth else {
            throw MONAILabelError.invalid("\(config.fileName): \(id): references nest deeper than \(BundleConfig.maxDepth) (a cycle?)")
        }
        guard let v = config.raw(id) else { throw MONAILabelError.invalid("\(config.fileName): \(id): no transform list") }
        switch v {
        case .string(let s) where s.hasPrefix("@"):
            return try transformIDs(config, String(s.dropFirst()), depth: depth + 1)
        case .object(let o) where o["_target_"] != nil:
            guard className(o["_target_"]?.stringValue ?? "") == "Compose", o["transforms"] != nil else {
                return [id]
            }
            return try transformIDs(config, "\(id)#transforms", depth: depth + 1)
        case .array(let a):
            return try a.indices.flatMap { i -> [String] in
                if case .string(let s) = a[i], s.hasPrefix("@") {
                    return try transformIDs(config, String(s.dropFirst()), depth: depth + 1)
                }
                return ["\(id)#\(i)"]
            }
        default:
            throw MONAILabelError.invalid("\(config.fileName): \(id): not a transform list")
        }
    }

    /// A transform's class name (its `_target_`, resolved), nil for a disabled one.
    static func target(_ config: BundleConfig, _ id: String) throws -> String? {
        if let o = config.raw(id)?.objectValue,
           o["_disabled_"]?.boolValue == true || o["_disabled_"]?.stringValue?.lowercased() == "true"
        {
            return nil
        }
        guard config.has("\(id)#_target_"), let t = try config.resolve("\(id)#_target_").stringValue else {
            throw MONAILabelError.invalid("\(config.fileName): \(id): a transform without a _target_")
        }
        return className(t)
    }

    /// MONAI's dictionary and array transforms share a name but for the `d` suffix (`Spacingd`, `Spacing`).
    static func baseName(_ cls: String) -> String {
        cls.hasSuffix("d") && cls != "Spacing" ? String(cls.dropLast()) : cls
    }

    static func preTransforms(_ config: BundleConfig) throws -> [JSONObject] {
        guard let key = ["preprocessing", "pre_transforms"].first(where: config.has) else { return [] }
        var out: [JSONObject] = []
        for id in try transformIDs(config, key) {
            guard let cls = try target(config, id) else { continue }
            let base = baseName(cls)
            if implicitTransforms.contains(base) { continue }
            guard preTransforms.contains(base) else {
                throw MONAILabelError.invalid("\(config.fileName): \(id)#_target_: transform '\(cls)' is not supported "
                    + "(supported: \(preTransforms.sorted().map { $0 + "d" }.joined(separator: ", ")))")
            }
            if let spec = try preTransformSpec(config, id, cls) { out.append(spec) }
        }
        return out
    }

    /// The `PreTransform` spec of the supported transform `cls` at `id`, checked; nil when the item is no object.
    static func preTransformSpec(_ config: BundleConfig, _ id: String, _ cls: String) throws -> JSONObject? {
        guard case .object(var args) = try config.resolve(id) else { return nil }
        // Per-key arguments (`"mode": ["bilinear", "nearest"]` for `keys: ["image", "label"]`): the image's.
        let keys = args["keys"]?.arrayValue?.compactMap(\.stringValue) ?? [args["keys"]?.stringValue ?? "image"]
        let slot = keys.firstIndex(of: "image") ?? 0
        if let modes = args["mode"]?.arrayValue, modes.indices.contains(slot) { args["mode"] = modes[slot] }
        for k in ["_target_", "keys", "allow_missing_keys", "meta_keys", "meta_key_postfix"] { args[k] = nil }
        var spec: JSONObject = ["name": .string(cls)]
        spec.merge(args)
        do { _ = try PreTransform(spec) } catch let e as MONAILabelError {
            throw MONAILabelError.invalid("\(config.fileName): \(id): \(e.message)")
        }
        return spec
    }

    /// The `inferer` item as the task's inferer section (`SimpleInferer`, or none: the whole image at once).
    static func inferer(_ config: BundleConfig, dimension: Int) throws -> JSONObject {
        guard config.has("inferer") else { return JSONObject() }
        guard case .object(let o) = try config.resolve("inferer"), let t = o["_target_"]?.stringValue else {
            throw MONAILabelError.invalid("\(config.fileName): inferer#_target_ is missing")
        }
        let cls = className(t)
        guard inferers.contains(cls) else {
            throw MONAILabelError.invalid("\(config.fileName): inferer#_target_: '\(t)' is not supported "
                + "(supported: \(inferers.sorted().joined(separator: ", ")))")
        }
        guard cls == "SlidingWindowInferer" else { return JSONObject() }
        var out = JSONObject()
        guard let roi = o["roi_size"] else { throw MONAILabelError.invalid("\(config.fileName): inferer#roi_size is missing") }
        let sizes = roi.intValue.map { Array(repeating: $0, count: dimension) } ?? roi.arrayValue?.compactMap(\.intValue) ?? []
        guard sizes.count == dimension, sizes.allSatisfy({ (1...4096).contains($0) }) else {
            throw MONAILabelError.invalid("\(config.fileName): inferer#roi_size must be \(dimension) sizes in 1...4096")
        }
        out["roi_size"] = .array(sizes.map { .int($0) })
        if let v = o["sw_batch_size"] {
            guard let b = v.intValue, (1...1024).contains(b) else {
                throw MONAILabelError.invalid("\(config.fileName): inferer#sw_batch_size must be in 1...1024")
            }
            out["sw_batch_size"] = .int(b)
        }
        if let v = o["overlap"] {
            guard let x = v.doubleValue, (0..<1).contains(x) else {
                throw MONAILabelError.invalid("\(config.fileName): inferer#overlap must be in [0, 1)")
            }
            out["overlap"] = .double(x)
        }
        if let m = o["mode"]?.stringValue {
            guard ["constant", "gaussian"].contains(m) else {
                throw MONAILabelError.invalid("\(config.fileName): inferer#mode '\(m)' is not supported (constant, gaussian)")
            }
            out["mode"] = .string(m)
        }
        if let p = o["padding_mode"]?.stringValue {
            guard ["constant", "replicate"].contains(p) else {
                throw MONAILabelError.invalid("\(config.fileName): inferer#padding_mode '\(p)' is not supported (constant, replicate)")
            }
            out["padding_mode"] = .string(p)
        }
        return out
    }

    /// The post-processing list checked against what the task does anyway (softmax, argmax, inversion onto the
    /// source grid, writing) plus `KeepLargestConnectedComponentd`.
    static func postTransforms(_ config: BundleConfig) throws -> JSONObject {
        guard let key = ["postprocessing", "post_transforms"].first(where: config.has) else { return JSONObject() }
        var out = JSONObject()
        for id in try transformIDs(config, key) {
            guard let cls = try target(config, id) else { continue }
            switch baseName(cls) {
            case "Invert", "SaveImage", "EnsureType", "ToTensor", "ToDevice", "CopyItems", "ToNumpy":
                continue
            case "Activations":
                guard try config.resolve("\(id)").objectValue?["sigmoid"]?.boolValue != true else {
                    throw MONAILabelError.invalid("\(config.fileName): \(id): sigmoid activation is not supported (softmax)")
                }
            case "AsDiscrete":
                let o = try config.resolve(id).objectValue ?? JSONObject()
                guard o["threshold"] == nil || o["threshold"] == .null, o["argmax"]?.boolValue != false else {
                    throw MONAILabelError.invalid("\(config.fileName): \(id): only AsDiscreted(argmax=True) is supported")
                }
            case "KeepLargestConnectedComponent":
                out["largest_cc"] = .bool(true)
            default:
                throw MONAILabelError.invalid("\(config.fileName): \(id)#_target_: post-transform '\(cls)' is not supported "
                    + "(supported: Activationsd, AsDiscreted, KeepLargestConnectedComponentd, Invertd, SaveImaged)")
            }
        }
        return out
    }
}
