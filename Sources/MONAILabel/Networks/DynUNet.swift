import TorchKit

/// `dynunet_block.get_padding`: `(k - s + 1) / 2` per dim.
private func dynPadding(_ kernel: [Int], _ stride: [Int]) throws -> [Int] {
    let p = zip(kernel, stride).map { $0 - $1 + 1 }
    guard p.allSatisfy({ $0 >= 0 }) else {
        throw TorchError(operation: "DynUNet", message: "padding value should not be negative (kernel \(kernel), stride \(stride))")
    }
    return p.map { $0 / 2 }
}

/// `dynunet_block.get_conv_layer` as the blocks use it: a `Convolution` without norm and activation (an ADN with
/// only dropout when `dropout` is set). Shared with the UNETR family's blocks.
func dynConv(_ spatialDims: Int, _ inC: Int, _ outC: Int, kernel: [Int], stride: [Int], dropout: Double?,
                     bias: Bool = false, transposed: Bool = false) throws -> Convolution
{
    let padding = try dynPadding(kernel, stride)
    let outputPadding = transposed ? zip(zip(padding, stride), kernel).map { 2 * $0.0 + $0.1 - $1 } : nil
    if let outputPadding, outputPadding.contains(where: { $0 < 0 }) {
        throw TorchError(operation: "DynUNet", message: "out_padding value should not be negative")
    }
    return try Convolution(spatialDims: spatialDims, inChannels: inC, outChannels: outC, strides: stride,
                           kernelSize: kernel, act: nil, norm: nil, dropout: dropout, bias: bias,
                           isTransposed: transposed, padding: padding, outputPadding: outputPadding)
}

/// `UnetBasicBlock` (conv, norm, act twice) or, with `residual`, `UnetResBlock` (adds a 1x1 "conv3"/"norm3"
/// projection when channels or stride change).
final class DynUNetBlock: Module, Layer {
    private let conv1: Convolution
    private let conv2: Convolution
    private let lrelu: any Layer
    private let norm1: any Layer
    private let norm2: any Layer
    private let residual: Bool
    private let conv3: Convolution?
    private let norm3: (any Layer)?

    init(spatialDims: Int, inChannels: Int, outChannels: Int, kernel: [Int], stride: [Int], norm: NormType,
         act: ActType, dropout: Double?, residual: Bool) throws
    {
        let ones = Array(repeating: 1, count: spatialDims)
        conv1 = try dynConv(spatialDims, inChannels, outChannels, kernel: kernel, stride: stride, dropout: dropout)
        conv2 = try dynConv(spatialDims, outChannels, outChannels, kernel: kernel, stride: ones, dropout: dropout)
        lrelu = try act.make()
        norm1 = try norm.make(channels: outChannels)
        norm2 = try norm.make(channels: outChannels)
        self.residual = residual
        if residual && (inChannels != outChannels || stride.contains { $0 != 1 }) {
            conv3 = try dynConv(spatialDims, inChannels, outChannels, kernel: ones, stride: stride, dropout: dropout)
            norm3 = try norm.make(channels: outChannels)
        } else {
            conv3 = nil
            norm3 = nil
        }
        super.init()
        try registerModule("conv1", conv1)
        try registerModule("conv2", conv2)
        try registerModule("lrelu", lrelu)
        try registerModule("norm1", norm1)
        try registerModule("norm2", norm2)
        if let conv3, let norm3 {
            try registerModule("conv3", conv3)
            try registerModule("norm3", norm3)
        }
    }

    func forward(_ input: Tensor) throws -> Tensor {
        let out = try norm2(conv2(lrelu(norm1(conv1(input)))))
        guard residual else { return try lrelu(out) }
        var shortcut = input
        if let conv3, let norm3 { shortcut = try norm3(conv3(input)) }
        return try lrelu(out + shortcut)
    }
}

/// `UnetUpBlock`: transposed conv ("transp_conv"), concatenation with the skip, `UnetBasicBlock` ("conv_block");
/// with `residual`, UNETR's `UnetrUpBlock` (a `UnetResBlock` after the concatenation).
final class DynUNetUpBlock: Module {
    private let transpConv: Convolution
    private let convBlock: DynUNetBlock

    init(spatialDims: Int, inChannels: Int, outChannels: Int, kernel: [Int], upKernel: [Int], norm: NormType,
         act: ActType, dropout: Double?, transBias: Bool, residual: Bool = false) throws
    {
        transpConv = try dynConv(spatialDims, inChannels, outChannels, kernel: upKernel, stride: upKernel,
                                 dropout: dropout, bias: transBias, transposed: true)
        convBlock = try DynUNetBlock(spatialDims: spatialDims, inChannels: 2 * outChannels, outChannels: outChannels,
                                     kernel: kernel, stride: Array(repeating: 1, count: spatialDims), norm: norm,
                                     act: act, dropout: dropout, residual: residual)
        super.init()
        try registerModule("transp_conv", transpConv)
        try registerModule("conv_block", convBlock)
    }

    func forward(_ input: Tensor, skip: Tensor) throws -> Tensor {
        try convBlock(Tensor.cat([transpConv(input), skip], dim: 1))
    }
}

