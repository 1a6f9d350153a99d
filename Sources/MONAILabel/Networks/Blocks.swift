import TorchKit

/// MONAI's norm layer choices (`monai.networks.layers.Norm`), with the arguments the bundled networks use.
public enum NormType: Sendable, Equatable {
    /// `BatchNormNd(channels)`.
    case batch
    /// `InstanceNormNd(channels, affine:)`; MONAI's plain "instance" is `affine: false`.
    case instance(affine: Bool = false)
    /// `GroupNorm(groups, channels)`.
    case group(groups: Int)

    func make(channels: Int) throws -> any Layer {
        switch self {
        case .batch: return try BatchNorm(numFeatures: channels)
        case .instance(let affine): return try InstanceNorm(numFeatures: channels, affine: affine)
        case .group(let groups): return try GroupNorm(groups: groups, channels: channels)
        }
    }
}

/// MONAI's activation choices (`monai.networks.layers.Act`).
public enum ActType: Sendable, Equatable {
    case prelu
    case relu
    case leakyRelu(slope: Double)

    func make() throws -> any Layer {
        switch self {
        case .prelu: return try PReLU()
        case .relu: return ReLU()
        case .leakyRelu(let slope): return LeakyReLU(slope: slope)
        }
    }
}

/// `(k - 1) * d / 2` per dim: the padding that keeps the size at stride 1 (MONAI's `same_padding`).
func samePadding(_ kernel: [Int], dilation: [Int]) -> [Int] {
    zip(kernel, dilation).map { ($0 - 1) * $1 / 2 }
}

/// `monai.networks.blocks.ADN`: norm ("N"), dropout ("D") and activation ("A") in the given order, each only
/// when configured. `dropoutDim` is MONAI's `dropout_dim`: 1 is element-wise `nn.Dropout`, 2 and 3 drop whole
/// channels; nil takes the spatial dims, as ADN's own default does.
public final class ADN: Module, Layer {
    private var layers: [any Layer] = []
    private var normFirst = false

    public init(ordering: String = "NDA", channels: Int, spatialDims: Int, act: ActType?, norm: NormType?,
                dropout: Double?, dropoutDim: Int? = nil) throws
    {
        super.init()
        let channelwise = (dropoutDim ?? spatialDims) > 1
        for item in ordering.uppercased() {
            let layer: (any Layer)?
            switch item {
            case "N": layer = try norm?.make(channels: channels)
            case "D": layer = try dropout.map { try Dropout(p: $0, channelwise: channelwise) }
            case "A": layer = try act?.make()
            default: throw TorchError(operation: "ADN", message: "unknown ordering item '\(item)' in '\(ordering)'")
            }
            if let layer {
                try registerModule(String(item), layer)
                if layers.isEmpty { normFirst = item == "N" }
                layers.append(layer)
            }
        }
    }

    public func forward(_ input: Tensor) throws -> Tensor { try run(input, from: 0) }

    /// The BatchNorm that comes first, straight after the convolution, which inference can fold into it.
    var leadingBatchNorm: BatchNorm? { normFirst ? layers.first as? BatchNorm : nil }

    /// The layers after the leading norm (already folded into the convolution).
    func forwardAfterLeadingNorm(_ input: Tensor) throws -> Tensor { try run(input, from: 1) }

    /// The slope when all that follows the leading norm is one activation that is a leaky ReLU: MONAI's default
    /// PReLU has a single parameter `a`, and `prelu(x, a)` is `leaky_relu(x, a)` exactly, or a `LeakyReLU`. An
    /// evaluating dropout (the identity) may sit in between (`dropoutsIdle` says when it does). Read once, at
    /// fold time, like the folded weights.
    func leakySlopeAfterLeadingNorm() throws -> Double? {
        guard leadingBatchNorm != nil else { return nil }
        let rest = layers.dropFirst().filter { !($0 is Dropout) }
        guard rest.count == 1 else { return nil }
        if let p = rest[0] as? PReLU, p.weight.tensor.shape == [1] { return try p.weight.tensor.item() }
        if let l = rest[0] as? LeakyReLU { return l.slope }
        return nil
    }

