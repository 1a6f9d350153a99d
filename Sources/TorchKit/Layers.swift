import Foundation

private func expand(_ values: [Int]?, _ n: Int, default value: Int, _ what: String, _ op: String) throws -> [Int] {
    guard let values else { return Array(repeating: value, count: n) }
    if values.count == 1 { return Array(repeating: values[0], count: n) }
    guard values.count == n else {
        throw TorchError(operation: op, message: "\(what) \(values) needs 1 or \(n) values")
    }
    return values
}

/// Uniform in (-bound, bound), PyTorch's default init for conv and linear layers
/// (kaiming_uniform with a = sqrt(5), which reduces to bound = 1 / sqrt(fan_in)).
private func uniformInit(_ shape: [Int], fanIn: Int) throws -> Tensor {
    let t = try Tensor.zeros(shape)
    let bound = fanIn > 0 ? 1 / Double(fanIn).squareRoot() : 0
    try t.uniformInPlace(low: -bound, high: bound)
    return t
}

/// `torch.nn.ConvNd` / `ConvTransposeNd` for 1-3 spatial dims: parameters `weight` and (optionally) `bias`.
public final class Conv: Module, Layer {
    public let spatialDims: Int
    public let stride: [Int]
    public let padding: [Int]
    public let dilation: [Int]
    public let outputPadding: [Int]
    public let groups: Int
    public let transposed: Bool
    public let weight: Parameter
    public let bias: Parameter?

    /// Per-dim arguments take one value (used for every dim) or `spatialDims` values.
    public init(spatialDims: Int, inChannels: Int, outChannels: Int, kernelSize: [Int], stride: [Int]? = nil,
                padding: [Int]? = nil, dilation: [Int]? = nil, groups: Int = 1, bias: Bool = true,
                transposed: Bool = false, outputPadding: [Int]? = nil) throws
    {
        let op = transposed ? "ConvTranspose" : "Conv"
        guard (1...3).contains(spatialDims) else {
            throw TorchError(operation: op, message: "spatialDims must be 1, 2 or 3, got \(spatialDims)")
        }
        guard groups > 0, inChannels % groups == 0, outChannels % groups == 0 else {
            throw TorchError(operation: op, message: "channels \(inChannels)->\(outChannels) not divisible by groups \(groups)")
        }
        let kernel = try expand(kernelSize, spatialDims, default: 1, "kernel size", op)
        self.spatialDims = spatialDims
        self.stride = try expand(stride, spatialDims, default: 1, "stride", op)
        self.padding = try expand(padding, spatialDims, default: 0, "padding", op)
        self.dilation = try expand(dilation, spatialDims, default: 1, "dilation", op)
        self.outputPadding = try expand(outputPadding, spatialDims, default: 0, "output padding", op)
        self.groups = groups
        self.transposed = transposed
        let shape = transposed ? [inChannels, outChannels / groups] + kernel : [outChannels, inChannels / groups] + kernel
        let fanIn = shape[1] * kernel.reduce(1, *)
        let w = try uniformInit(shape, fanIn: fanIn)
        let b = bias ? try uniformInit([outChannels], fanIn: fanIn) : nil
        weight = Parameter(w)
        self.bias = b.map { Parameter($0) }
        super.init()
        try adopt("weight", weight)
        if let bias = self.bias { try adopt("bias", bias) }
    }

    public convenience init(spatialDims: Int, inChannels: Int, outChannels: Int, kernelSize: Int, stride: Int = 1,
                            padding: Int = 0, dilation: Int = 1, groups: Int = 1, bias: Bool = true,
                            transposed: Bool = false, outputPadding: Int = 0) throws
    {
        try self.init(spatialDims: spatialDims, inChannels: inChannels, outChannels: outChannels,
                      kernelSize: [kernelSize], stride: [stride], padding: [padding], dilation: [dilation],
                      groups: groups, bias: bias, transposed: transposed, outputPadding: [outputPadding])
    }

    public func forward(_ input: Tensor) throws -> Tensor {
        try run(input, weight: weight.tensor, bias: bias?.tensor)
    }
}

/// `torch.nn.BatchNormNd`: `weight`, `bias` (affine), buffers `running_mean`, `running_var`,
/// `num_batches_tracked` (tracking). Training normalizes with batch statistics and updates the running ones;
/// evaluation uses the running statistics.
public final class BatchNorm: Module, Layer {
    public let eps: Double
    /// nil: cumulative moving average, as PyTorch's `momentum=None`.
    public let momentum: Double?
    public let weight: Parameter?
    public let bias: Parameter?
    public let runningMean: Parameter?
    public let runningVar: Parameter?
    public let numBatchesTracked: Parameter?

