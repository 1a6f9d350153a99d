import Foundation
import Imaging
import TorchKit

/// Upstream's radiology `Deepgrow` infer task (`deepgrow_2d`, `deepgrow_3d`; spec sections 4.1 and 5.2): the
/// user's `foreground` / `background` clicks (`[i, j, k]` voxel indices of the image as loaded; 2D models use
/// the clicks on `slice`) become two Gaussian guidance channels next to the image, cropped around the clicks and
/// resized to the model's input; the BasicUNet's sigmoid > 0.5 is restored onto the image grid
/// (`RestoreLabeld`): a 2D model fills only its slice.
///
/// Pre: `LoadImaged`, `Transposed` to depth first, `Spacingd` 1 mm in-plane (MONAI resamples the two in-plane
/// axes only, the depth axis standing where a channel would), `AddGuidanceFromPointsd`, [`Fetch2DSliced`],
/// `SpatialCropGuidanced`, `Resized` (area), `ResizeGuidanced`, `NormalizeIntensityd` (−208, ÷388),
/// `AddGuidanceSignald`. Post: sigmoid, threshold 0.5, `RestoreLabeld`, `AsChannelLastd`.
/// A 2D model resamples only its slice: MONAI resamples every slice on its own, so the numbers are the same.
///
/// Upstream ignores the `roi` Slicer may send with a click; so does this task.
public final class DeepGrowTask: ModelTask, @unchecked Sendable {
    public let name: String
    public let type = "deepgrow"
    public let labels: JSONValue
    public let dimension: Int
    public let description: String
    public var config: JSONObject { DeviceList.config(baseConfig) }

    /// `SpatialCropGuidanced`'s minimal crop (upstream's default `[256, 256]`, for 3D as well).
    let spatialSize: [Int]
    /// The network's input size (`Resized`): `[256, 256]` (2D), `[128, 192, 192]` (3D) upstream.
    let modelSize: [Int]
    public let loader: ModelLoader
    private let baseConfig: JSONObject

    /// Builds the task from its `app.json` definition: `{"type": "deepgrow", "dimension": 2|3, "labels": [...],
    /// "network": {...}, "spatial_size": [...], "model_size": [...], "files": {...}}`.
    public init(name: String, definition d: JSONObject, modelDir: URL) throws {
        self.name = name
        labels = d["labels"] ?? .array([])
        dimension = d["dimension"]?.intValue ?? 3
        guard dimension == 2 || dimension == 3 else {
            throw MONAILabelError.invalid("model \(name): DeepGrow dimension must be 2 or 3")
        }
        description = d["description"]?.stringValue ?? "A pre-trained DeepGrow model based on UNET"
        guard let network = d["network"]?.objectValue else {
            throw MONAILabelError.invalid("model \(name): app.json gives no network")
        }
        guard network["in_channels"]?.intValue == 3, network["out_channels"]?.intValue == 1,
            (network["spatial_dims"]?.intValue ?? 3) == dimension
        else {
            throw MONAILabelError.invalid("model \(name): a DeepGrow network takes 3 channels (image, positive and "
                + "negative guidance), gives 1, and has spatial_dims = dimension")
        }
        _ = try NetworkFactory.make(network)
        spatialSize = try Self.sizes(d["spatial_size"], default: [256, 256], what: "\(name): spatial_size")
        modelSize = try Self.sizes(d["model_size"], default: dimension == 2 ? [256, 256] : [128, 192, 192],
                                   what: "\(name): model_size")
        guard modelSize.count == dimension else {
            throw MONAILabelError.invalid("model \(name): model_size needs \(dimension) values")
        }
        baseConfig = d["config"]?.objectValue ?? JSONObject()
        loader = ModelLoader(model: name, networkSpec: network, files: d["files"], modelDir: modelDir)
    }

