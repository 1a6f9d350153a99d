import Foundation
import Testing
@testable import MONAILabel
import TorchKit

@Suite(.tags(.unit), .serialized) struct NetworkTests {
    static func names(_ module: Module) throws -> [(String, [Int])] {
        module.namedState().map { ($0.name, $0.parameter.tensor.shape) }
    }

    static func expectSameState(_ module: Module, _ network: String) throws {
        let expected = try NetworkFixtures.fullStateDict(network)
        let actual = try names(module)
        #expect(actual.map { $0.0 } == expected.map { $0.0 })
        #expect(actual.map { $0.1 } == expected.map { $0.1 })
        if actual.count == expected.count {
            for (a, e) in zip(actual, expected) where a != e {
                Issue.record("first difference: \(a) vs manifest \(e)")
                break
            }
        }
    }

    @Test func unet_spleenConfig_matchesManifestStateDict() throws {
        let net = try UNet(spatialDims: 3, inChannels: 1, outChannels: 2, channels: [16, 32, 64, 128, 256],
                           strides: [2, 2, 2, 2], numResUnits: 2, norm: .batch)
        try Self.expectSameState(net, "unet_segmentation_spleen")
    }

    @Test func unet_smallFixture_matchesPyTorchOutput() throws {
        let net = try UNet(spatialDims: 3, inChannels: 1, outChannels: 2, channels: [4, 8, 16, 32],
                           strides: [2, 2, 2], numResUnits: 2, norm: .batch)
        let diff = try NetworkFixtures.parity(net, fixture: "unet_segmentation_spleen")
        #expect(diff < 1e-4, "max abs difference \(diff)")
    }

    @Test func unet_smallFixture_inConvolutionSlabs_matchesPyTorchOutput() throws {
        let net = try UNet(spatialDims: 3, inChannels: 1, outChannels: 2, channels: [4, 8, 16, 32],
                           strides: [2, 2, 2], numResUnits: 2, norm: .batch)
        // Every convolution with more than 64 output voxels runs in slabs, transposed ones included.
        let diff = try Conv.$slabVoxels.withValue(64) {
            try NetworkFixtures.parity(net, fixture: "unet_segmentation_spleen")
        }
        #expect(diff < 1e-4, "max abs difference \(diff)")
    }

    @Test func unet_withoutResidualUnits_buildsAndRuns() throws {
        let net = try UNet(spatialDims: 2, inChannels: 1, outChannels: 3, channels: [4, 8, 16], strides: [2, 2])
        #expect(net.namedState().contains { $0.name == "model.0.conv.weight" })
        let y = try Torch.withNoGrad { try net(Tensor.randn([1, 1, 16, 16])) }
        #expect(y.shape == [1, 3, 16, 16])
    }

    @Test func unet_tooFewChannels_throws() {
        #expect(throws: TorchError.self) {
            try UNet(spatialDims: 3, inChannels: 1, outChannels: 2, channels: [4], strides: [])
        }
    }
}

extension NetworkTests {
    @Test(arguments: [(2, "basicunet_deepgrow_2d"), (3, "basicunet_deepgrow_3d")])
    func basicUNet_deepgrowConfig_matchesManifestStateDict(dims: Int, network: String) throws {
        let net = try BasicUNet(spatialDims: dims, inChannels: 3, outChannels: 1, features: [32, 64, 128, 256, 512, 32])
        try Self.expectSameState(net, network)
    }

    @Test(arguments: [(2, "basicunet_deepgrow_2d"), (3, "basicunet_deepgrow_3d")])
    func basicUNet_smallFixture_matchesPyTorchOutput(dims: Int, network: String) throws {
        let net = try BasicUNet(spatialDims: dims, inChannels: 3, outChannels: 1, features: [4, 8, 8, 16, 16, 4])
        let diff = try NetworkFixtures.parity(net, fixture: network)
        #expect(diff < 1e-4, "max abs difference \(diff)")
    }

    @Test func basicUNet_oddInputSize_padsLikeMONAI() throws {
        let net = try BasicUNet(spatialDims: 2, inChannels: 1, outChannels: 2, features: [4, 4, 4, 4, 4, 4])
        let y = try Torch.withNoGrad { try net(Tensor.randn([1, 1, 33, 35])) }
        #expect(y.shape == [1, 2, 33, 35])
    }
}

extension NetworkTests {
    @Test func segResNet_fullConfig_matchesManifestStateDict() throws {
        let net = try SegResNet(spatialDims: 3, initFilters: 32, inChannels: 1, outChannels: 14, dropoutProb: 0.2,
                                blocksDown: [1, 2, 2, 4], blocksUp: [1, 1, 1])
        try Self.expectSameState(net, "segresnet_segmentation")
    }

    @Test func segResNet_smallFixture_matchesPyTorchOutput() throws {
        let net = try SegResNet(spatialDims: 3, initFilters: 8, inChannels: 1, outChannels: 3, dropoutProb: 0.2,
                                blocksDown: [1, 2, 2, 4], blocksUp: [1, 1, 1])
        let diff = try NetworkFixtures.parity(net, fixture: "segresnet_segmentation")
        #expect(diff < 1e-4, "max abs difference \(diff)")
    }

    @Test func dynUNet_deepeditConfig_matchesManifestStateDict() throws {
        let net = try DynUNet(spatialDims: 3, inChannels: 9, outChannels: 8, kernelSize: [[3], [3], [3], [3], [3], [3]],
                              strides: [[1], [2], [2], [2], [2], [2, 2, 1]],
                              upsampleKernelSize: [[2], [2], [2], [2], [2, 2, 1]], norm: .instance(), resBlock: true)
        try Self.expectSameState(net, "dynunet_deepedit")
        #expect(net.filters == [32, 64, 128, 256, 320, 320])
        // Blocks shared between the named lists and skip_layers are trained once.
        #expect(net.namedParameters().allSatisfy { !$0.name.hasPrefix("skip_layers.") })
    }

    @Test func dynUNet_smallFixture_matchesPyTorchOutput() throws {
        let net = try DynUNet(spatialDims: 3, inChannels: 4, outChannels: 3, kernelSize: [[3], [3], [3], [3]],
                              strides: [[1], [2], [2], [2, 2, 1]], upsampleKernelSize: [[2], [2], [2, 2, 1]],
                              filters: [8, 16, 32, 64], norm: .instance(), resBlock: true)
        let diff = try NetworkFixtures.parity(net, fixture: "dynunet_deepedit")
        #expect(diff < 1e-4, "max abs difference \(diff)")
    }
}
