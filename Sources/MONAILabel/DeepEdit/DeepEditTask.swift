import Foundation
import Imaging
import TorchKit

/// Upstream's radiology `DeepEdit` infer task (type `deepedit`, spec section 5.2): one network for interactive
/// and automatic multi-label segmentation. The request carries one click list per label name (voxel indices
/// `[i, j, k]` of the image as loaded); the clicks follow the image through `Orientationd` (upstream's
/// `OrientationGuidanceMultipleLabelDeepEditd`) and `Resized` to `spatial_size`, and become one Gaussian
/// guidance channel per label (background included) next to the intensity channel. A request without any
/// click gets all-zero guidance channels: the automatic segmentation of upstream's `deepedit_seg`.
///
/// Post: argmax over the network's output (softmax does not change it), then `Restored` onto the loaded image's
/// grid through world space like `SegmentationTask`. Output values are the normalised label indices (1, 2, ...
/// in the label map's order; `restore_label_idx` maps them back to the map's values), which is what
/// 3D Slicer expects when it pairs values with the `label_names` sorted by value.
public final class DeepEditTask: ModelTask, @unchecked Sendable {
    public let name: String
    public let type = "deepedit"
    public let labels: JSONValue
    public let dimension = 3
    public let description: String
    public var config: JSONObject { DeviceList.config(baseConfig) }

    /// The labels in map order with their channel indices.
    public let deepEditLabels: [DeepEditLabel]
    /// `Resized` target of the network input (upstream's `spatial_size`, 128^3 for the radiology model).
    public let spatialSize: [Int]
    /// Background plus one channel per other label.
    let outChannels: Int
    let pre: [PreTransform]
    let signal: AddGuidanceSignalDeepEdit
    public let loader: ModelLoader
    private let baseConfig: JSONObject

    /// Builds the task from its `app.json` definition:
    /// `{"type": "deepedit", "labels": {name: value, ..., "background": 0}, "network": {...}, "pre": [...],
    ///   "spatial_size": [128, 128, 128], "sigma": 3, "number_intensity_ch": 1, "files": {...}}`.
    public init(name: String, definition d: JSONObject, modelDir: URL) throws {
        self.name = name
        labels = d["labels"] ?? .null
        deepEditLabels = try DeepEditLabel.from(labels)
        description = d["description"]?.stringValue ?? "A DeepEdit model for volumetric (3D) segmentation over 3D Images"
        guard let network = d["network"]?.objectValue else {
            throw MONAILabelError.invalid("model \(name): app.json gives no network")
        }
        let intensity = d["number_intensity_ch"]?.intValue ?? 1
        guard intensity >= 1 else { throw MONAILabelError.invalid("model \(name): number_intensity_ch must be >= 1") }
        let netIn = network["in_channels"]?.intValue, netOut = network["out_channels"]?.intValue
        let foreground = deepEditLabels.filter { !$0.isBackground }.count
        self.outChannels = foreground + 1
        guard netIn == intensity + deepEditLabels.count, netOut == foreground + 1 else {
            throw MONAILabelError.invalid(
                "model \(name): with \(deepEditLabels.count) labels the network needs in_channels "
                    + "\(intensity + deepEditLabels.count) (image + one guidance channel per label) and out_channels "
                    + "\(foreground + 1), not \(netIn.map(String.init) ?? "none") and \(netOut.map(String.init) ?? "none")")
        }
        _ = try NetworkFactory.make(network)  // fail at start-up, not at the first request
        pre = try (d["pre"]?.arrayValue ?? []).map { e in
            guard let o = e.objectValue else { throw MONAILabelError.invalid("model \(name): bad pre-transform") }
            return try PreTransform(o)
        }
        guard let size = TrainDefinition.ints(d["spatial_size"] ?? [128, 128, 128], count: 3) else {
            throw MONAILabelError.invalid("model \(name): spatial_size must be 3 positive integers")
        }
        spatialSize = size
        signal = AddGuidanceSignalDeepEdit(sigma: d["sigma"]?.doubleValue ?? 3, intensityChannels: intensity)
        baseConfig = d["config"]?.objectValue ?? JSONObject()
        loader = ModelLoader(model: name, networkSpec: network, files: d["files"], modelDir: modelDir)
    }

