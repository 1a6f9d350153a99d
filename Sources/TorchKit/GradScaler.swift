/// `torch.cuda.amp.GradScaler`'s dynamic loss scaling, for float16 training: the loss is multiplied by `scale`
/// before the backward pass so small gradients do not flush to zero in half precision; the gradients are divided
/// back before the optimizer step, which is skipped when any of them is inf or NaN (the scale was too large);
/// the scale then halves, and doubles after `growthInterval` steps in a row without such gradients.
///
/// The gradient work is tensor ops on the gradients' own device; the scale and the step count live on the host
/// (one device-to-host read per step decides whether to step). Use one scaler per optimizer, on one thread.
public final class GradScaler {
    /// The current loss scale.
    public private(set) var scale: Double
    public let growthFactor: Double
    public let backoffFactor: Double
    public let growthInterval: Int
    /// Steps in a row with finite gradients since the scale last changed.
    public private(set) var growthTracker = 0

    /// PyTorch's defaults: 2^16, doubled after 2000 good steps, halved on a bad one.
    public init(initScale: Double = 65536, growthFactor: Double = 2, backoffFactor: Double = 0.5,
                growthInterval: Int = 2000)
    {
        precondition(initScale > 0 && initScale.isFinite && growthFactor > 1 && backoffFactor > 0 && backoffFactor < 1
            && growthInterval > 0, "GradScaler: invalid constants")
        scale = initScale
        self.growthFactor = growthFactor
        self.backoffFactor = backoffFactor
        self.growthInterval = growthInterval
    }

    /// `loss * scale`, the tensor to call `backward()` on.
    public func scaled(_ loss: Tensor) throws -> Tensor { try loss.mul(scale) }

    /// Divides the gradients of `parameters` by the scale, in place, and returns whether any of them holds an inf
    /// or a NaN. In data-parallel training call it after the gradients are averaged, so every rank unscales the
    /// same values.
    public func unscale(_ parameters: [Tensor]) throws -> Bool {
        let inverse = 1 / scale
        return try Torch.withNoGrad {
            let grads = try parameters.compactMap { try $0.grad() }
            guard !grads.isEmpty else { return false }
            var peaks: [Tensor] = []
            peaks.reserveCapacity(grads.count)
            for g in grads {
                try g.copy(from: g.mul(inverse))
                // abs().max() is NaN when any element is NaN and inf when any is infinite.
                peaks.append(try g.abs().max().to(.float32))
            }
            let peak = try Tensor.stack(peaks, dim: 0).max().item()
            return !(peak < Double.infinity)
        }
    }

    /// Steps `optimizer` unless `foundNonFinite` (what `unscale` returned, agreed across ranks), then updates the
    /// scale; returns whether the optimizer stepped.
    @discardableResult
    public func step(_ optimizer: Optimizer, foundNonFinite: Bool) throws -> Bool {
        if !foundNonFinite { try optimizer.step() }
        update(foundNonFinite: foundNonFinite)
        return !foundNonFinite
    }

    /// `torch._amp_update_scale_`: back off and restart the count after non-finite gradients; otherwise count the
    /// step and grow the scale when the count reaches the interval (unless growing would overflow).
    public func update(foundNonFinite: Bool) {
        if foundNonFinite {
            scale *= backoffFactor
            growthTracker = 0
            return
        }
        growthTracker += 1
        if growthTracker >= growthInterval {
            let grown = scale * growthFactor
            if grown.isFinite { scale = grown }
            growthTracker = 0
        }
    }
}