    public func infer(_ request: InferRequest) throws -> InferResult {
        let p = request.params
        var timings = Timings()
        let started = DispatchTime.now()
        let foreground = try Self.clicks(p["foreground"], key: "foreground")
        let background = try Self.clicks(p["background"], key: "background")
        var slice: Int?
        if dimension == 2, let s = p["slice"], s != .null {
            guard let i = s.intValue else { throw MONAILabelError.invalid("slice must be an integer") }
            slice = i
        }
        guard !(foreground.isEmpty && background.isEmpty) else {
            throw MONAILabelError.invalid("\(name) needs at least one click: 'foreground' and/or 'background' "
                + "as lists of [i, j, k] voxel indices")
        }

        let placement = try InferPlacement(params: p)
        let autocast = try InferPrecision.autocast(params: p, device: placement.device)
        let image = try loadImage(request.imagePath, timings: &timings)
        guard image.spatialShape.count == 3, image.channels == 1 else {
            throw MONAILabelError.invalid("\(name) needs a single-channel 3D image, got shape \(image.shape)")
        }
        let original = image.spatialShape
        let prepared: Prepared
        do {
            prepared = try prepare(image, foreground: foreground, background: background, slice: slice, timings: &timings)
        } catch let e as ImagingError {
            // A refused resampling or crop (the voxel limit, a singular affine) comes from the client's image.
            throw MONAILabelError.invalid("\(name): \(e.message)")
        }
        let input = prepared.input

        let logits = try timings.measure("stage", "infer") { () throws -> [Float] in
            let t = try Tensor(input, shape: [1, 3] + modelSize)
            let out = try placement.run { _ in
                try loader.withNetwork(on: placement.device) { try $0.forward(t.to(placement.device), autocast: autocast) }
            }
            guard out.shape == [1, 1] + modelSize else {
                throw MONAILabelError.io("model \(name): the network returned \(out.shape) for an input of \(modelSize)")
            }
            return try out.floats()
        }
        timings.record("stage", "invert", 0)
        timings.record("post", "EnsureTyped", 0)
        // sigmoid(x) >= 0.5 exactly where x >= 0: the threshold needs no exponentials.
        timings.record("post", "Activationsd", 0)
        let mask = timings.measure("post", "AsDiscreted") { logits.map { $0 >= 0 ? Float(1) : 0 } }
        timings.record("post", "ToNumpyd", 0)
        let restored = try timings.measure("post", "RestoreLabeld") {
            try DeepGrow.restoreLabel(mask, modelShape: modelSize, box: prepared.box,
                                      preCropShape: prepared.preCropShape, originalShape: original,
                                      slice: prepared.slice)
        }
        timings.record("post", "AsChannelLastd", 0)
        let pred = Volume(spatialShape: original, data: .uint8(restored), affine: image.affine, source: image.source)

        return try .written(pred, for: request, labels: labels, timings: &timings, started: started)
    }

    /// What the pre-transforms make of one click request, and what `RestoreLabeld` needs to undo them.
    struct Prepared {
        /// `[3, *modelSize]`: normalised image, positive and negative guidance signal.
        var input: [Float]
        /// The clicks on the depth-first, in-plane resampled array (`AddGuidanceFromPointsd`).
        var points: Guidance
        /// The clicks on the model's grid (`ResizeGuidanced`).
        var guidance: Guidance
        /// `[nk, ni', nj']`, or `[ni', nj']` for a 2D model's slice.
        var preCropShape: [Int]
        var box: SpatialBox
        /// The slice a 2D model works on.
        var slice: Int?
    }