    public init(numFeatures: Int, eps: Double = 1e-5, momentum: Double? = 0.1, affine: Bool = true,
                trackRunningStats: Bool = true) throws
    {
        self.eps = eps
        self.momentum = momentum
        weight = affine ? Parameter(try Tensor.ones([numFeatures])) : nil
        bias = affine ? Parameter(try Tensor.zeros([numFeatures])) : nil
        runningMean = trackRunningStats ? Parameter(try Tensor.zeros([numFeatures])) : nil
        runningVar = trackRunningStats ? Parameter(try Tensor.ones([numFeatures])) : nil
        numBatchesTracked = trackRunningStats ? Parameter(try Tensor.zeros([], dtype: .int64)) : nil
        super.init()
        if let weight, let bias {
            try adopt("weight", weight)
            try adopt("bias", bias)
        }
        if let runningMean, let runningVar, let numBatchesTracked {
            try adoptBuffer("running_mean", runningMean)
            try adoptBuffer("running_var", runningVar)
            try adoptBuffer("num_batches_tracked", numBatchesTracked)
        }
    }

    public func forward(_ input: Tensor) throws -> Tensor {
        var factor = momentum ?? 0
        if isTraining, let counter = numBatchesTracked {
            try Torch.withNoGrad { try counter.tensor.addInPlace(1) }
            if momentum == nil { factor = 1 / (try counter.tensor.item()) }
        }
        return try input.batchNorm(weight: weight?.tensor, bias: bias?.tensor, runningMean: runningMean?.tensor,
                                   runningVar: runningVar?.tensor, training: isTraining || runningMean == nil,
                                   momentum: factor, eps: eps)
    }
}

/// `torch.nn.InstanceNormNd`: optional affine `weight`/`bias` and optional running statistics
/// (PyTorch's defaults: neither).
public final class InstanceNorm: Module, Layer {
    public let eps: Double
    public let momentum: Double
    public let weight: Parameter?
    public let bias: Parameter?
    public let runningMean: Parameter?
    public let runningVar: Parameter?

    public init(numFeatures: Int, eps: Double = 1e-5, momentum: Double = 0.1, affine: Bool = false,
                trackRunningStats: Bool = false) throws
    {
        self.eps = eps
        self.momentum = momentum
        weight = affine ? Parameter(try Tensor.ones([numFeatures])) : nil
        bias = affine ? Parameter(try Tensor.zeros([numFeatures])) : nil
        runningMean = trackRunningStats ? Parameter(try Tensor.zeros([numFeatures])) : nil
        runningVar = trackRunningStats ? Parameter(try Tensor.ones([numFeatures])) : nil
        super.init()
        if let weight, let bias {
            try adopt("weight", weight)
            try adopt("bias", bias)
        }
        if let runningMean, let runningVar {
            try adoptBuffer("running_mean", runningMean)
            try adoptBuffer("running_var", runningVar)
            try adoptBuffer("num_batches_tracked", Parameter(try Tensor.zeros([], dtype: .int64)))
        }
    }

    public func forward(_ input: Tensor) throws -> Tensor {
        try input.instanceNorm(weight: weight?.tensor, bias: bias?.tensor, runningMean: runningMean?.tensor,
                               runningVar: runningVar?.tensor, useInputStats: isTraining || runningMean == nil,
                               momentum: momentum, eps: eps)
    }
}

/// `torch.nn.GroupNorm`: affine `weight`/`bias` per channel.
public final class GroupNorm: Module, Layer {
    public let groups: Int
    public let eps: Double
    public let weight: Parameter?
    public let bias: Parameter?

    public init(groups: Int, channels: Int, eps: Double = 1e-5, affine: Bool = true) throws {
        guard groups > 0, channels % groups == 0 else {
            throw TorchError(operation: "GroupNorm", message: "\(channels) channels are not divisible into \(groups) groups")
        }
        self.groups = groups
        self.eps = eps
        weight = affine ? Parameter(try Tensor.ones([channels])) : nil
        bias = affine ? Parameter(try Tensor.zeros([channels])) : nil
        super.init()
        if let weight, let bias {
            try adopt("weight", weight)
            try adopt("bias", bias)
        }
    }

    public func forward(_ input: Tensor) throws -> Tensor {
        try input.groupNorm(groups: groups, weight: weight?.tensor, bias: bias?.tensor, eps: eps)
    }
}

