import Foundation
import Imaging
import TorchKit

/// An inference request as a task sees it: the image file and the merged params (task config, then the
/// client's params, which may override anything).
public struct InferRequest: Sendable {
    public var imagePath: String
    public var params: JSONObject

    public init(imagePath: String, params: JSONObject) {
        self.imagePath = imagePath
        self.params = params
    }
}

/// What an inference produced: the label file (a temporary file the caller owns) and upstream's result JSON
/// (`label_names`, `latencies`, `centroids`, ...).
public struct InferResult: Sendable {
    public var file: URL?
    public var json: JSONObject
}

extension InferResult {
    /// Upstream's `Writer` and result JSON, which every infer task ends with: the label written to a temporary
    /// file honouring `result_extension` (default: the image's), `result_dtype` (default uint8) and
    /// `result_compress`, or no file with `skip_writer`; then `extra` (a task's own keys, first), `label_names`,
    /// `latencies` (total since `started`) and `centroids`. A format or dtype the writer refuses is the client's
    /// error, not the server's.
    static func written(
        _ label: Volume, for request: InferRequest, labels: JSONValue, timings: inout Timings, started: DispatchTime,
        extra: JSONObject = JSONObject()
    ) throws -> InferResult {
        let p = request.params
        let file: URL? = try timings.measure("stage", "write") {
            if p["skip_writer"]?.boolValue == true { return nil }
            let ext = p["result_extension"]?.stringValue ?? ImageIO.fileExtension(of: request.imagePath) ?? ".nii.gz"
            var dtype = VoxelType.uint8
            if let d = p["result_dtype"]?.stringValue {
                guard let t = VoxelType(numpyName: d) else { throw MONAILabelError.invalid("unsupported result_dtype '\(d)'") }
                dtype = t
            }
            // `result_compress` (default false) as upstream's ITK writer: a plain `.nrrd` result is raw unless asked
            // for gzip (OHIF's NRRD reader only decodes raw data itself).
            let compress = p["result_compress"]?.boolValue ?? false
            do {
                return try ImageIO.writeTemporary(label, resultExtension: ext, dtype: dtype, compress: compress)
            } catch let e as ImagingError {
                throw MONAILabelError.invalid(e.message)
            }
        }
        let total = Double(DispatchTime.now().uptimeNanoseconds - started.uptimeNanoseconds) / 1e9
        var json = extra
        json["label_names"] = labels
        json["latencies"] = .object(timings.latencies(total: total))
        json["centroids"] = .object(JSONObject())
        return InferResult(file: file, json: json)
    }
}

/// Upstream's `BasicInferTask` for segmentation models (spec section 4.1): pre-transforms, a simple or
/// sliding-window inferer, softmax + argmax (+ largest connected component), `Restored` onto the source grid
/// in world space, and the writer honouring `result_extension` / `result_dtype`.
public final class SegmentationTask: ModelTask, @unchecked Sendable {
    public let name: String
    public let type: String
    public let labels: JSONValue
    public let dimension: Int
    public let description: String
    public var config: JSONObject { DeviceList.config(baseConfig) }

    let pre: [PreTransform]
    let inferer: JSONObject
    let largestCC: Bool
    public let loader: ModelLoader
    private let baseConfig: JSONObject

    /// Builds the task from its `app.json` definition:
    /// `{"type", "labels", "dimension", "description", "network": {...}, "pre": [...], "inferer": {...},
    ///   "post": {"largest_cc": true}, "files": {"pretrained": "...", "published": "..."}, "config": {...}}`.
    public init(name: String, definition d: JSONObject, modelDir: URL) throws {
        self.name = name
        type = d["type"]?.stringValue ?? "segmentation"
        labels = d["labels"] ?? .array([])
        dimension = d["dimension"]?.intValue ?? 3
        guard (2...3).contains(dimension) else { throw MONAILabelError.invalid("model \(name): dimension must be 2 or 3") }
        description = d["description"]?.stringValue ?? ""
        guard let network = d["network"]?.objectValue else {
            throw MONAILabelError.invalid("model \(name): app.json gives no network")
        }
        _ = try NetworkFactory.make(network)  // fail at start-up, not at the first request
        pre = try (d["pre"]?.arrayValue ?? []).map { e in
            guard let o = e.objectValue else { throw MONAILabelError.invalid("model \(name): bad pre-transform") }
            return try PreTransform(o)
        }
        inferer = d["inferer"]?.objectValue ?? JSONObject()
        largestCC = d["post"]?["largest_cc"]?.boolValue ?? false
        baseConfig = d["config"]?.objectValue ?? JSONObject()
        loader = ModelLoader(model: name, networkSpec: network, files: d["files"], modelDir: modelDir)
    }

