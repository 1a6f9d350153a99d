import TorchKit

/// `monai.networks.nets.UNet` (MONAI 1.4): same module tree and state-dict names
/// (`model.0.conv.unit0.conv.weight`, `model.1.submodule...`), so MONAI checkpoints load one-to-one.
public final class UNet: Module, Layer {
    let model: Sequential

    public init(spatialDims: Int, inChannels: Int, outChannels: Int, channels: [Int], strides: [Int],
                kernelSize: Int = 3, upKernelSize: Int = 3, numResUnits: Int = 0, act: ActType = .prelu,
                norm: NormType = .instance(), dropout: Double = 0, bias: Bool = true, adnOrdering: String = "NDA")
        throws
    {
        guard channels.count >= 2 else {
            throw TorchError(operation: "UNet", message: "the length of `channels` should be no less than 2")
        }
        guard strides.count >= channels.count - 1 else {
            throw TorchError(operation: "UNet", message: "the length of `strides` should equal `len(channels) - 1`")
        }

        func down(_ inC: Int, _ outC: Int, _ stride: Int) throws -> any Layer {
            if numResUnits > 0 {
                return try ResidualUnit(spatialDims: spatialDims, inChannels: inC, outChannels: outC, strides: [stride],
                                        kernelSize: [kernelSize], subunits: numResUnits, adnOrdering: adnOrdering,
                                        act: act, norm: norm, dropout: dropout, bias: bias)
            }
            return try Convolution(spatialDims: spatialDims, inChannels: inC, outChannels: outC, strides: [stride],
                                   kernelSize: [kernelSize], adnOrdering: adnOrdering, act: act, norm: norm,
                                   dropout: dropout, bias: bias)
        }

        func up(_ inC: Int, _ outC: Int, _ stride: Int, isTop: Bool) throws -> any Layer {
            let conv = try Convolution(spatialDims: spatialDims, inChannels: inC, outChannels: outC,
                                       strides: [stride], kernelSize: [upKernelSize], adnOrdering: adnOrdering,
                                       act: act, norm: norm, dropout: dropout, bias: bias,
                                       convOnly: isTop && numResUnits == 0, isTransposed: true)
            guard numResUnits > 0 else { return conv }
            let ru = try ResidualUnit(spatialDims: spatialDims, inChannels: outC, outChannels: outC, strides: [1],
                                      kernelSize: [kernelSize], subunits: 1, adnOrdering: adnOrdering, act: act,
                                      norm: norm, dropout: dropout, bias: bias, lastConvOnly: isTop)
            return try Sequential([conv, ru])
        }

        func block(_ inC: Int, _ outC: Int, _ channels: ArraySlice<Int>, _ strides: ArraySlice<Int>, isTop: Bool)
            throws -> Sequential
        {
            let c = channels[channels.startIndex]
            let s = strides[strides.startIndex]
            let sub: any Layer
            let upC: Int
            if channels.count > 2 {
                sub = try block(c, c, channels.dropFirst(), strides.dropFirst(), isTop: false)
                upC = c * 2
            } else {
                let next = channels[channels.startIndex + 1]
                sub = try down(c, next, 1)
                upC = c + next
            }
            return try Sequential([down(inC, c, s), SkipConnection(sub), up(upC, outC, s, isTop: isTop)])
        }

        model = try block(inChannels, outChannels, channels[...], strides[...], isTop: true)
        super.init()
        try registerModule("model", model)
    }

    public func forward(_ input: Tensor) throws -> Tensor { try model(input) }
}
