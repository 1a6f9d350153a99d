import TorchKit

/// `torch.nn.Upsample` by a scale factor (no parameters).
final class Upsample: Module, Layer {
    private let scale: [Double]
    private let mode: InterpolationMode
    private let alignCorners: Bool?

    init(spatialDims: Int, scale: Double, mode: InterpolationMode, alignCorners: Bool?) {
        self.scale = Array(repeating: scale, count: spatialDims)
        self.mode = mode
        self.alignCorners = alignCorners
        super.init()
    }

    func forward(_ input: Tensor) throws -> Tensor {
        try input.interpolate(scale: scale, mode: mode, alignCorners: alignCorners)
    }
}

/// MONAI's linear interpolation for `spatialDims` (linear, bilinear, trilinear).
func linearMode(_ spatialDims: Int) -> InterpolationMode {
    switch spatialDims {
    case 1: return .linear
    case 2: return .bilinear
    default: return .trilinear
    }
}

/// `monai.networks.blocks.segresnet_block.ResBlock`: norm, act, conv, norm, act, conv, plus the input.
final class SegResBlock: Module, Layer {
    private let norm1: any Layer
    private let norm2: any Layer
    private let act: any Layer
    private let conv1: Convolution
    private let conv2: Convolution

    init(spatialDims: Int, channels: Int, norm: NormType, act: ActType) throws {
        norm1 = try norm.make(channels: channels)
        norm2 = try norm.make(channels: channels)
        self.act = try act.make()
        conv1 = try segResConv(spatialDims, channels, channels)
        conv2 = try segResConv(spatialDims, channels, channels)
        super.init()
        try registerModule("norm1", norm1)
        try registerModule("norm2", norm2)
        try registerModule("act", self.act)
        try registerModule("conv1", conv1)
        try registerModule("conv2", conv2)
    }

    func forward(_ input: Tensor) throws -> Tensor {
        let x = try conv1(act(norm1(input)))
        return try conv2(act(norm2(x))) + input
    }
}

/// `segresnet_block.get_conv_layer`: a conv-only `Convolution` without bias by default.
private func segResConv(_ spatialDims: Int, _ inC: Int, _ outC: Int, kernel: Int = 3, stride: Int = 1,
                        bias: Bool = false) throws -> Convolution
{
    try Convolution(spatialDims: spatialDims, inChannels: inC, outChannels: outC, strides: [stride],
                    kernelSize: [kernel], bias: bias, convOnly: true)
}

/// `monai.networks.nets.SegResNet` (MONAI 1.4) with its default non-trainable (linear) upsampling: same module
/// tree and state-dict names (`convInit.conv.weight`, `down_layers.1.0.conv.weight`, `up_samples.0.0...`,
/// `conv_final.2.conv.bias`).
public final class SegResNet: Module, Layer {
    private let convInit: Convolution
    private let dropout: Dropout?
    private let downLayers: [Sequential]
    private let upLayers: [Sequential]
    private let upSamples: [Sequential]
    private let convFinal: Sequential?

    public init(spatialDims: Int = 3, initFilters: Int = 8, inChannels: Int = 1, outChannels: Int = 2,
                dropoutProb: Double? = nil, act: ActType = .relu, norm: NormType = .group(groups: 8),
                useConvFinal: Bool = true, blocksDown: [Int] = [1, 2, 2, 4], blocksUp: [Int] = [1, 1, 1]) throws
    {
        guard !blocksDown.isEmpty, blocksUp.count < blocksDown.count else {
            throw TorchError(operation: "SegResNet", message: "blocks_up must be shorter than blocks_down")
        }
        convInit = try segResConv(spatialDims, inChannels, initFilters)
        // MONAI's Dropout factory gives Dropout3d for 3-D: whole channels.
        dropout = try dropoutProb.map { try Dropout(p: $0, channelwise: spatialDims > 1) }
        downLayers = try blocksDown.enumerated().map { i, count in
            let channels = initFilters << i
            let pre: any Layer = i > 0 ? try segResConv(spatialDims, channels / 2, channels, stride: 2) : Identity()
            return try Sequential([pre] + (0..<count).map { _ in
                try SegResBlock(spatialDims: spatialDims, channels: channels, norm: norm, act: act)
            })
        }
        let nUp = blocksUp.count
        upLayers = try blocksUp.enumerated().map { i, count in
            let channels = (initFilters << (nUp - i)) / 2
            return try Sequential((0..<count).map { _ in
                try SegResBlock(spatialDims: spatialDims, channels: channels, norm: norm, act: act)
            })
        }
        upSamples = try (0..<nUp).map { i in
            let channels = initFilters << (nUp - i)
            // UpSample (a Sequential) holding only "upsample_non_trainable" when channels stay the same.
            let upsample = Sequential()
            try upsample.add("upsample_non_trainable", Upsample(spatialDims: spatialDims, scale: 2,
                                                                 mode: linearMode(spatialDims), alignCorners: false))
            return try Sequential([segResConv(spatialDims, channels, channels / 2, kernel: 1), upsample])
        }
        convFinal = useConvFinal
            ? try Sequential([
                norm.make(channels: initFilters), act.make(),
                segResConv(spatialDims, initFilters, outChannels, kernel: 1, bias: true),
            ])
            : nil
        super.init()
        try registerModule("convInit", convInit)
        let downList = Module(), upList = Module(), sampleList = Module()
        for (i, m) in downLayers.enumerated() { try downList.registerModule(String(i), m) }
        for (i, m) in upLayers.enumerated() { try upList.registerModule(String(i), m) }
        for (i, m) in upSamples.enumerated() { try sampleList.registerModule(String(i), m) }
        try registerModule("down_layers", downList)
        try registerModule("up_layers", upList)
        try registerModule("up_samples", sampleList)
        if let convFinal { try registerModule("conv_final", convFinal) }
        if let dropout { try registerModule("dropout", dropout) }
    }

    public func forward(_ input: Tensor) throws -> Tensor {
        var x = try convInit(input)
        if let dropout { x = try dropout(x) }
        var skips: [Tensor] = []
        for down in downLayers {
            x = try down(x)
            skips.append(x)
        }
        skips.reverse()
        for (i, (up, layer)) in zip(upSamples, upLayers).enumerated() {
            x = try layer(up(x) + skips[i + 1])
        }
        return try convFinal?(x) ?? x
    }
}