/// `torch.nn.LayerNorm` over the trailing `normalizedShape` dims.
public final class LayerNorm: Module, Layer {
    public let normalizedShape: [Int]
    public let eps: Double
    public let weight: Parameter?
    public let bias: Parameter?

    public init(normalizedShape: [Int], eps: Double = 1e-5, elementwiseAffine: Bool = true) throws {
        self.normalizedShape = normalizedShape
        self.eps = eps
        weight = elementwiseAffine ? Parameter(try Tensor.ones(normalizedShape)) : nil
        bias = elementwiseAffine ? Parameter(try Tensor.zeros(normalizedShape)) : nil
        super.init()
        if let weight, let bias {
            try adopt("weight", weight)
            try adopt("bias", bias)
        }
    }

    public func forward(_ input: Tensor) throws -> Tensor {
        try input.layerNorm(normalizedShape: normalizedShape, weight: weight?.tensor, bias: bias?.tensor, eps: eps)
    }
}

/// `torch.nn.PReLU`: a learnable negative slope, shared (`numParameters` 1) or per channel.
public final class PReLU: Module, Layer {
    public let weight: Parameter

    public init(numParameters: Int = 1, initial: Double = 0.25) throws {
        weight = Parameter(try Tensor.full([numParameters], value: initial))
        super.init()
        try adopt("weight", weight)
    }

    public func forward(_ input: Tensor) throws -> Tensor { try input.prelu(weight: weight.tensor) }
}

public final class ReLU: Module, Layer {
    override public init() { super.init() }
    public func forward(_ input: Tensor) throws -> Tensor { try input.relu() }
}

public final class LeakyReLU: Module, Layer {
    public let slope: Double
    public init(slope: Double = 0.01) {
        self.slope = slope
        super.init()
    }
    public func forward(_ input: Tensor) throws -> Tensor { try input.leakyRelu(slope: slope) }
}

/// `torch.nn.GELU()` (exact form).
public final class GELU: Module, Layer {
    override public init() { super.init() }
    public func forward(_ input: Tensor) throws -> Tensor { try input.gelu() }
}

public final class Identity: Module, Layer {
    override public init() { super.init() }
    public func forward(_ input: Tensor) throws -> Tensor { input }
}

/// `torch.nn.Dropout`, or `Dropout2d`/`Dropout3d` (whole channels) when `channelwise`. Active in training only.
public final class Dropout: Module, Layer {
    public let p: Double
    public let channelwise: Bool

    public init(p: Double = 0.5, channelwise: Bool = false) throws {
        guard (0...1).contains(p) else {
            throw TorchError(operation: "Dropout", message: "probability must be in [0, 1], got \(p)")
        }
        self.p = p
        self.channelwise = channelwise
        super.init()
    }

    public func forward(_ input: Tensor) throws -> Tensor {
        try input.dropout(p: p, training: isTraining, channelwise: channelwise)
    }
}

/// `torch.nn.Linear`: `weight` [out, in] and optional `bias`.
public final class Linear: Module, Layer {
    public let weight: Parameter
    public let bias: Parameter?

    public init(inFeatures: Int, outFeatures: Int, bias: Bool = true) throws {
        weight = Parameter(try uniformInit([outFeatures, inFeatures], fanIn: inFeatures))
        self.bias = bias ? Parameter(try uniformInit([outFeatures], fanIn: inFeatures)) : nil
        super.init()
        try adopt("weight", weight)
        if let b = self.bias { try adopt("bias", b) }
    }

    public func forward(_ input: Tensor) throws -> Tensor { try input.linear(weight: weight.tensor, bias: bias?.tensor) }
}

/// `torch.nn.Sequential`: children run in order, named "0", "1", ... unless named explicitly (MONAI's ADN
/// block names them "N", "D", "A").
public final class Sequential: Module, Layer {
    public private(set) var layers: [any Layer] = []

    override public init() { super.init() }

    public init(_ layers: [any Layer]) throws {
        super.init()
        for layer in layers { try append(layer) }
    }

    /// Adds `layer` under the next index as its name.
    public func append(_ layer: any Layer) throws { try add(String(layers.count), layer) }

    /// Adds `layer` under `name`.
    public func add(_ name: String, _ layer: any Layer) throws {
        try registerModule(name, layer)
        layers.append(layer)
    }

    public func forward(_ input: Tensor) throws -> Tensor {
        var x = input
        for layer in layers { x = try layer.forward(x) }
        return x
    }
}
