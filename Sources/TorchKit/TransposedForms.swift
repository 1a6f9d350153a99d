import Foundation

/// A stride-2 transposed convolution (kernel 3, padding 1, output padding 1: MONAI's UNet's up-sampling) computed
/// through ordinary convolutions, whose weights `Conv.rewritten(weight:bias:)` prepares once. Per axis, an even
/// output row `2m` takes kernel tap 1 at input row `m`, an odd one `2m + 1` tap 2 at row `m` and tap 0 at row
/// `m + 1`: each of the `2^dims` output phases (even or odd row on each axis) is an ordinary convolution with a
/// 1- or 2-wide kernel per axis. The same products and sums as the transposed convolution.
public struct TransposedRewrite: @unchecked Sendable {
    /// How the phases are computed.
    public enum Form: Sendable, Equatable {
        /// libtorch's transposed convolution.
        case native
        /// All phases as one convolution with a 2-wide kernel (zero where a phase has one tap) and `2^dims` times
        /// the output channels, interleaved by one reshape ("sub-pixel convolution"). For few output channels: on
        /// oneDNN they fill its channel blocks of 8 or 16, which a transposed convolution to 2 channels pads.
        case subpixel
        /// One convolution per phase with its own taps, each written into every other row of the output. For
        /// libtorch 1.13, which has no oneDNN transposed convolution (its own unfolds columns and scatters them
        /// back), where output channels are enough for oneDNN.
        case phases
    }

    public let form: Form
    /// `.subpixel`: one weight `[2^dims * out, in, 2, 2(, 2)]`, channel `o * 2^dims + phase`; `.phases`: one
    /// `[out, in, taps...]` per phase, phase bits first axis first.
    public let weights: [Tensor]
    /// `.subpixel`: the bias repeated per phase; `.phases`: the bias.
    public let bias: Tensor?
}

extension Conv {
    /// Whether this is a transposed convolution `rewritten(weight:bias:)` can rewrite: 2-d or 3-d, stride 2,
    /// kernel 3, padding 1, output padding 1, dilation 1, one group.
    public var hasPhaseForms: Bool {
        transposed && groups == 1 && (2...3).contains(spatialDims) && stride.allSatisfy { $0 == 2 }
            && padding.allSatisfy { $0 == 1 } && outputPadding.allSatisfy { $0 == 1 }
            && dilation.allSatisfy { $0 == 1 } && kernelSize.allSatisfy { $0 == 3 }
    }

    /// The form inference computes such a transposed convolution in; nil (the default) decides by the backend and
    /// the output channels (`preferredTransposedForm`). Task-local so that tests can take each on any backend.
    @TaskLocal public static var transposedForm: TransposedRewrite.Form? = nil

    /// `transposedForm`'s default for `outChannels` on `device`, as measured on MONAI's spleen UNet's up-sampling
    /// layers on the CPU with 2 threads (64 -> 16 channels at 40^3 in, 32 -> 2 at 74x74x66 in): below 8 output
    /// channels the sub-pixel form (32 -> 2: 27 against 45 ms with libtorch 1.13, about 40 ms less per window with
    /// 2.13); with 8 or more on libtorch 1.13 the phases (64 -> 16: 47 against 105 ms), and libtorch's own on 2.x,
    /// whose oneDNN transposed convolution is the fastest there (27 ms against 50 ms in phases). Other devices
    /// (CUDA: not measured) keep libtorch's own.
    public static func preferredTransposedForm(outChannels: Int, device: Device = .cpu) -> TransposedRewrite.Form {
        if let chosen = transposedForm { return chosen }
        guard device == .cpu else { return .native }
        if outChannels < 8 { return .subpixel }
        return Torch.version.major >= 2 ? .native : .phases
    }

    /// The per-axis kernel taps of each output phase: phase 0 takes tap 1, phase 1 taps 2 and 0 (at input rows
    /// `m` and `m + 1`).
    private static let phaseTaps: [[Int64]] = [[1], [2, 0]]