    /// Whether this block acts on each voxel alone (so a box of its output needs only that box of its input):
    /// norms that evaluate with running statistics (BatchNorm in eval mode), evaluating dropouts, activations;
    /// not InstanceNorm or GroupNorm, whose statistics span the whole image, nor a dropout that samples.
    var actsPerVoxel: Bool {
        layers.allSatisfy { layer in
            switch layer {
            case let n as BatchNorm: return !n.isTraining && n.runningMean != nil
            case let d as Dropout: return !d.isTraining
            case is PReLU, is ReLU, is LeakyReLU: return true
            default: return false
            }
        }
    }

    /// Whether every dropout is evaluating (the identity).
    var dropoutsIdle: Bool { layers.allSatisfy { ($0 as? Dropout)?.isTraining != true } }

    private func run(_ input: Tensor, from start: Int) throws -> Tensor {
        var x = input
        for layer in layers[start...] {
            // An evaluating dropout is the identity; MC dropout turns single dropout layers back on.
            if let d = layer as? Dropout, !d.isTraining { continue }
            x = try layer(x)
        }
        return x
    }
}

/// `monai.networks.blocks.Convolution`: a convolution ("conv") followed by an `ADN` ("adn") unless `convOnly`.
public final class Convolution: Module, Layer {
    public let conv: Conv
    public let adn: ADN?
    /// The convolution with the ADN's leading BatchNorm folded in (`foldBatchNorm`), used while that norm
    /// evaluates.
    private var folded: (weight: Tensor, bias: Tensor)?
    /// The ADN's activation after the folded norm as a leaky ReLU slope (`ADN.leakySlopeAfterLeadingNorm`), which
    /// the folded convolution applies itself: fused into the oneDNN primitive on libtorch 2.x CPU float32, else in
    /// place on its output. Measured on MONAI's UNet at 160^3 (2.13 wheel, 2 threads): PReLU was 8% of a window.
    private var foldedSlope: Double?
    /// The folded transposed convolution rewritten into ordinary convolutions (`Conv.rewritten`), where the
    /// backend runs it faster that way (`Conv.preferredTransposedForm`).
    private var foldedRewrite: TransposedRewrite?

    /// Per-dim arguments take one value or one per spatial dim; `padding` nil is MONAI's "same" padding and
    /// `outputPadding` nil is `stride - 1` (transposed only).
    public init(spatialDims: Int, inChannels: Int, outChannels: Int, strides: [Int] = [1], kernelSize: [Int] = [3],
                adnOrdering: String = "NDA", act: ActType? = .prelu, norm: NormType? = .instance(),
                dropout: Double? = nil, dilation: [Int] = [1], groups: Int = 1, bias: Bool = true,
                convOnly: Bool = false, isTransposed: Bool = false, padding: [Int]? = nil,
                outputPadding: [Int]? = nil) throws
    {
        func perDim(_ v: [Int]) -> [Int] { v.count == 1 ? Array(repeating: v[0], count: spatialDims) : v }
        let kernel = perDim(kernelSize), stride = perDim(strides), dil = perDim(dilation)
        let pad = padding.map(perDim) ?? samePadding(kernel, dilation: dil)
        conv = try Conv(spatialDims: spatialDims, inChannels: inChannels, outChannels: outChannels,
                        kernelSize: kernel, stride: stride, padding: pad, dilation: dil, groups: groups, bias: bias,
                        transposed: isTransposed,
                        outputPadding: isTransposed ? (outputPadding.map(perDim) ?? stride.map { $0 - 1 }) : nil)
        if convOnly || (act == nil && norm == nil && dropout == nil) {
            adn = nil
        } else {
            // MONAI's Convolution passes `dropout_dim=1`: element-wise dropout whatever the spatial dims.
            adn = try ADN(ordering: adnOrdering, channels: outChannels, spatialDims: spatialDims, act: act,
                          norm: norm, dropout: dropout, dropoutDim: 1)
        }
        super.init()
        try registerModule("conv", conv)
        if let adn { try registerModule("adn", adn) }
    }

    public func forward(_ input: Tensor) throws -> Tensor {
        if let adn, let norm = adn.leadingBatchNorm, let f = folded {
            if !norm.isTraining {
                if let slope = foldedSlope, adn.dropoutsIdle, !Torch.isGradEnabled, !Autocast.isEnabled(on: input.device) {
                    if let r = foldedRewrite { return try conv.run(input, rewrite: r, leakyReluSlope: slope) }
                    return try conv.forward(input, weight: f.weight, bias: f.bias, leakyReluSlope: slope)
                }
                return try adn.forwardAfterLeadingNorm(conv.forward(input, weight: f.weight, bias: f.bias))
            }
            // Training changes the weights and statistics the fold was taken from.
            folded = nil
            foldedRewrite = nil
        }
        let y = try conv(input)
        return try adn?(y) ?? y
    }

