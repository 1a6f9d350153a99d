import CTorch

/// A libtorch optimizer holding its per-parameter state (moments, momentum buffers). It updates the
/// parameter tensors in place, so every handle to them (a module's slots) sees the step.
public class Optimizer: @unchecked Sendable {
    let handle: mlt_optimizer

    init(handle: mlt_optimizer) { self.handle = handle }

    deinit { mlt_optimizer_free(handle) }

    /// Applies one update from the parameters' accumulated gradients.
    public func step() throws { try checked("Optimizer.step") { mlt_optimizer_step(handle, $0) } }

    /// Zeroes the parameters' gradients.
    public func zeroGrad() throws { try checked("Optimizer.zeroGrad") { mlt_optimizer_zero_grad(handle, $0) } }

    /// The learning rate of the (first) parameter group.
    public var learningRate: Double { mlt_optimizer_get_lr(handle) }

    /// Sets the learning rate of every parameter group (for schedulers).
    public func setLearningRate(_ lr: Double) throws {
        try checked("Optimizer.setLearningRate") { mlt_optimizer_set_lr(handle, lr, $0) }
    }

    static func make(_ name: String, _ parameters: [Tensor],
                     _ create: (UnsafePointer<mlt_tensor?>?, Int, UnsafeMutablePointer<mlt_optimizer?>, ErrorSlot)
                         -> mlt_status) throws -> mlt_optimizer
    {
        var out: mlt_optimizer?
        try withHandles(parameters) { h, n in try checked(name) { create(h, n, &out, $0) } }
        guard let out else { throw TorchError(operation: name, message: "libtorch returned no optimizer") }
        return out
    }
}

/// `torch.optim.Adam`.
public final class Adam: Optimizer, @unchecked Sendable {
    public init(parameters: [Tensor], lr: Double = 1e-3, betas: (Double, Double) = (0.9, 0.999), eps: Double = 1e-8,
                weightDecay: Double = 0, amsgrad: Bool = false) throws
    {
        super.init(handle: try Optimizer.make("Adam", parameters) {
            mlt_adam_new($0, $1, lr, betas.0, betas.1, eps, weightDecay, amsgrad ? 1 : 0, $2, $3)
        })
    }
}

/// `torch.optim.AdamW` (decoupled weight decay).
public final class AdamW: Optimizer, @unchecked Sendable {
    public init(parameters: [Tensor], lr: Double = 1e-3, betas: (Double, Double) = (0.9, 0.999), eps: Double = 1e-8,
                weightDecay: Double = 1e-2, amsgrad: Bool = false) throws
    {
        super.init(handle: try Optimizer.make("AdamW", parameters) {
            mlt_adamw_new($0, $1, lr, betas.0, betas.1, eps, weightDecay, amsgrad ? 1 : 0, $2, $3)
        })
    }
}

/// `torch.optim.SGD`.
public final class SGD: Optimizer, @unchecked Sendable {
    public init(parameters: [Tensor], lr: Double, momentum: Double = 0, dampening: Double = 0,
                weightDecay: Double = 0, nesterov: Bool = false) throws
    {
        super.init(handle: try Optimizer.make("SGD", parameters) {
            mlt_sgd_new($0, $1, lr, momentum, dampening, weightDecay, nesterov ? 1 : 0, $2, $3)
        })
    }
}
