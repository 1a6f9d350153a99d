import Foundation
import TorchKit

/// Builds a MONAI network from its class name and MONAI's constructor keyword arguments, as an app definition
/// (or a bundle's `network_def`) writes them: `{"name": "UNet", "spatial_dims": 3, "channels": [16, 32], ...}`.
public enum NetworkFactory {
    public static let supported = ["UNet", "BasicUNet", "SegResNet", "DynUNet", "UNETR", "SwinUNETR"]

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
        func bool(_ k: String, _ d: Bool) throws -> Bool {
            guard let v = spec[k] else { return d }
            guard let b = v.boolValue else { throw MONAILabelError.invalid("\(name): '\(k)' must be true or false") }
            return b
        }
        /// An int or a list of ints (MONAI's `Sequence[int] | int`).
        func intOrInts(_ k: String, _ d: [Int]) throws -> [Int] {
            if let v = spec[k]?.intValue { return [v] }
            return try ints(k, d)
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
            case "UNETR":
                // MONAI 1.3 renamed `pos_embed` to `proj_type`; only the convolutional projection is built here.
                let proj = spec["proj_type"]?.stringValue ?? spec["pos_embed"]?.stringValue ?? "conv"
                guard proj == "conv" else { throw MONAILabelError.invalid("UNETR: proj_type '\(proj)' is not supported (conv)") }
                return try UNETR(
                    spatialDims: dims, inChannels: try int("in_channels"), outChannels: try int("out_channels"),
                    imgSize: try intOrInts("img_size", []), featureSize: try int("feature_size", 16),
                    hiddenSize: try int("hidden_size", 768), mlpDim: try int("mlp_dim", 3072),
                    numHeads: try int("num_heads", 12), norm: try norm(.instance()),
                    convBlock: try bool("conv_block", true), resBlock: try bool("res_block", true),
                    dropoutRate: double("dropout_rate") ?? 0, qkvBias: try bool("qkv_bias", false))
            case "SwinUNETR":
                // `img_size` (MONAI < 1.5) and `use_checkpoint` (gradient checkpointing: memory only) do not change
                // the network; Swin v2 stages and the Hyena variant are not built here.
                if try bool("use_v2", false) { throw MONAILabelError.invalid("SwinUNETR: use_v2 is not supported") }
                return try SwinUNETR(
                    spatialDims: dims, inChannels: try int("in_channels"), outChannels: try int("out_channels"),
                    patchSize: try int("patch_size", 2), depths: try ints("depths", [2, 2, 2, 2]),
                    numHeads: try ints("num_heads", [3, 6, 12, 24]), windowSize: try intOrInts("window_size", [7]),
                    qkvBias: try bool("qkv_bias", true), mlpRatio: double("mlp_ratio") ?? 4,
                    featureSize: try int("feature_size", 24), norm: try norm(.instance()),
                    dropRate: double("drop_rate") ?? 0, attnDropRate: double("attn_drop_rate") ?? 0,
                    dropoutPathRate: double("dropout_path_rate") ?? 0, normalize: try bool("normalize", true),
                    patchNorm: try bool("patch_norm", false), downsample: spec["downsample"]?.stringValue ?? "merging")
            default:
                throw MONAILabelError.invalid("unsupported network '\(name)'; supported: \(supported.joined(separator: ", "))")
            }
        } catch let e as TorchError {
            throw MONAILabelError.invalid("\(name): \(e)")
        }
    }
}
