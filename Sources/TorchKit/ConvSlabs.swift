import Foundation

extension Conv {
    /// Output voxels (per sample) above which a convolution run without autograd is computed in slabs along the
    /// last spatial axis. libtorch's CPU convolutions take workspace in proportion to the whole output: oneDNN
    /// reorders input and output into channel blocks of 8 or 16 (a 2-channel 160^3 activation becomes eight times
    /// its size: 250 MB more for MONAI's UNet's last convolution), and the native transposed convolution unfolds
    /// `out_channels x kernel` columns per input voxel. Slabs of at most this many output voxels bound that
    /// workspace to a slab's; each output voxel still sums the same products. The last axis, because libtorch
    /// (1.13 and 2.x) only picks oneDNN when `N * C * D * H` (2-d: `N * C * H * W`) exceeds 20480: a slab of the
    /// first axis falls back to the native convolution, whose column buffer is larger still.
    /// Task-local so that a test can run whole networks in small slabs (`$slabVoxels.withValue`).
    @TaskLocal public static var slabVoxels = 1 << 20

    /// Whether a CPU convolution above `slabVoxels` runs in one call on a channels-last copy of its input instead
    /// of in slabs; nil (the default) decides by the backend: libtorch 2.x, whose oneDNN convolution takes NDHWC/NHWC
    /// as it is (no channel-blocked copies), so the whole output costs little more than itself. Measured on the
    /// full-size UNet's 160^3 layers with the 2.13 wheel, 2 threads: the 2->2 convolution 0.86 s and 70 MB above
    /// its input against 2.34 s and 112 MB in slabs (contiguous in one call: 1.56 s, 289 MB), the 32->2 transposed
    /// one 0.71 s against 1.52 s in slabs, 104 against 125 MB. libtorch 1.13 reorders channels-last 5-d tensors
    /// (the same 2->2 convolution: 348 MB above its input, the transposed one 1.6 s against 0.95 s in slabs), so
    /// it keeps the slabs, and so do CUDA tensors (not measured there). Task-local so that tests can take either
    /// path on any backend.
    @TaskLocal public static var largeOutputsChannelsLast: Bool? = nil

    /// `largeOutputsChannelsLast` as it applies to the loaded backend.
    static var runsLargeOutputsChannelsLast: Bool { largeOutputsChannelsLast ?? (Torch.version.major >= 2) }

    /// Whether `run(_:weight:bias:leakyReluSlope:)` computes the convolution and its activation as one oneDNN
    /// primitive (`Tensor.convLeakyRelu`) where it may: float32 CPU tensors, autograd and autocast off, a backend
    /// that has the op (libtorch 2.x). nil (the default) fuses wherever it may; false always takes the convolution
    /// followed by an in-place leaky ReLU. Task-local so that tests can compare the two on any backend.
    @TaskLocal public static var fusesActivation: Bool? = nil

    /// Whether `run(_:weight:bias:leakyReluSlope:)` computes a convolution with few channels
    /// (`Tensor.smallConvChannels` in and out; stride 1, dilation 1, one group, 2-d or 3-d) with the backend's own
    /// loops (`Tensor.convSmall`) where it may: float32 CPU tensors, autograd and autocast off. nil (the default)
    /// does wherever it may; false always takes libtorch's convolution. Task-local so that tests can compare the
    /// two on any backend.
    @TaskLocal public static var computesSmallDirectly: Bool? = nil

    /// Whether `run` takes `Tensor.convSmall` for `x` and these weights.
    private func runsSmall(_ x: Tensor, _ w: Tensor, _ b: Tensor?) -> Bool {
        guard Conv.computesSmallDirectly ?? true, !transposed, groups == 1, (2...3).contains(spatialDims),
              stride.allSatisfy({ $0 == 1 }), dilation.allSatisfy({ $0 == 1 }), x.device == .cpu,
              x.dtype == .float32, w.dtype == .float32, b.map({ $0.dtype == .float32 }) ?? true,
              !Torch.isGradEnabled, !Autocast.isEnabled(on: .cpu)
        else { return false }
        let shape = w.shape
        return shape.count == spatialDims + 2 && shape[0] <= Tensor.smallConvChannels
            && shape[1] <= Tensor.smallConvChannels
    }