    public func infer(_ request: InferRequest) throws -> InferResult {
        let p = request.params
        var timings = Timings()
        let started = DispatchTime.now()
        let clicks = try DeepEditGuidance.clicks(from: p, labels: deepEditLabels.map(\.name))
        let placement = try InferPlacement(params: p)
        let autocast = try InferPrecision.autocast(params: p, device: placement.device)

        let (input, grid, restore) = try preprocess(imagePath: request.imagePath, clicks: clicks, timings: &timings)
        let classes: [UInt8] = try timings.measure("stage", "infer") {
            let logits = try placement.run { _ in
                try loader.withNetwork(on: placement.device) { try $0.forward(input.to(placement.device), autocast: autocast) }
            }
            guard logits.shape == [1, outChannels] + spatialSize else {
                throw MONAILabelError.io("model \(name): the network returned \(logits.shape) for an input of \(input.shape)")
            }
            guard logits.shape[1] <= 256 else { throw MONAILabelError.io("model \(name) has more than 256 classes") }
            return try SegmentationTask.argmaxOverChannels(logits).array(of: UInt8.self)
        }
        timings.record("stage", "invert", 0)
        // Softmax is monotonic per voxel: the argmax above is that of the probabilities.
        timings.record("post", "EnsureTyped", 0)
        timings.record("post", "Activationsd", 0)
        timings.record("post", "AsDiscreted", 0)
        timings.record("post", "SqueezeDimd", 0)
        var pred = Volume(spatialShape: grid.spatialShape, channels: 1, data: .uint8(classes), affine: grid.affine)
        pred = try timings.measure("post", "Restored") {
            let r = try restore(pred)
            guard p["restore_label_idx"]?.boolValue == true else { return r }
            var map = [Float](repeating: 0, count: 256)
            for i in 0..<256 { map[i] = Float(i) }
            for l in deepEditLabels where !l.isBackground && l.index < 256 { map[l.index] = Float(l.value) }
            let values = r.floats.map { map[min(max(Int($0), 0), 255)] }
            return Volume(spatialShape: r.spatialShape, channels: r.channels, data: .float32(values), affine: r.affine,
                          source: r.source)
        }

        return try .written(pred, for: request, labels: labels, timings: &timings, started: started)
    }

    /// Loads the image and runs upstream's pre-transforms, timing each under its MONAI name; returns the network
    /// input `[1, intensity + labels, *spatial_size]`, its grid, and the `Restored` back to the loaded image.
    func preprocess(imagePath: String, clicks: [LabelGuidance], timings: inout Timings) throws -> (Tensor, Grid, Restored) {
        var x = try loadImage(imagePath, timings: &timings)
        guard x.spatialShape.count == 3 else { throw MONAILabelError.invalid("\(name) needs a 3D image, got \(x.spatialShape)") }
        let restore = Restored(original: x)
        let loadedAffine = x.affine
        timings.record("pre", "EnsureChannelFirstd", 0)
        for t in pre { try timings.measure("pre", t.name) { try t.run(&x) } }
        let interactive = clicks.contains { !$0.points.isEmpty }
        var guidance = clicks
        if interactive {
            guidance = try timings.measure("pre", "OrientationGuidanceMultipleLabelDeepEditd") {
                try DeepEditGuidance.reorient(clicks, from: loadedAffine, to: x.affine)
            }
            timings.record("pre", "AddGuidanceFromPointsDeepEditd", 0)
        }
        let oriented = x.spatialShape
        x = try timings.measure("pre", "Resized") {
            var v = x
            if v.channels > signal.intensityChannels {
                throw MONAILabelError.invalid("\(name) expects \(signal.intensityChannels) image channel(s), the image has \(v.channels)")
            }
            v = try Resize(spatialSize: spatialSize, mode: .area)(v)
            return v
        }
        if interactive {
            guidance = timings.measure("pre", "ResizeGuidanceMultipleLabelDeepEditd") {
                DeepEditGuidance.resize(guidance, from: oriented, to: spatialSize)
            }
        }
        let withGuidance = try timings.measure("pre", interactive ? "AddGuidanceSignalDeepEditd" : "DiscardAddGuidanced") {
            try signal(x, guidance: interactive ? guidance : clicks.map { LabelGuidance(label: $0.label, points: []) })
        }
        let input = try timings.measure("pre", "EnsureTyped") { try Tensor(withGuidance.floats, shape: [1] + withGuidance.shape) }
        return (input, withGuidance.grid, restore)
    }
}