    public func infer(_ request: InferRequest) throws -> InferResult {
        let p = request.params
        var timings = Timings()
        let started = DispatchTime.now()
        // Malformed inferer params are the client's error: refuse them before the image is read.
        _ = try slidingWindow(params: p)

        // Pre-transforms, inferer and argmax in one scope, so that neither the source volume nor the preprocessed
        // one is alive while the network runs, and the input tensor and the logits are released as soon as the
        // labels are on the host.
        let preGrid: Grid, restore: Restored, classes: [UInt8]
        do {
            let input: Tensor
            (input, preGrid, restore) = try preprocess(imagePath: request.imagePath, timings: &timings)
            let spatial = preGrid.spatialShape
            let logits = try timings.measure("stage", "infer") { try predictTensor(input: input, params: p) }
            guard logits.shape.count == spatial.count + 2, Array(logits.shape.dropFirst(2)) == spatial else {
                throw MONAILabelError.io("model \(name): the network returned \(logits.shape) for an input of \(spatial)")
            }
            timings.record("stage", "invert", 0)

            // Post-transforms: argmax stays in libtorch (multithreaded, no host copy of the logits). Softmax is
            // monotonic per voxel, so the argmax of the logits is the argmax of the probabilities: `Activationsd`
            // computes nothing and is recorded as 0, like the no-op `EnsureTyped`.
            timings.record("post", "EnsureTyped", 0)
            timings.record("post", "Activationsd", 0)
            classes = try timings.measure("post", "AsDiscreted") {
                guard logits.shape[1] <= 256 else { throw MONAILabelError.io("model \(name) has more than 256 classes") }
                return try Self.argmaxOverChannels(logits).array(of: UInt8.self)
            }
        }
        var pred = Volume(spatialShape: preGrid.spatialShape, channels: 1, data: .uint8(classes), affine: preGrid.affine)
        if largestCC || p["largest_cc"]?.boolValue == true {
            pred = try timings.measure("post", "KeepLargestConnectedComponentd") { try KeepLargestConnectedComponent()(pred) }
        }
        pred = try timings.measure("post", "Restored") {
            var r = try restore(pred)
            if p["restore_label_idx"]?.boolValue == true { r = try remapToLabelValues(r) }
            return r
        }

        return try .written(pred, for: request, labels: labels, timings: &timings, started: started)
    }

    /// Loads the image and runs the pre-transforms in place, timing each; returns the network input
    /// (`[1, C, *spatial]`, its copy timed as part of the network stage), the preprocessed grid, and the
    /// `Restored` that brings a prediction back onto the source grid.
    func preprocess(imagePath: String, timings: inout Timings) throws -> (Tensor, Grid, Restored) {
        var x = try loadImage(imagePath, timings: &timings)
        let restore = Restored(original: x)
        timings.record("pre", "EnsureTyped", 0)
        timings.record("pre", "EnsureChannelFirstd", 0)
        for t in pre { try timings.measure("pre", t.name) { try t.run(&x) } }
        let input = try timings.measure("stage", "infer") { try Tensor(x.floats, shape: [1] + x.shape) }
        return (input, x.grid, restore)
    }

    /// The logits of `predictTensor`, flattened to host floats (`[K, *spatial]`).
    func predict(_ x: Volume, params p: JSONObject) throws -> [Float] {
        try predictTensor(x, params: p).floats()
    }

    /// Runs the network on a preprocessed volume (`[C, *spatial]`) and returns the logits `[1, K, *spatial]`:
    /// the sliding-window inferer when the model has a window (it also pads volumes smaller than
    /// the window, which keeps every size the network's strides can digest), the simple one otherwise.
    func predictTensor(_ x: Volume, params p: JSONObject) throws -> Tensor {
        try predictTensor(input: Tensor(x.floats, shape: [1] + x.shape), params: p)
    }