/// `DynUNetSkipLayer`: downsample, the next (deeper) layer, then upsample with the downsampled skip.
final class DynUNetSkipLayer: Module, Layer {
    private let downsample: any Layer
    private let nextLayer: any Layer
    private let upsample: DynUNetUpBlock

    init(downsample: any Layer, upsample: DynUNetUpBlock, nextLayer: any Layer) throws {
        self.downsample = downsample
        self.nextLayer = nextLayer
        self.upsample = upsample
        super.init()
        try registerModule("downsample", downsample)
        try registerModule("next_layer", nextLayer)
        try registerModule("upsample", upsample)
    }

    func forward(_ input: Tensor) throws -> Tensor {
        let down = try downsample(input)
        return try upsample.forward(nextLayer(down), skip: down)
    }
}

/// `monai.networks.nets.DynUNet` (MONAI 1.4) without deep supervision. The module tree matches MONAI's, including
/// the blocks registered twice (`input_block`/`downsamples`/`bottleneck`/`upsamples` and again under
/// `skip_layers`), so the state dict lists those tensors under both names as PyTorch's does.
public final class DynUNet: Module, Layer {
    public let filters: [Int]
    private let skipLayers: any Layer
    private let outputBlock: Convolution

    /// `kernelSize`, `strides` and `upsampleKernelSize` entries take one value or one per spatial dim, as MONAI's
    /// ints or sequences. `filters` nil gives MONAI's default `min(2^(5+i), 320 (3-D) or 512)`.
    public init(spatialDims: Int, inChannels: Int, outChannels: Int, kernelSize: [[Int]], strides: [[Int]],
                upsampleKernelSize: [[Int]], filters: [Int]? = nil, dropout: Double? = nil,
                norm: NormType = .instance(affine: true), act: ActType = .leakyRelu(slope: 0.01),
                resBlock: Bool = false, transBias: Bool = false) throws
    {
        func perDim(_ v: [Int]) -> [Int] { v.count == 1 ? Array(repeating: v[0], count: spatialDims) : v }
        let kernels = kernelSize.map(perDim), strideOf = strides.map(perDim), upKernels = upsampleKernelSize.map(perDim)
        guard kernels.count == strideOf.count, kernels.count >= 3, upKernels.count == strideOf.count - 1 else {
            throw TorchError(operation: "DynUNet", message:
                "kernel_size and strides need the same length (at least 3), upsample_kernel_size one less")
        }
        let f = filters ?? (0..<strideOf.count).map { Swift.min(1 << (5 + $0), spatialDims == 3 ? 320 : 512) }
        guard f.count >= strideOf.count else {
            throw TorchError(operation: "DynUNet", message: "length of filters should be no less than the length of strides")
        }
        self.filters = f
        let n = strideOf.count
        func block(_ i: Int, _ inC: Int, _ outC: Int) throws -> DynUNetBlock {
            try DynUNetBlock(spatialDims: spatialDims, inChannels: inC, outChannels: outC, kernel: kernels[i],
                             stride: strideOf[i], norm: norm, act: act, dropout: dropout, residual: resBlock)
        }
        let inputBlock = try block(0, inChannels, f[0])
        let downsamples = try (1..<(n - 1)).map { try block($0, f[$0 - 1], f[$0]) }
        let bottleneck = try block(n - 1, f[n - 2], f[n - 1])
        // upsamples run from the deepest level up: in f[n-1] -> f[n-2], ..., f[1] -> f[0].
        let upsamples = try (0..<(n - 1)).map { j in
            let level = n - 1 - j
            return try DynUNetUpBlock(spatialDims: spatialDims, inChannels: f[level], outChannels: f[level - 1],
                                      kernel: kernels[level], upKernel: upKernels[level - 1], norm: norm, act: act,
                                      dropout: dropout, transBias: transBias)
        }
        outputBlock = try dynConv(spatialDims, f[0], outChannels, kernel: Array(repeating: 1, count: spatialDims),
                                  stride: Array(repeating: 1, count: spatialDims), dropout: dropout, bias: true)
        let downs: [any Layer] = [inputBlock] + downsamples
        var skip: any Layer = bottleneck
        for level in stride(from: n - 2, through: 0, by: -1) {
            skip = try DynUNetSkipLayer(downsample: downs[level], upsample: upsamples[n - 2 - level], nextLayer: skip)
        }
        skipLayers = skip
        super.init()
        try registerModule("input_block", inputBlock)
        let downList = Module(), upList = Module()
        for (i, d) in downsamples.enumerated() { try downList.registerModule(String(i), d) }
        for (i, u) in upsamples.enumerated() { try upList.registerModule(String(i), u) }
        try registerModule("downsamples", downList)
        try registerModule("bottleneck", bottleneck)
        try registerModule("upsamples", upList)
        let out = Module()
        try out.registerModule("conv", outputBlock)
        try registerModule("output_block", out)
        try registerModule("skip_layers", skipLayers)
    }

    public func forward(_ input: Tensor) throws -> Tensor { try outputBlock(skipLayers(input)) }
}