    /// For inference: folds a BatchNorm that directly follows the convolution into it (`Conv.folding`); a
    /// snapshot of the loaded weights, dropped as soon as the block runs in training mode. True when folded.
    @discardableResult
    public func foldBatchNorm() throws -> Bool {
        guard let norm = adn?.leadingBatchNorm, !norm.isTraining else { return false }
        folded = try conv.folding(norm)
        foldedSlope = folded == nil ? nil : try adn?.leakySlopeAfterLeadingNorm()
        foldedRewrite = nil
        if let f = folded, foldedSlope != nil { foldedRewrite = try conv.rewritten(weight: f.weight, bias: f.bias) }
        return folded != nil
    }
}

/// `monai.networks.blocks.ResidualUnit`: `subunits` Convolutions ("conv.unitN") plus a residual path
/// ("residual": identity, or a convolution when the stride or channel count changes).
public final class ResidualUnit: Module, Layer {
    let units = Sequential()
    let residual: (any Layer)?

    public init(spatialDims: Int, inChannels: Int, outChannels: Int, strides: [Int] = [1], kernelSize: [Int] = [3],
                subunits: Int = 2, adnOrdering: String = "NDA", act: ActType? = .prelu,
                norm: NormType? = .instance(), dropout: Double? = nil, dilation: [Int] = [1], bias: Bool = true,
                lastConvOnly: Bool = false, padding: [Int]? = nil) throws
    {
        func perDim(_ v: [Int]) -> [Int] { v.count == 1 ? Array(repeating: v[0], count: spatialDims) : v }
        let kernel = perDim(kernelSize), dil = perDim(dilation), stride = perDim(strides)
        let pad = padding.map(perDim) ?? samePadding(kernel, dilation: dil)
        let count = max(1, subunits)
        var channels = inChannels
        var unitStride = stride
        for su in 0..<count {
            try units.add("unit\(su)", Convolution(
                spatialDims: spatialDims, inChannels: channels, outChannels: outChannels, strides: unitStride,
                kernelSize: kernel, adnOrdering: adnOrdering, act: act, norm: norm, dropout: dropout,
                dilation: dil, bias: bias, convOnly: lastConvOnly && su == count - 1, padding: pad))
            channels = outChannels
            unitStride = Array(repeating: 1, count: spatialDims)
        }
        if stride.reduce(1, *) != 1 || inChannels != outChannels {
            // Only the channel count changes: a 1x1 kernel without padding suffices.
            let onlyChannels = stride.reduce(1, *) == 1
            residual = try Conv(spatialDims: spatialDims, inChannels: inChannels, outChannels: outChannels,
                                kernelSize: onlyChannels ? [1] : kernel, stride: stride,
                                padding: onlyChannels ? [0] : pad, bias: bias)
        } else {
            residual = nil
        }
        super.init()
        try registerModule("conv", units)
        if let residual { try registerModule("residual", residual) }
    }

    public func forward(_ input: Tensor) throws -> Tensor {
        try sum(units(input), residual?(input) ?? input)
    }

    /// The units' output `y` plus the residual path's `res`.
    func sum(_ y: Tensor, _ res: Tensor) throws -> Tensor {
        // Without autograd the units' fresh output can take the sum in place (one activation-sized allocation and
        // pass fewer); only when the dtypes agree, as under autocast `+` would promote.
        if !Torch.isGradEnabled, y.dtype == res.dtype, y.shape == res.shape {
            try y.addInPlace(res)
            return y
        }
        return try y + res
    }
}

/// `monai.networks.layers.SkipConnection` in "cat" mode: `cat([x, submodule(x)], dim: 1)`.
public final class SkipConnection: Module, Layer {
    let submodule: any Layer

    public init(_ submodule: any Layer) throws {
        self.submodule = submodule
        super.init()
        try registerModule("submodule", submodule)
    }

    public func forward(_ input: Tensor) throws -> Tensor {
        try Tensor.cat([input, submodule(input)], dim: 1)
    }
}
