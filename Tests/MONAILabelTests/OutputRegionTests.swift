import Foundation
import Testing
@testable import MONAILabel
import TorchKit

/// Computing only the box of a network's output that the sliding window keeps (the part of a window on the
/// image) gives that box of the whole output.
@Suite(.tags(.unit), .serialized) struct OutputRegionTests {
    private static func unet(norm: NormType = .batch, dims: Int = 3, resUnits: Int = 2, dropout: Double = 0) throws
        -> UNet
    {
        let net = try UNet(spatialDims: dims, inChannels: 1, outChannels: 2, channels: [4, 8, 16, 32],
                           strides: [2, 2, 2], numResUnits: resUnits, norm: norm, dropout: dropout)
        // Statistics and affine parameters away from their initial values, so the norms are not the identity.
        try Torch.withNoGrad {
            for (name, slot) in net.namedState() where name.contains(".N.") || name.contains("running") {
                if name.hasSuffix("running_var") || name.hasSuffix("weight") {
                    try slot.tensor.uniformInPlace(low: 0.5, high: 1.5)
                } else if slot.tensor.dtype == .float32 {
                    try slot.tensor.uniformInPlace(low: -0.5, high: 0.5)
                }
            }
        }
        net.eval()
        return net
    }

    /// Boxes of a 32-row axis: at either edge, inside, one row, odd starts and ends, the whole.
    private static let ranges: [Range<Int>] = [0..<32, 0..<1, 31..<32, 5..<27, 8..<24, 11..<12, 1..<30, 16..<32]

    private static func check(_ net: UNet, input: Tensor, regions: [[Range<Int>]]) throws {
        try Torch.withNoGrad {
            let whole = try net(input)
            #expect(try whole.abs().max().item() > 0.01, "the comparison is not of zeros")
            for region in regions {
                let part = try net.forward(input, outputRegion: region)
                let expected = try whole.narrowed(to: region)
                #expect(part.shape == expected.shape, "region \(region)")
                let diff = try part.sub(expected).abs().max().item()
                #expect(diff < 1e-4, "region \(region): max difference \(diff)")
            }
        }
    }

    private static var regions3D: [[Range<Int>]] {
        ranges.map { [$0, 0..<32, 0..<32] } + ranges.map { [3..<29, $0, 7..<20] } + ranges.map { [9..<10, 2..<31, $0] }
    }

    @Test func unet_foldedBatchNorm_regionMatchesWholeOutput() throws {
        let net = try Self.unet()
        #expect(try InferenceEngine.prepare(net) > 0)
        try Self.check(net, input: Tensor.randn([1, 1, 32, 32, 32]), regions: Self.regions3D)
    }

    @Test func unet_unfoldedBatchNorm_regionMatchesWholeOutput() throws {
        try Self.check(Self.unet(), input: Tensor.randn([1, 1, 32, 32, 32]), regions: Self.regions3D)
    }

    @Test func unet_2d_regionMatchesWholeOutput() throws {
        let net = try Self.unet(dims: 2)
        try InferenceEngine.prepare(net)
        try Self.check(net, input: Tensor.randn([2, 1, 32, 32]), regions: Self.ranges.map { [$0, 4..<13] })
    }

    /// Without residual units (up-sampling is the transposed convolution alone, conv-only at the top) and with
    /// evaluating dropout.
    @Test func unet_withoutResidualUnits_withDropout_regionMatchesWholeOutput() throws {
        let net = try Self.unet(resUnits: 0, dropout: 0.2)
        try InferenceEngine.prepare(net)
        try Self.check(net, input: Tensor.randn([1, 1, 32, 32, 32]), regions: Self.regions3D)
    }

    /// InstanceNorm normalises with the whole image's statistics: no box of its output depends on a box of its
    /// input alone, so the region comes from the whole output.
    @Test func unet_instanceNorm_regionStillMatchesWholeOutput() throws {
        let net = try Self.unet(norm: .instance(affine: true))
        let up = try #require(net.model.layers.last as? any BoxForward)
        #expect(up.inputBox(for: [5..<27, 0..<32, 0..<32], inputSize: [16, 16, 16]) == nil)
        try Self.check(net, input: Tensor.randn([1, 1, 32, 32, 32]), regions: Array(Self.regions3D.prefix(4)))
    }

    /// The box the top layers read for a region well inside the window is much smaller than the window.
    @Test func unet_topLayers_readOnlyAroundTheRegion() throws {
        let net = try Self.unet()
        try InferenceEngine.prepare(net)
        let up = try #require(net.model.layers.last as? any BoxForward)
        let box = try #require(up.inputBox(for: [8..<24, 8..<24, 12..<20], inputSize: [16, 16, 16]))
        // The residual unit's 3x3x3 convolution adds a row either side, the transposed one halves and adds one.
        #expect(box == [3..<13, 3..<13, 5..<11])
    }

    /// The sliding window hands the network the part of each window on the image and blends only that; its
    /// output equals the one computed from whole windows, for one window over a padded image and for several,
    /// constant and Gaussian, one window per call or two.
    @Test(arguments: [(BlendMode.constant, 1), (.gaussian, 1), (.constant, 2), (.gaussian, 2)])
    func slidingWindow_keptRegions_matchWholeWindows(mode: BlendMode, batch: Int) throws {
        let net = try Self.unet()
        try InferenceEngine.prepare(net)
        for shape in [[20, 27, 13], [45, 20, 32]] {
            let input = try Tensor.randn([1, 1] + shape)
            let sw = SlidingWindowInferer(roiSize: [32, 32, 32], swBatchSize: batch, overlap: 0.25, mode: mode)
            try Torch.withNoGrad {
                let whole = try sw(input) { try net($0) }
                var asked: [[Range<Int>]] = []
                let kept = try sw(input, predictingRegion: { x, region in
                    asked.append(region)
                    return try net.forward(x, outputRegion: region)
                })
                #expect(kept.shape == [1, 2] + shape)
                let diff = try kept.sub(whole).abs().max().item()
                #expect(diff < 1e-4, "\(shape) \(mode) batch \(batch): max difference \(diff)")
                // Every axis shorter than the window is asked for its image rows only.
                #expect(asked.allSatisfy { r in (0..<3).allSatisfy { shape[$0] >= 32 || r[$0].count == shape[$0] } })
            }
        }
    }
}