    /// Refuses a leaky ReLU slope (one applied by the convolution) with autograd or autocast on: it is applied in
    /// place or inside oneDNN's primitive, for inference only.
    static func checkActivationIsForInference(_ slope: Double?, on device: Device) throws {
        if slope != nil, Torch.isGradEnabled || Autocast.isEnabled(on: device) {
            throw TorchError(operation: "Conv", message: "a fused activation is for inference without autocast")
        }
    }

    /// One libtorch convolution of `x` with that geometry, followed by a leaky ReLU of `slope` when there is one:
    /// fused into oneDNN's primitive where `fusesActivation` allows and the backend has it (float32 CPU tensors),
    /// else applied in place on the fresh output.
    static func convolve(_ x: Tensor, weight w: Tensor, bias b: Tensor?, stride: [Int], padding: [Int],
                         dilation: [Int], groups: Int = 1, transposed: Bool = false, outputPadding: [Int]? = nil,
                         leakyReluSlope slope: Double?) throws -> Tensor
    {
        if let slope, Conv.fusesActivation ?? true, x.device == .cpu, x.dtype == .float32, w.dtype == .float32,
           b.map({ $0.dtype == .float32 }) ?? true, Tensor.hasFusedConvLeakyRelu(transposed: transposed)
        {
            return try x.convLeakyRelu(weight: w, bias: b, stride: stride, padding: padding, dilation: dilation,
                                       groups: groups, transposed: transposed, outputPadding: outputPadding,
                                       slope: slope)
        }
        let y = try x.conv(weight: w, bias: b, stride: stride, padding: padding, dilation: dilation, groups: groups,
                           transposed: transposed, outputPadding: outputPadding)
        if let slope { try y.leakyReluInPlace(slope: slope) }
        return y
    }

    /// Runs this convolution's geometry with `w` and `b`, in slabs of at most `limit` output voxels when autograd
    /// is off and the output is larger (or in one call on a channels-last input: `largeOutputsChannelsLast`), else
    /// in one call. With `leakyReluSlope` (inference only: autograd and autocast off) the result is
    /// `leakyRelu(slope:)` of the convolution, fused into it where `fusesActivation` allows, else applied in place
    /// on the fresh output: either way no second activation-sized tensor and no separate pass where fused.
    func run(_ input: Tensor, weight w: Tensor, bias b: Tensor?, limit: Int = Conv.slabVoxels,
             leakyReluSlope slope: Double? = nil) throws -> Tensor
    {
        try Conv.checkActivationIsForInference(slope, on: input.device)
        func whole(_ x: Tensor) throws -> Tensor {
            try Conv.convolve(x, weight: w, bias: b, stride: stride, padding: padding, dilation: dilation,
                              groups: groups, transposed: transposed, outputPadding: transposed ? outputPadding : nil,
                              leakyReluSlope: slope)
        }
        if runsSmall(input, w, b) {
            // No workspace beyond the output: no slabs needed either.
            let y = try input.convSmall(weight: w, bias: b, padding: padding)
            if let slope { try y.leakyReluInPlace(slope: slope) }
            return y
        }
        let shape = input.shape
        guard !Torch.isGradEnabled, shape.count == spatialDims + 2, w.shape.count == spatialDims + 2,
              let plan = slabs(inputShape: shape, kernel: Array(w.shape[2...]), limit: limit)
        else { return try whole(input) }
        if (2...3).contains(spatialDims), input.device == .cpu, Conv.runsLargeOutputsChannelsLast {
            return try whole(input.contiguous(channelsLast: true))
        }
        let axis = spatialDims - 1, dim = spatialDims + 1
        var slabPadding = padding
        slabPadding[axis] = 0
        var parts: [Tensor] = []
        parts.reserveCapacity(plan.count)
        for slab in plan {
            var x = try input.narrow(dim: dim, start: slab.inputStart, length: slab.inputLength)
            if slab.padFront > 0 || slab.padBack > 0 {
                // F.pad order: last axis first.
                x = try x.pad([slab.padFront, slab.padBack] + Array(repeating: 0, count: 2 * axis))
            }
            var slabOutputPadding = outputPadding
            slabOutputPadding[axis] = slab.outputPadding
            var y = try x.conv(weight: w, bias: b, stride: stride, padding: slabPadding, dilation: dilation,
                               groups: groups, transposed: transposed, outputPadding: transposed ? slabOutputPadding : nil)
            if transposed { y = try y.narrow(dim: dim, start: slab.outputOffset, length: slab.outputLength) }
            parts.append(y)
        }
        let y = try Tensor.cat(parts, dim: dim)
        if let slope { try y.leakyReluInPlace(slope: slope) }
        return y
    }

