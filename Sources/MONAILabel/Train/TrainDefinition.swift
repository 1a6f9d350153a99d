import Foundation

/// A model's trainer as `app.json` describes it in the model's `train` section (upstream's `BasicTrainTask`
/// subclass for that model, spec sections 4.2 and 5.2):
/// `{"description", "optimizer": "AdamW", "lr", "weight_decay", "loss": {"squared_pred", "batch"},
///   "spatial_size": [96, 96, 96], "num_samples", "val_interval", "val_roi_size", "config": {...}}`.
/// `config` overrides upstream's client-visible defaults (`max_epochs`, `val_split`, ...). A MONAI bundle's
/// trainer (MONAIBundleTrain) also sets `pre` (its own training transforms), `loss` weights and smoothing,
/// `momentum`, `crop_foreground` and `augmentation`.
public struct TrainDefinition: Sendable {
    public var model: String
    /// The model's `type`: which trainer runs it (`deepgrow` and `deepedit` train with simulated clicks, the
    /// others as segmentation).
    public var type: String
    public var description: String
    public var labels: JSONValue
    public var network: JSONObject
    /// The model's inference pre-transforms: training sees images exactly as inference will.
    public var pre: [JSONObject]
    public var optimizer: String
    public var lr: Double
    public var weightDecay: Double
    public var squaredPred: Bool
    public var batchDice: Bool
    /// DiceCE's term weights (`lambda_dice`, `lambda_ce`; a `DiceLoss` is `lambda_ce` 0) and smoothing.
    public var lambdaDice = 1.0
    public var lambdaCE = 1.0
    public var smoothNr = 1e-5
    public var smoothDr = 1e-5
    /// SGD's momentum; nil: the trainers' 0.9.
    public var momentum: Double?
    /// Whether training crops each case to its foreground (`CropForegroundd`) before sampling.
    public var cropForeground = true
    /// The random crop's and augmentations' settings; nil: upstream's segmentation trainer's.
    public var augmentation: CropAugmentation?
    /// Upper bound of the training crop; the planner may pick a smaller one.
    public var spatialSize: [Int]
    public var numSamples: Int
    public var valInterval: Int
    public var valRoiSize: [Int]
    public var config: JSONObject
    /// The model's whole `app.json` definition, for trainer-specific settings.
    public var modelDefinition: JSONObject

    /// Parses the `train` section of model `name`; nil when the model has no trainer.
    public init?(model name: String, definition d: JSONObject) throws {
        guard let t = d["train"]?.objectValue else { return nil }
        guard let network = d["network"]?.objectValue else {
            throw MONAILabelError.invalid("model \(name): a trainer needs the model's network")
        }
        model = name
        type = d["type"]?.stringValue ?? "segmentation"
        description = t["description"]?.stringValue ?? "Train \(name)"
        labels = d["labels"] ?? .array([])
        self.network = network
        pre = ((t["pre"] ?? d["pre"])?.arrayValue ?? []).compactMap(\.objectValue)
        optimizer = t["optimizer"]?.stringValue ?? "AdamW"
        guard ["Adam", "AdamW", "SGD"].contains(optimizer) else {
            throw MONAILabelError.invalid("model \(name): unknown optimizer '\(optimizer)' (Adam, AdamW or SGD)")
        }
        lr = t["lr"]?.doubleValue ?? 1e-4
        weightDecay = t["weight_decay"]?.doubleValue ?? 1e-5
        squaredPred = t["loss"]?["squared_pred"]?.boolValue ?? true
        batchDice = t["loss"]?["batch"]?.boolValue ?? true
        let dims = d["dimension"]?.intValue ?? 3
        guard (2...3).contains(dims) else { throw MONAILabelError.invalid("model \(name): dimension must be 2 or 3") }
        if let loss = t["loss"]?.objectValue {
            lambdaDice = try Self.number(loss, "lambda_dice", in: 0...1000, model: name) ?? 1
            lambdaCE = try Self.number(loss, "lambda_ce", in: 0...1000, model: name) ?? 1
            smoothNr = try Self.number(loss, "smooth_nr", in: 0...1, model: name) ?? 1e-5
            smoothDr = try Self.number(loss, "smooth_dr", in: 0...1, model: name) ?? 1e-5
        }
        momentum = try Self.number(t, "momentum", in: 0...1, model: name)
        cropForeground = t["crop_foreground"]?.boolValue ?? true
        if let a = t["augmentation"]?.objectValue { augmentation = try Self.augmentation(a, dims: dims, model: name) }
        spatialSize = Self.ints(t["spatial_size"], count: dims) ?? Array(repeating: 96, count: dims)
        numSamples = max(1, t["num_samples"]?.intValue ?? 4)
        valInterval = max(1, t["val_interval"]?.intValue ?? 1)
        valRoiSize = Self.ints(t["val_roi_size"], count: dims) ?? Self.ints(d["inferer"]?["roi_size"], count: dims)
            ?? spatialSize
        config = t["config"]?.objectValue ?? JSONObject()
        modelDefinition = d
    }

    /// The segmentation trainers' loss with this model's settings.
    public var diceCELoss: DiceCELoss {
        var l = DiceCELoss(squaredPred: squaredPred, batch: batchDice)
        (l.lambdaDice, l.lambdaCE, l.smoothNr, l.smoothDr) = (lambdaDice, lambdaCE, smoothNr, smoothDr)
        return l
    }

