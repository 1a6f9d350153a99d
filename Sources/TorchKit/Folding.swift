import Foundation

extension Conv {
    /// The weight and bias of this convolution with an evaluation-mode `BatchNorm` that follows it folded in:
    /// `norm(conv(x))` with running statistics is `conv'(x)` with `w' = w * s` and `b' = (b - mean) * s + beta`
    /// per output channel, where `s = gamma / sqrt(var + eps)`. Inference then skips a pass over (and an
    /// allocation of) every such activation. Nil when the norm has no running statistics (it normalises with
    /// batch statistics, which cannot be folded) or its channels do not match; a grouped transposed
    /// convolution (whose output channels are not one weight axis) is not folded either.
    ///
    /// The result is a snapshot of the current weights: weights loaded or trained later need a new fold.
    public func folding(_ norm: BatchNorm) throws -> (weight: Tensor, bias: Tensor)? {
        guard let mean = norm.runningMean?.tensor, let variance = norm.runningVar?.tensor else { return nil }
        let w = weight.tensor
        let outChannels = transposed ? w.shape[1] * groups : w.shape[0]
        guard !transposed || groups == 1, mean.shape == [outChannels], variance.shape == [outChannels] else { return nil }
        var scale = try variance.add(norm.eps).rsqrt()
        if let gamma = norm.weight?.tensor { scale = try scale.mul(gamma) }
        var axes = Array(repeating: 1, count: w.shape.count)
        axes[transposed ? 1 : 0] = outChannels
        let foldedWeight = try w.mul(scale.reshape(axes)).contiguous(channelsLast: Conv.foldsChannelsLast(w))
        var foldedBias = try (bias?.tensor ?? Tensor.zeros([outChannels], device: w.device)).sub(mean).mul(scale)
        if let beta = norm.bias?.tensor { foldedBias = try foldedBias.add(beta) }
        return (foldedWeight, try foldedBias.contiguous())
    }

    /// Whether `folding` lays a folded 4-d/5-d CPU weight out channels-last: on libtorch 2.x, whose oneDNN
    /// convolution then runs in NHWC/NDHWC whatever the input's layout (it takes either operand's) and hands
    /// channels-last on to the next layer. Without it a network fed a one-channel input (the sliding window's
    /// image: as contiguous as it is channels-last, which libtorch reads as contiguous) ran every layer NCDHW,
    /// oneDNN reordering into channel blocks and back (for transposed convolutions a dense copy of each output).
    /// Measured on MONAI's UNet at 160^3 with the fused activation (2.13 wheel, 2 threads): 0.37-0.42 s per window
    /// against 0.50-0.54 s. libtorch 1.13 reorders channels-last 5-d tensors (slower), and CUDA is not measured,
    /// so both keep contiguous weights.
    static func foldsChannelsLast(_ weight: Tensor) -> Bool {
        weight.device == .cpu && (4...5).contains(weight.shape.count) && Torch.version.major >= 2
    }

    /// This convolution with another weight and bias (e.g. `folding`'s), same geometry; with `leakyReluSlope`
    /// (inference only: autograd and autocast off) followed by a leaky ReLU of that slope, fused into the
    /// convolution where the backend can (`Conv.fusesActivation`).
    public func forward(_ input: Tensor, weight w: Tensor, bias b: Tensor?, leakyReluSlope: Double? = nil) throws
        -> Tensor
    {
        try run(input, weight: w, bias: b, leakyReluSlope: leakyReluSlope)
    }
}
