import Foundation
import TorchKit

/// Mixed precision for inference (not in upstream 0.8.5, whose inference runs in float32): the request's `amp`
/// (on by default on CUDA, off on the CPU) and `amp_dtype` (`float16` or `bfloat16`; CUDA's default is float16,
/// the CPU has bfloat16 only). The network's outputs come back to float32 before anything accumulates them.
enum InferPrecision {
    /// The dtypes `amp_dtype` names.
    static let dtypes: [String: DType] = ["float16": .float16, "bfloat16": .bfloat16]

    /// The autocast `params` ask for on `device`, nil for float32. A malformed or unavailable choice is a 422
    /// naming `amp` or `amp_dtype`.
    static func autocast(params p: JSONObject, device: Device = .best) throws -> Autocast? {
        let named = try p.stringParam("amp_dtype")
        var dtype: DType?
        if let named {
            guard let d = dtypes[named] else {
                throw MONAILabelError.invalid("amp_dtype must be float16 or bfloat16, got '\(named.prefix(40))'")
            }
            dtype = d
        }
        guard try p.boolParam("amp") ?? (device != .cpu) else { return nil }
        let chosen = dtype ?? (device == .cpu ? .bfloat16 : .float16)
        guard Autocast.isSupported(on: device, dtype: chosen) else {
            let why = device == .cpu && chosen == .float16
                ? "the CPU runs mixed precision in bfloat16 only (amp_dtype bfloat16)"
                : "this server's libtorch backend \(Torch.versionString) has no \(chosen) autocast on \(device)"
            throw MONAILabelError.invalid("amp_dtype \(chosen) is not available: \(why)")
        }
        return Autocast(device: device, dtype: chosen)
    }
}

extension LoadedNetwork {
    /// `forward` under `autocast` when there is one, its output back in float32.
    func forward(_ x: Tensor, autocast: Autocast?) throws -> Tensor {
        try under(autocast) { try forward(x) }
    }

    /// `forward(_:outputRegion:)` under `autocast` when there is one, its output back in float32.
    func forward(_ x: Tensor, outputRegion region: [Range<Int>], autocast: Autocast?) throws -> Tensor {
        try under(autocast) { try forward(x, outputRegion: region) }
    }

    /// `body` under `autocast` when there is one, its output back in float32.
    private func under(_ autocast: Autocast?, _ body: () throws -> Tensor) throws -> Tensor {
        guard let autocast else { return try body() }
        return try autocast.run(body).to(.float32)
    }
}
