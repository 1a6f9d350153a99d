import Foundation

/// A model's trainer as `app.json` describes it in the model's `train` section (upstream's `BasicTrainTask`
/// subclass for that model, spec sections 4.2 and 5.2):
/// `{"description", "optimizer": "AdamW", "lr", "weight_decay", "loss": {"squared_pred", "batch"},
///   "spatial_size": [96, 96, 96], "num_samples", "val_interval", "val_roi_size", "config": {...}}`.
/// `config` overrides upstream's client-visible defaults (`max_epochs`, `val_split`, ...).
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
        pre = (d["pre"]?.arrayValue ?? []).compactMap(\.objectValue)
        optimizer = t["optimizer"]?.stringValue ?? "AdamW"
        guard ["Adam", "AdamW", "SGD"].contains(optimizer) else {
            throw MONAILabelError.invalid("model \(name): unknown optimizer '\(optimizer)' (Adam, AdamW or SGD)")
        }
        lr = t["lr"]?.doubleValue ?? 1e-4
        weightDecay = t["weight_decay"]?.doubleValue ?? 1e-5
        squaredPred = t["loss"]?["squared_pred"]?.boolValue ?? true
        batchDice = t["loss"]?["batch"]?.boolValue ?? true
        let dims = d["dimension"]?.intValue ?? 3
        spatialSize = Self.ints(t["spatial_size"], count: dims) ?? Array(repeating: 96, count: dims)
        numSamples = max(1, t["num_samples"]?.intValue ?? 4)
        valInterval = max(1, t["val_interval"]?.intValue ?? 1)
        valRoiSize = Self.ints(t["val_roi_size"], count: dims) ?? Self.ints(d["inferer"]?["roi_size"], count: dims)
            ?? spatialSize
        config = t["config"]?.objectValue ?? JSONObject()
        modelDefinition = d
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
        guard let v else { return nil }
        if let i = v.intValue, i > 0 { return Array(repeating: i, count: count) }
        guard let a = v.arrayValue, a.count == count else { return nil }
        let r = a.compactMap(\.intValue)
        return r.count == count && r.allSatisfy({ $0 > 0 }) ? r : nil
    }
}