    /// This transposed convolution's weight `w` (`[in, out, 3, 3(, 3)]`) and bias `b` rewritten for `form`
    /// (default: `preferredTransposedForm` for its output channels and device); nil for `.native` or without
    /// `hasPhaseForms`. A snapshot: weights changed later need a new rewrite.
    public func rewritten(weight w: Tensor, bias b: Tensor?, form: TransposedRewrite.Form? = nil) throws
        -> TransposedRewrite?
    {
        guard hasPhaseForms, w.shape.count == spatialDims + 2 else { return nil }
        let n = spatialDims, inC = w.shape[0], outC = w.shape[1]
        let chosen = form ?? Conv.preferredTransposedForm(outChannels: outC, device: w.device)
        let channelsLast = Conv.foldsChannelsLast(w)
        switch chosen {
        case .native:
            return nil
        case .phases:
            let taps = try Conv.phaseTaps.map { try Tensor($0).to(w.device) }
            var weights: [Tensor] = []
            for phase in 0..<(1 << n) {
                var k = w
                for d in 0..<n { k = try k.indexSelect(dim: d + 2, index: taps[(phase >> (n - 1 - d)) & 1]) }
                weights.append(try k.permute([1, 0] + Array(2..<(n + 2))).contiguous(channelsLast: channelsLast))
            }
            return TransposedRewrite(form: .phases, weights: weights, bias: try b?.contiguous())
        case .subpixel:
            // A zero slot (index 3) after the three taps on every axis, then per axis the slots for (phase, shift)
            // = (0, 0), (0, 1), (1, 0), (1, 1).
            var padded = w
            for d in 0..<n {
                var zerosShape = padded.shape
                zerosShape[d + 2] = 1
                padded = try Tensor.cat([padded, Tensor.zeros(zerosShape, dtype: w.dtype, device: w.device)], dim: d + 2)
            }
            let slots = try Tensor([Int64(1), 3, 2, 0]).to(w.device)
            for d in 0..<n { padded = try padded.indexSelect(dim: d + 2, index: slots) }
            // [in, out, (phase, shift) per axis] -> [out, phases..., in, shifts...].
            let split = try padded.reshape([inC, outC] + Array(repeating: 2, count: 2 * n))
            let order = [1] + (0..<n).map { 2 + 2 * $0 } + [0] + (0..<n).map { 3 + 2 * $0 }
            let kernel = try split.permute(order).reshape([outC << n, inC] + Array(repeating: 2, count: n))
                .contiguous(channelsLast: channelsLast)
            let bias = try b.map { try $0.unsqueeze(dim: 1).expand([outC, 1 << n]).reshape([outC << n]).contiguous() }
            return TransposedRewrite(form: .subpixel, weights: [kernel], bias: bias)
        }
    }

    /// This transposed convolution of `input` through `rewrite` (`rewritten(weight:bias:)`'s), for inference
    /// (autograd off); with `leakyReluSlope` followed by that leaky ReLU, fused into the convolution where the
    /// backend can. The result is contiguous.
    public func run(_ input: Tensor, rewrite: TransposedRewrite, leakyReluSlope slope: Double? = nil) throws -> Tensor {
        try Conv.checkActivationIsForInference(slope, on: input.device)
        let n = spatialDims
        let shape = input.shape
        guard !Torch.isGradEnabled, hasPhaseForms, shape.count == n + 2 else {
            throw TorchError(operation: "Conv.run(rewrite:)", message: "a rewritten transposed convolution is for "
                + "inference on \(n + 2)-d input, with this convolution's geometry")
        }
        let sizes = Array(shape.dropFirst(2))
        let ones = Array(repeating: 1, count: n)
        func conv(_ k: Tensor, _ bias: Tensor?, padding: [Int]) throws -> Tensor {
            try Conv.convolve(input, weight: k, bias: bias, stride: ones, padding: padding, dilation: ones,
                              leakyReluSlope: slope)
        }
        switch rewrite.form {
        case .native:
            throw TorchError(operation: "Conv.run(rewrite:)", message: "nothing was rewritten")
        case .subpixel:
            guard rewrite.weights.count == 1, rewrite.weights[0].shape.count == n + 2,
                  rewrite.weights[0].shape[0] % (1 << n) == 0
            else { throw TorchError(operation: "Conv.run(rewrite:)", message: "not a sub-pixel weight") }
            // Padding 1 on both sides gives one extra leading row per axis: output row r reads rows r - 1 and r.
            var z = try conv(rewrite.weights[0], rewrite.bias, padding: ones)
            for d in 0..<n { z = try z.narrow(dim: d + 2, start: 1, length: sizes[d]) }
            let outC = rewrite.weights[0].shape[0] >> n
            // [N, out, phases..., sizes...] -> [N, out, (size, phase) per axis] -> [N, out, 2 * sizes...].
            let split = try z.reshape([shape[0], outC] + Array(repeating: 2, count: n) + sizes)
            let order = [0, 1] + (0..<n).flatMap { [2 + n + $0, 2 + $0] }
            return try split.permute(order).reshape([shape[0], outC] + sizes.map { 2 * $0 })
        case .phases:
            guard rewrite.weights.count == 1 << n, let outC = rewrite.weights.first?.shape.first else {
                throw TorchError(operation: "Conv.run(rewrite:)", message: "not one weight per phase")
            }
            let out = try Tensor.zeros([shape[0], outC] + sizes.map { 2 * $0 }, dtype: input.dtype,
                                       device: input.device)
            for (phase, k) in rewrite.weights.enumerated() {
                let bits = (0..<n).map { (phase >> (n - 1 - $0)) & 1 }
                // A two-tap axis pads 1 on both sides and drops its leading row (rows m and m + 1 as above).
                var y = try conv(k, rewrite.bias, padding: bits)
                var target = out
                for d in 0..<n {
                    y = try y.narrow(dim: d + 2, start: bits[d], length: sizes[d])
                    target = try target.slice(dim: d + 2, start: bits[d], end: 2 * sizes[d], step: 2)
                }
                try target.copy(from: y)
            }
            return out
        }
    }
}
