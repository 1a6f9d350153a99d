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
        let foldedWeight = try w.mul(scale.reshape(axes)).contiguous()
        var foldedBias = try (bias?.tensor ?? Tensor.zeros([outChannels], device: w.device)).sub(mean).mul(scale)
        if let beta = norm.bias?.tensor { foldedBias = try foldedBias.add(beta) }
        return (foldedWeight, try foldedBias.contiguous())
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
