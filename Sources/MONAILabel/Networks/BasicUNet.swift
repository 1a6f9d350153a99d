import TorchKit

/// `monai.networks.nets.basic_unet.TwoConv`: two 3x3 Convolutions, "conv_0" and "conv_1".
final class TwoConv: Module, Layer {
    private let conv0: Convolution
    private let conv1: Convolution

    init(spatialDims: Int, inChannels: Int, outChannels: Int, act: ActType, norm: NormType, bias: Bool,
         dropout: Double) throws
    {
        conv0 = try Convolution(spatialDims: spatialDims, inChannels: inChannels, outChannels: outChannels,
                                act: act, norm: norm, dropout: dropout, bias: bias, padding: [1])
        conv1 = try Convolution(spatialDims: spatialDims, inChannels: outChannels, outChannels: outChannels,
                                act: act, norm: norm, dropout: dropout, bias: bias, padding: [1])
        super.init()
        try registerModule("conv_0", conv0)
        try registerModule("conv_1", conv1)
    }

    func forward(_ input: Tensor) throws -> Tensor { try conv1(conv0(input)) }
}

/// `monai.networks.nets.basic_unet.Down`: 2x max pooling, then `TwoConv` ("convs").
final class Down: Module, Layer {
    private let spatialDims: Int
    private let convs: TwoConv

    init(spatialDims: Int, inChannels: Int, outChannels: Int, act: ActType, norm: NormType, bias: Bool,
         dropout: Double) throws
    {
        self.spatialDims = spatialDims
        convs = try TwoConv(spatialDims: spatialDims, inChannels: inChannels, outChannels: outChannels, act: act,
                            norm: norm, bias: bias, dropout: dropout)
        super.init()
        try registerModule("convs", convs)
    }

    func forward(_ input: Tensor) throws -> Tensor {
        try convs(input.maxPool(kernel: Array(repeating: 2, count: spatialDims)))
    }
}

/// `monai.networks.nets.basic_unet.UpCat` with `upsample="deconv"`: a stride-2 transposed convolution
/// ("upsample.deconv"), replicate padding when the encoder feature is one voxel larger, concatenation, `TwoConv`.
final class UpCat: Module {
    private let upsample = Sequential()
    private let convs: TwoConv

    init(spatialDims: Int, inChannels: Int, catChannels: Int, outChannels: Int, act: ActType, norm: NormType,
         bias: Bool, dropout: Double, halves: Bool = true) throws
    {
        let upChannels = halves ? inChannels / 2 : inChannels
        convs = try TwoConv(spatialDims: spatialDims, inChannels: catChannels + upChannels, outChannels: outChannels,
                            act: act, norm: norm, bias: bias, dropout: dropout)
        super.init()
        try upsample.add("deconv", Conv(spatialDims: spatialDims, inChannels: inChannels, outChannels: upChannels,
                                        kernelSize: [2], stride: [2], bias: bias, transposed: true))
        try registerModule("upsample", upsample)
        try registerModule("convs", convs)
    }

    func forward(_ x: Tensor, skip: Tensor) throws -> Tensor {
        var up = try upsample(x)
        let dims = x.rank - 2
        let upShape = up.shape, skipShape = skip.shape
        var pad = Array(repeating: 0, count: dims * 2)
        for i in 0..<dims where skipShape[skipShape.count - i - 1] != upShape[upShape.count - i - 1] {
            pad[i * 2 + 1] = 1
        }
        if pad.contains(1) { up = try up.pad(pad, mode: .replicate) }
        return try convs(Tensor.cat([skip, up], dim: 1))
    }
}

/// `monai.networks.nets.BasicUNet` (MONAI 1.4) with its default deconvolution upsampling: same module tree and
/// state-dict names (`conv_0.conv_0.conv.weight`, `down_1.convs...`, `upcat_4.upsample.deconv...`, `final_conv`).
public final class BasicUNet: Module, Layer {
    private let conv0: TwoConv
    private let downs: [Down]
    private let upcats: [UpCat]
    private let finalConv: Conv

    /// `features` takes six values (encoder levels 0-4 and the last decoder level), as MONAI's.
    public init(spatialDims: Int = 3, inChannels: Int = 1, outChannels: Int = 2,
                features: [Int] = [32, 32, 64, 128, 256, 32], act: ActType = .leakyRelu(slope: 0.1),
                norm: NormType = .instance(affine: true), bias: Bool = true, dropout: Double = 0) throws
    {
        guard features.count == 6 else {
            throw TorchError(operation: "BasicUNet", message: "features needs 6 values, got \(features)")
        }
        let f = features
        conv0 = try TwoConv(spatialDims: spatialDims, inChannels: inChannels, outChannels: f[0], act: act, norm: norm,
                            bias: bias, dropout: dropout)
        downs = try (1...4).map {
            try Down(spatialDims: spatialDims, inChannels: f[$0 - 1], outChannels: f[$0], act: act, norm: norm,
                     bias: bias, dropout: dropout)
        }
        // upcat_4 ... upcat_1; the last keeps all channels and ends at features[5].
        upcats = try [4, 3, 2, 1].map { level in
            try UpCat(spatialDims: spatialDims, inChannels: f[level], catChannels: f[level - 1],
                      outChannels: level == 1 ? f[5] : f[level - 1], act: act, norm: norm, bias: bias,
                      dropout: dropout, halves: level != 1)
        }
        finalConv = try Conv(spatialDims: spatialDims, inChannels: f[5], outChannels: outChannels, kernelSize: [1])
        super.init()
        try registerModule("conv_0", conv0)
        for (i, d) in downs.enumerated() { try registerModule("down_\(i + 1)", d) }
        for (i, u) in upcats.enumerated() { try registerModule("upcat_\(4 - i)", u) }
        try registerModule("final_conv", finalConv)
    }

    public func forward(_ input: Tensor) throws -> Tensor {
        var encoded = [try conv0(input)]
        for d in downs { encoded.append(try d(encoded[encoded.count - 1])) }
        var x = encoded[4]
        for (i, u) in upcats.enumerated() { x = try u.forward(x, skip: encoded[3 - i]) }
        return try finalConv(x)
    }
}
