import Foundation
import Imaging

/// One pre-transform of a model definition, named as MONAI names it (`Orientationd`, `Spacingd`, ...), so the
/// latency breakdown a client sees reads like upstream's.
public struct PreTransform: Sendable {
    public let name: String
    /// Transforms the volume in place; intensity transforms then reuse its Float buffer instead of copying it.
    public let run: @Sendable (inout Volume) throws -> Void

    /// The transformed volume, leaving `v` as it was.
    public func apply(_ v: Volume) throws -> Volume {
        var out = v
        try run(&out)
        return out
    }

    /// Parses `{"name": "Spacing", "pixdim": [1, 1, 1], "mode": "bilinear"}` and friends (MONAI's argument
    /// names; the `d` suffix of dictionary transforms is optional).
    public init(_ spec: JSONObject) throws {
        guard var n = spec["name"]?.stringValue else { throw MONAILabelError.invalid("a transform lacks its name") }
        if n.hasSuffix("d") && n != "Spacing" { n.removeLast() }
        func double(_ k: String, _ d: Double) throws -> Double {
            guard let v = spec[k] else { return d }
            guard let x = v.doubleValue else { throw MONAILabelError.invalid("\(n): '\(k)' must be a number") }
            return x
        }
        func doubles(_ k: String) throws -> [Double]? {
            guard let v = spec[k] else { return nil }
            if let x = v.doubleValue { return [x] }
            guard let a = v.arrayValue, a.allSatisfy({ $0.doubleValue != nil }) else {
                throw MONAILabelError.invalid("\(n): '\(k)' must be a number or a list of numbers")
            }
            return a.compactMap(\.doubleValue)
        }
        let body: @Sendable (inout Volume) throws -> Void
        switch n {
        case "Orientation":
            let ax = spec["axcodes"]?.stringValue ?? "RAS"
            let t = Orientation(axcodes: ax)
            name = "Orientationd"
            body = { $0 = try t($0) }
        case "Spacing":
            guard let pixdim = try doubles("pixdim") else { throw MONAILabelError.invalid("Spacing needs pixdim") }
            let mode = InterpolationMode(rawValue: spec["mode"]?.stringValue ?? "bilinear") ?? .bilinear
            let t = Spacing(pixdim: pixdim, mode: mode)
            name = "Spacingd"
            body = { $0 = try t($0) }
        case "ScaleIntensityRange":
            let t = ScaleIntensityRange(
                aMin: try double("a_min", 0), aMax: try double("a_max", 1), bMin: try double("b_min", 0),
                bMax: try double("b_max", 1), clip: spec["clip"]?.boolValue ?? false)
            name = "ScaleIntensityRanged"
            body = { t.apply(&$0) }
        case "ScaleIntensity":
            let t = ScaleIntensity(minv: try double("minv", 0), maxv: try double("maxv", 1))
            name = "ScaleIntensityd"
            body = { t.apply(&$0) }
        case "NormalizeIntensity":
            let t = NormalizeIntensity(
                subtrahend: try doubles("subtrahend"), divisor: try doubles("divisor"),
                nonzero: spec["nonzero"]?.boolValue ?? false, channelWise: spec["channel_wise"]?.boolValue ?? false)
            name = "NormalizeIntensityd"
            body = { $0 = try t($0) }
        case "GaussianSmooth":
            let t = GaussianSmooth(sigma: try doubles("sigma") ?? [1])
            name = "GaussianSmoothd"
            body = { $0 = t($0) }
        default:
            throw MONAILabelError.invalid("unsupported pre-transform '\(n)'")
        }
        // What a transform refuses (an output over MONAI_LABEL_MAX_VOXELS, a singular affine) comes from the
        // image: not a server failure, and the fault of whoever supplied the image (`.unusableImage`).
        let shown = name
        run = { v in
            do { try body(&v) } catch let e as ImagingError { throw MONAILabelError(.unusableImage, "\(shown): \(e.message)") }
        }
    }
}
