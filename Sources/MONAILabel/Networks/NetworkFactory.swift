import Foundation
import TorchKit

/// Builds a MONAI network from its class name and MONAI's constructor keyword arguments, as an app definition
/// (or a bundle's `network_def`) writes them: `{"name": "UNet", "spatial_dims": 3, "channels": [16, 32], ...}`.
public enum NetworkFactory {
    public static let supported = ["UNet", "BasicUNet", "SegResNet", "DynUNet"]

    public static func make(_ spec: JSONObject) throws -> any Layer {
        guard let name = spec["name"]?.stringValue else {
            throw MONAILabelError.invalid("network definition lacks a name")
        }
        func int(_ k: String, _ d: Int? = nil) throws -> Int {
            if let v = spec[k]?.intValue { return v }
            if let d { return d }
            throw MONAILabelError.invalid("\(name): missing integer '\(k)'")
        }
        func ints(_ k: String, _ d: [Int]? = nil) throws -> [Int] {
            if let a = spec[k]?.arrayValue {
                let v = a.compactMap(\.intValue)
                guard v.count == a.count else { throw MONAILabelError.invalid("\(name): '\(k)' must be integers") }
                return v
            }
            if let d { return d }
            throw MONAILabelError.invalid("\(name): missing list '\(k)'")
        }
        /// DynUNet's per-level sizes: each entry an int (all axes) or a list.
        func nested(_ k: String) throws -> [[Int]] {
            guard let a = spec[k]?.arrayValue else { throw MONAILabelError.invalid("\(name): missing list '\(k)'") }
            return try a.map { e in
                if let i = e.intValue { return [i] }
                if let l = e.arrayValue, l.allSatisfy({ $0.intValue != nil }) { return l.compactMap(\.intValue) }
                throw MONAILabelError.invalid("\(name): '\(k)' entries must be integers or lists")
            }
        }
        func double(_ k: String) -> Double? { spec[k]?.doubleValue }
        func norm(_ d: NormType) throws -> NormType {
            guard let n = spec["norm"] ?? spec["norm_name"] else { return d }
            let text = (n.stringValue ?? n.arrayValue?.first?.stringValue ?? "").lowercased()
            switch text {
            case "batch": return .batch
            case "instance":
                let affine = n.arrayValue?.dropFirst().first?["affine"]?.boolValue ?? false
                return .instance(affine: affine)
            case "group":
                return .group(groups: n.arrayValue?.dropFirst().first?["num_groups"]?.intValue ?? 8)
            default: throw MONAILabelError.invalid("\(name): unsupported norm '\(text)'")
            }
        }
        let dims = try int("spatial_dims", 3)
        do {
            switch name {
            case "UNet":
                return try UNet(
                    spatialDims: dims, inChannels: try int("in_channels"), outChannels: try int("out_channels"),
                    channels: try ints("channels"), strides: try ints("strides"),
                    numResUnits: try int("num_res_units", 0), norm: try norm(.instance()),
                    dropout: double("dropout") ?? 0)
            case "BasicUNet":
                return try BasicUNet(
                    spatialDims: dims, inChannels: try int("in_channels", 1), outChannels: try int("out_channels", 2),
                    features: try ints("features", [32, 32, 64, 128, 256, 32]), dropout: double("dropout") ?? 0)
            case "SegResNet":
                return try SegResNet(
                    spatialDims: dims, initFilters: try int("init_filters", 8), inChannels: try int("in_channels", 1),
                    outChannels: try int("out_channels", 2), dropoutProb: double("dropout_prob"),
                    blocksDown: try ints("blocks_down", [1, 2, 2, 4]), blocksUp: try ints("blocks_up", [1, 1, 1]))
            case "DynUNet":
                return try DynUNet(
                    spatialDims: dims, inChannels: try int("in_channels"), outChannels: try int("out_channels"),
                    kernelSize: try nested("kernel_size"), strides: try nested("strides"),
                    upsampleKernelSize: try nested("upsample_kernel_size"),
                    filters: spec["filters"]?.arrayValue?.compactMap(\.intValue),
                    norm: try norm(.instance(affine: true)), resBlock: spec["res_block"]?.boolValue ?? false)
            default:
                throw MONAILabelError.invalid("unsupported network '\(name)'; supported: \(supported.joined(separator: ", "))")
            }
        } catch let e as TorchError {
            throw MONAILabelError.invalid("\(name): \(e)")
        }
    }
}