    /// `predictTensor` on an input already in libtorch (`[1, C, *spatial]`), on the request's device
    /// (`InferPlacement`): the network and the windows run there; the logits lie where the sliding window
    /// accumulated them.
    func predictTensor(input: Tensor, params p: JSONObject) throws -> Tensor {
        let sw = try slidingWindow(params: p)
        let placement = try InferPlacement(params: p)
        let autocast = try InferPrecision.autocast(params: p, device: placement.device)
        return try placement.run { accumulate in
            try loader.withNetwork(on: placement.device) { net -> Tensor in
                if let sw {
                    return try sw(input, device: placement.device, accumulate: accumulate,
                                  predictingRegion: { try net.forward($0, outputRegion: $1, autocast: autocast) })
                }
                return try net.forward(input.to(placement.device), autocast: autocast)
            }
        }
    }

    public func validate(params: JSONObject) throws {
        _ = try slidingWindow(params: params)
        _ = try InferPrecision.autocast(params: params, device: InferPlacement(params: params).device)
    }

    /// The sliding-window inferer of the model's `inferer` section with the client's `roi_size`, `sw_batch_size`,
    /// `sw_overlap` and `channels_last` (our extension, default `windowsChannelsLastByDefault`) over it,
    /// each range-checked (the inferer then bounds its buffers and window count); nil when the model runs whole
    /// volumes.
    func slidingWindow(params p: JSONObject) throws -> SlidingWindowInferer? {
        guard let roi = try p.intListParam("roi_size", count: dimension, in: 1...4096)
            ?? inferer.intListParam("roi_size", count: dimension, in: 1...4096)
        else { return nil }
        return SlidingWindowInferer(
            roiSize: roi,
            swBatchSize: try p.intParam("sw_batch_size", in: 1...1024) ?? inferer.intParam("sw_batch_size", in: 1...1024) ?? 1,
            overlap: try p.doubleParam("sw_overlap", in: 0..<1) ?? inferer.doubleParam("overlap", in: 0..<1) ?? 0.25,
            mode: BlendMode(rawValue: inferer["mode"]?.stringValue ?? "constant") ?? .constant,
            padding: inferer["padding_mode"]?.stringValue == "replicate" ? .replicate : .constant(0),
            channelsLast: try p.boolParam("channels_last") ?? inferer["channels_last"]?.boolValue
                ?? Self.windowsChannelsLastByDefault)
    }

    /// Whether windows go to the network channels-last unless the request or the model's `inferer` says: on CPU
    /// hosts with libtorch 2.x, whose oneDNN convolutions take NDHWC as it is (TorchKit runs the large ones in one
    /// call then, `Conv.largeOutputsChannelsLast`). 96x96x64 segmentation_spleen, 2.13 wheel, 2 threads, 6
    /// alternating pairs: network stage median 0.70 s against 0.95 s contiguous. libtorch 1.13 (slabs, which a
    /// channels-last input does not help) measured even; CUDA hosts were not measured, so they stay contiguous.
    static var windowsChannelsLastByDefault: Bool { Torch.version.major >= 2 && !Torch.cudaIsAvailable }

    /// `argmax` over dim 1 as byte labels, the first maximum winning like `torch.argmax`. Built from
    /// element-wise passes because libtorch 1.13's CPU argmax over a short, strided channel axis is an order of
    /// magnitude slower than one comparison per channel.
    static func argmaxOverChannels(_ p: Tensor) throws -> Tensor {
        let k = p.shape[1]
        var best = try p.narrow(dim: 1, start: 0, length: 1)
        guard k > 1 else { return try Tensor.zeros(best.shape, dtype: .uint8, device: p.device).squeeze(dim: 1) }
        // Channel 1 wins exactly where it beats channel 0: that comparison is the index so far.
        var v = try p.narrow(dim: 1, start: 1, length: 1)
        var better = try v.gt(best)
        var index = try better.to(.uint8)
        for c in 2..<k {
            best = try Tensor.where(better, v, best)
            v = try p.narrow(dim: 1, start: c, length: 1)
            better = try v.gt(best)
            index = try Tensor.where(better, Tensor.full(index.shape, value: Double(c), dtype: .uint8, device: p.device), index)
        }
        return try index.squeeze(dim: 1).contiguous()
    }