    static func number(_ o: JSONObject, _ key: String, in range: ClosedRange<Double>, model: String) throws -> Double? {
        guard let v = o[key], v != .null else { return nil }
        guard let x = v.doubleValue, range.contains(x) else {
            throw MONAILabelError.invalid("model \(model): train '\(key)' must be a number in \(range)")
        }
        return x
    }

    /// `{"pos", "neg", "image_threshold", "flips": [{"prob", "axes"}], "rotate90": {"prob", "max_k", "axes"},
    /// "shift_intensity": {"offsets", "prob"}}`, every number range-checked (a file sets them).
    static func augmentation(_ o: JSONObject, dims: Int, model: String) throws -> CropAugmentation {
        func bad(_ what: String) -> MONAILabelError { .invalid("model \(model): train augmentation '\(what)' is out of range") }
        func axes(_ v: JSONValue?, _ what: String) throws -> [Int]? {
            guard let v, v != .null else { return nil }
            let list = v.intValue.map { [$0] } ?? v.arrayValue?.compactMap(\.intValue) ?? []
            guard !list.isEmpty, list.count == (v.arrayValue?.count ?? 1), list.allSatisfy({ (0..<dims).contains($0) }) else {
                throw bad(what)
            }
            return list
        }
        var a = CropAugmentation()
        a.pos = try number(o, "pos", in: 0...1e6, model: model) ?? 1
        a.neg = try number(o, "neg", in: 0...1e6, model: model) ?? 1
        guard a.pos + a.neg > 0 else { throw bad("pos + neg") }
        a.imageThreshold = Float(try number(o, "image_threshold", in: -1e30...1e30, model: model) ?? 0)
        for (i, f) in (o["flips"]?.arrayValue ?? []).enumerated() {
            guard let f = f.objectValue else { throw bad("flips#\(i)") }
            a.flips.append(.init(prob: try number(f, "prob", in: 0...1, model: model) ?? 0.1,
                                 axes: try axes(f["axes"], "flips#\(i)#axes")))
        }
        if let r = o["rotate90"]?.objectValue {
            let ax = try axes(r["axes"], "rotate90#axes") ?? [0, 1]
            guard ax.count == 2, ax[0] != ax[1] else { throw bad("rotate90#axes") }
            let k = try number(r, "max_k", in: 1...3, model: model) ?? 3
            a.rotate = .init(prob: try number(r, "prob", in: 0...1, model: model) ?? 0.1, maxK: Int(k), axes: (ax[0], ax[1]))
        }
        if let sh = o["shift_intensity"]?.objectValue {
            a.shift = (try number(sh, "offsets", in: 0...1e6, model: model) ?? 0.1,
                       try number(sh, "prob", in: 0...1, model: model) ?? 0.1)
        }
        return a
    }

    /// Number of output channels (background included).
    public var outChannels: Int { network["out_channels"]?.intValue ?? 2 }

    /// The label values the model knows, background (0) included.
    public var labelValues: Set<Int> {
        var s: Set<Int> = [0]
        switch labels {
        case .object(let o): for (_, v) in o { if let i = v.intValue { s.insert(i) } }
        case .array(let a): for i in 0..<a.count { s.insert(i + 1) }
        default: break
        }
        return s
    }

    /// The spacing the model's `Spacingd` resamples to, if any.
    public var preSpacing: [Double]? {
        for t in pre where (t["name"]?.stringValue ?? "").hasPrefix("Spacing") {
            return t["pixdim"]?.arrayValue?.compactMap(\.doubleValue)
        }
        return nil
    }

    /// The product of the network's strides: crops must be multiples of it.
    public var divisor: Int {
        let s = network["strides"]?.arrayValue?.compactMap(\.intValue) ?? [2, 2, 2, 2]
        return max(1, s.reduce(1, *))
    }

    /// Upstream's `BasicTrainTask` config with this model's overrides, in upstream's key order.
    public func clientConfig() -> JSONObject {
        var c = JSONObject()
        c["name"] = "train_01"
        c["pretrained"] = true
        c["device"] = .array(DeviceList.names().map { .string($0) })
        c["max_epochs"] = 50
        c["early_stop_patience"] = -1
        c["val_split"] = 0.2
        c["train_batch_size"] = 1
        c["val_batch_size"] = 1
        c["multi_gpu"] = true
        c["gpus"] = "all"
        c["dataset"] = ["SmartCacheDataset", "CacheDataset", "PersistentDataset", "Dataset"]
        c["dataloader"] = ["ThreadDataLoader", "DataLoader"]
        c["tracking"] = ["mlflow", "None"]
        c["tracking_uri"] = ""
        c["tracking_experiment_name"] = ""
        for (k, v) in config { c[k] = v }
        return c
    }

    static func ints(_ v: JSONValue?, count: Int) -> [Int]? {
        guard let v, (1...4).contains(count) else { return nil }
        if let i = v.intValue, i > 0 { return Array(repeating: i, count: count) }
        guard let a = v.arrayValue, a.count == count else { return nil }
        let r = a.compactMap(\.intValue)
        return r.count == count && r.allSatisfy({ $0 > 0 }) ? r : nil
    }
}