    /// The pre-transforms from `Transposed` to `AddGuidanceSignald` on a loaded single-channel 3D image.
    func prepare(_ image: Volume, foreground: [[Int]], background: [[Int]], slice: Int?, timings: inout Timings) throws
        -> Prepared
    {
        let original = image.spatialShape
        // Depth stands where MONAI expects channels, so `Spacingd` resamples the in-plane axes only, each slice on
        // its own: a 2D model needs only its slice resampled, and the in-plane grid tells where the clicks land.
        let spacing = Spacing(pixdim: [1.0, 1.0], mode: .bilinear)
        let (ni, nj, nk) = (original[0], original[1], original[2])
        let inPlane = try spacing.targetGrid(
            of: Volume(spatialShape: [ni, nj], data: .uint8([UInt8](repeating: 0, count: ni * nj)), affine: image.affine))
        let current = [nk] + inPlane.spatialShape
        let (guidance, sliceIndex) = try timings.measure("pre", "AddGuidanceFromPointsd") {
            try DeepGrow.guidanceFromPoints(foreground: foreground, background: background, originalShape: original,
                                            currentShape: current, dimension: dimension, slice: slice)
        }
        var x: Volume
        if let s = sliceIndex {
            let voxels = image.floats
            let plane = timings.measure("pre", "Fetch2DSliced") {
                (0..<(ni * nj)).map { voxels[$0 * nk + s] }
            }
            x = try timings.measure("pre", "Spacingd") {
                try spacing(Volume(spatialShape: [ni, nj], data: .float32(plane), affine: image.affine))
            }
        } else {
            let transposed = timings.measure("pre", "Transposed") { DeepGrow.depthFirst(image.floats, shape: original) }
            let resampled = try timings.measure("pre", "Spacingd") {
                try spacing(Volume(spatialShape: [ni, nj], channels: nk, data: .float32(transposed), affine: image.affine))
            }
            x = Volume(spatialShape: current, data: resampled.data, affine: .identity)
        }
        guard x.spatialShape.suffix(2) == inPlane.spatialShape[...] else {
            throw MONAILabelError.io("\(name): in-plane spacing gave \(x.spatialShape), expected \(inPlane.spatialShape)")
        }
        x.affine = .identity
        timings.record("pre", "EnsureChannelFirstd", 0)
        let preCropShape = x.spatialShape
        let box = DeepGrow.guidanceCropBox(guidance, shape: preCropShape, spatialSize: spatialSize)
        x = try timings.measure("pre", "SpatialCropGuidanced") { try x.cropped(to: box) }
        x = try timings.measure("pre", "Resized") { try Resize(spatialSize: modelSize, mode: .area)(x) }
        let g = timings.measure("pre", "ResizeGuidanced") {
            DeepGrow.cropAndResizeGuidance(guidance, box: box, resizedShape: modelSize)
        }
        let normalized = timings.measure("pre", "NormalizeIntensityd") { x.floats.map { ($0 - 208) / 388 } }
        let input = timings.measure("pre", "AddGuidanceSignald") {
            normalized + DeepGrow.guidanceSignal(g, shape: modelSize)
        }
        timings.record("pre", "EnsureTyped", 0)
        return Prepared(input: input, points: guidance, guidance: g, preCropShape: preCropShape, box: box,
                        slice: sliceIndex)
    }

    /// A click list: `[[i, j, k], ...]` of integers (numbers are truncated as NumPy's `dtype=int` does); absent
    /// or null means none.
    static func clicks(_ v: JSONValue?, key: String) throws -> [[Int]] {
        guard let v, v != .null else { return [] }
        guard let list = v.arrayValue else { throw MONAILabelError.invalid("\(key) must be a list of [i, j, k] points") }
        return try list.map { e in
            // Bounded before the conversion to Int, which traps on huge values; the image bounds are checked later.
            guard let a = e.arrayValue, a.count == 3,
                a.allSatisfy({ $0.doubleValue.map { $0.isFinite && abs($0) < 1e15 } == true })
            else {
                throw MONAILabelError.invalid("\(key): each point must be [i, j, k] voxel indices, got \(e.compactString())")
            }
            return a.compactMap { $0.doubleValue.map { Int($0.rounded(.towardZero)) } }
        }
    }

    static func sizes(_ v: JSONValue?, default d: [Int], what: String) throws -> [Int] {
        guard let v else { return d }
        guard let a = v.arrayValue, !a.isEmpty, a.allSatisfy({ ($0.intValue ?? 0) > 0 }) else {
            throw MONAILabelError.invalid("\(what) must be a list of positive integers")
        }
        return a.compactMap(\.intValue)
    }
}