    /// One slab: the output rows `[start, start + outputLength)` along the last spatial axis come from the input
    /// rows `[inputStart, inputStart + inputLength)`, zero-padded by `padFront`/`padBack` (convolution), or, for a
    /// transposed convolution, are `outputLength` rows at `outputOffset` of that input's unpadded result with
    /// `outputPadding` extra rows.
    struct Slab: Equatable {
        var inputStart: Int, inputLength: Int
        var padFront = 0, padBack = 0
        var outputOffset = 0, outputPadding = 0
        var outputLength: Int
    }

    /// The slabs for an input of `inputShape` and a kernel of `kernel` (spatial sizes), or nil when one call is
    /// enough (the output is at most `slabVoxels` per sample) or the geometry has output rows no input row reaches
    /// (padding beyond the dilated kernel; a transposed stride above the dilated kernel), which one call handles.
    func slabs(inputShape: [Int], kernel: [Int], limit: Int = Conv.slabVoxels) -> [Slab]? {
        let n = spatialDims
        guard inputShape.count == n + 2, let out = outputSize(inputSize: Array(inputShape[2...]), kernel: kernel)
        else { return nil }
        let axis = n - 1
        var perRow = 1
        for size in out.dropLast() {
            let (p, o) = perRow.multipliedReportingOverflow(by: size)
            guard !o else { return nil }
            perRow = p
        }
        let rows = out[axis], inRows = inputShape[axis + 2]
        let (total, o) = perRow.multipliedReportingOverflow(by: rows)
        guard o || total > limit, rows > 1 else { return nil }
        let s = stride[axis], p = padding[axis], reach = dilation[axis] * (kernel[axis] - 1)
        if transposed ? s - 1 > reach : p > reach { return nil }
        let step = max(1, limit / max(perRow, 1))
        var plan: [Slab] = []
        var z0 = 0
        while z0 < rows {
            let z1 = min(rows, z0 + step)
            if transposed {
                // Output row z (uncropped z + p) sums input rows i with i * s + j * dilation = z + p, j < kernel.
                func ceilDiv(_ a: Int, _ b: Int) -> Int { a >= 0 ? (a + b - 1) / b : -((-a) / b) }
                let first = max(0, ceilDiv(z0 + p - reach, s))
                let last = min(inRows - 1, (z1 - 1 + p) / s)
                guard first <= last else { return nil }
                let extra = max(0, z1 - 1 + p - last * s - reach)
                guard extra < max(s, dilation[axis]) else { return nil }
                plan.append(Slab(inputStart: first, inputLength: last - first + 1, outputOffset: z0 + p - first * s,
                                 outputPadding: extra, outputLength: z1 - z0))
            } else {
                let lo = z0 * s - p, hi = (z1 - 1) * s - p + reach
                let a = max(lo, 0), b = min(hi, inRows - 1)
                guard a <= b else { return nil }
                plan.append(Slab(inputStart: a, inputLength: b - a + 1, padFront: a - lo, padBack: hi - b,
                                 outputLength: z1 - z0))
            }
            z0 = z1
        }
        return plan
    }
}