    /// `restore_label_idx`: output value j becomes the value of the j-th (1-based) label of the map,
    /// entries named `background` skipped, as upstream's `Restored(config_labels=...)`.
    private func remapToLabelValues(_ v: Volume) throws -> Volume {
        guard case .object(let map) = labels else { return v }
        let values = map.filter { $0.key != "background" }.compactMap { $0.value.intValue }
        let src = v.floats
        let out = src.map { x -> Float in
            let j = Int(x)
            return j >= 1 && j <= values.count ? Float(values[j - 1]) : x
        }
        return Volume(spatialShape: v.spatialShape, channels: v.channels, data: .float32(out), affine: v.affine, source: v.source)
    }
}

/// Collects upstream's `latencies`: stage totals rounded to 2 decimals and per-transform times to 4.
struct Timings {
    private var pre = JSONObject(), post = JSONObject()
    private var stages: [String: Double] = [:]

    mutating func record(_ group: String, _ name: String, _ seconds: Double) {
        switch group {
        case "pre":
            pre[name] = .double((seconds * 1e4).rounded() / 1e4)
            stages["pre", default: 0] += seconds
        case "post":
            post[name] = .double((seconds * 1e4).rounded() / 1e4)
            stages["post", default: 0] += seconds
        default:
            stages[name, default: 0] += seconds
        }
    }

    mutating func measure<T>(_ group: String, _ name: String, _ body: () throws -> T) rethrows -> T {
        let t0 = DispatchTime.now().uptimeNanoseconds
        let r = try body()
        record(group, name, Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
        return r
    }

    func latencies(total: Double) -> JSONObject {
        func r2(_ x: Double) -> JSONValue { .double((x * 100).rounded() / 100) }
        var out = JSONObject()
        for k in ["pre", "infer", "invert", "post", "write"] { out[k] = r2(stages[k] ?? 0) }
        out["total"] = r2(total)
        out["transform"] = ["pre": .object(pre), "post": .object(post)]
        return out
    }
}

/// Upstream's `device_list()`: `["cpu"]` without CUDA, else the GPUs by product name (one GPU by its name, several
/// as `NAME:i`; clients send one back). `device` accepts those names as upstream's `name_to_device` does, besides
/// `cpu`, `cuda` and `cuda:N`.
public enum DeviceList {
    public static func names() -> [String] { gpus.isEmpty ? ["cpu"] : gpus.map(\.name) }

    /// The GPUs' display names and devices, read once: a backend built without CUDA's headers cannot read the
    /// product names and lists `cuda` / `cuda:i` instead.
    static let gpus: [(name: String, device: Device)] = {
        guard Torch.cudaIsAvailable else { return [] }
        let n = Torch.cudaDeviceCount
        return (0..<n).map { i in
            guard let product = try? Torch.cudaDeviceName(device: i), !product.isEmpty else {
                return (n == 1 ? "cuda" : "cuda:\(i)", .cuda(i))
            }
            return (n == 1 ? product : "\(product):\(i)", .cuda(i))
        }
    }()

    /// The device a request's `device` parameter names (a name, or a list as upstream accepts: its first), checked
    /// against the backend's devices (a listed GPU name, else `Device(parsing:)`); nil when absent. A refused name
    /// is a 422 naming `device`.
    static func requested(_ value: JSONValue?) throws -> Device? {
        guard let value else { return nil }
        var name = value.stringValue
        if case .array(let a) = value { name = a.first?.stringValue }
        guard let name else { throw MONAILabelError.invalid("device must be a device name (cpu, cuda, cuda:N)") }
        if let gpu = gpus.first(where: { $0.name == name }) { return gpu.device }
        do {
            return try Device(parsing: name)
        } catch {
            throw MONAILabelError.invalid(error.message)
        }
    }

    /// `/info/`'s `torch` object (not in upstream's schema; clients ignore it): the libtorch the loaded backend
    /// was built against and the devices it offers.
    static func backendInfo() -> JSONValue {
        ["libtorch": .string(Torch.versionString), "devices": .array(names().map { .string($0) })]
    }

    /// An infer task's `/info/` config: its own settings, then `device`, the list a client picks from.
    static func config(_ own: JSONObject) -> JSONObject {
        var c = own
        c["device"] = .array(names().map { .string($0) })
        return c
    }
}
