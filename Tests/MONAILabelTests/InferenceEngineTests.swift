import Foundation
import Testing
@testable import MONAILabel
import TorchKit

/// The inference engine's graph changes (BatchNorm folded into convolutions, evaluating dropout skipped) must
/// keep outputs within 1e-4 of the unoptimised network.
@Suite(.tags(.unit), .serialized) struct InferenceEngineTests {
    private static func smallUNet() throws -> UNet {
        try UNet(spatialDims: 3, inChannels: 1, outChannels: 2, channels: [4, 8, 16, 32], strides: [2, 2, 2],
                 numResUnits: 2, norm: .batch)
    }

    /// Gives every BatchNorm statistics and affine parameters far from their initial values, so a fold that
    /// mixes up an axis or the order of scale and shift cannot pass.
    private static func randomiseNorms(_ m: Module) throws {
        for (name, slot) in m.namedState() {
            let t = slot.tensor
            if name.hasSuffix("running_var") {
                try t.uniformInPlace(low: 0.3, high: 2)
            } else if name.hasSuffix("running_mean") || name.hasSuffix(".N.bias") {
                try t.uniformInPlace(low: -0.5, high: 0.5)
            } else if name.hasSuffix(".N.weight") {
                try t.uniformInPlace(low: 0.5, high: 1.5)
            }
        }
    }

    @Test func unet_foldedBatchNorm_matchesPyTorchFixtureWithin1e4() throws {
        let net = try Self.smallUNet()
        let script = try ScriptModule(contentsOf: NetworkFixtures.monai("unet_segmentation_spleen.small.ts"))
        try net.load(stateDict: script.stateDict(), strict: true)
        net.eval()
        let folded = try InferenceEngine.prepare(net)
        #expect(folded > 0)
        let input = try NetworkFixtures.floatNpy("unet_segmentation_spleen.input.npy")
        let expected = try NetworkFixtures.floatNpy("unet_segmentation_spleen.output.npy")
        let output = try Torch.withNoGrad { try net(input) }
        let diff = try (output - expected).abs().max().item()
        #expect(diff < 1e-4, "max abs difference \(diff)")
    }

    @Test func unet_foldedBatchNorm_matchesUnfoldedWithRandomStatistics() throws {
        let net = try Self.smallUNet()
        try Torch.withNoGrad { try Self.randomiseNorms(net) }
        net.eval()
        let input = try Tensor.randn([1, 1, 32, 32, 32])
        let plain = try Torch.withNoGrad { try net(input) }
        // Every Convolution of this UNet has norm first (ordering NDA) except the final conv-only ones.
        #expect(try InferenceEngine.prepare(net) >= 8)
        let folded = try Torch.withNoGrad { try net(input) }
        let diff = try (folded - plain).abs().max().item()
        #expect(diff < 1e-4, "max abs difference \(diff)")
        #expect(try plain.abs().max().item() > 0.01, "the comparison is not of zeros")
    }

    @Test func foldedNetwork_trainedThenEvaluated_usesTheNewStatistics() throws {
        let net = try Self.smallUNet()
        try Torch.withNoGrad { try Self.randomiseNorms(net) }
        net.eval()
        try InferenceEngine.prepare(net)
        // A training-mode pass updates the running statistics; the fold taken before must not be used after.
        net.train()
        _ = try Torch.withNoGrad { try net(Tensor.randn([2, 1, 16, 16, 16])) }
        net.eval()
        let twin = try Self.smallUNet()
        try twin.load(stateDict: try net.stateDict(), strict: true)
        twin.eval()
        let input = try Tensor.randn([1, 1, 16, 16, 16])
        let a = try Torch.withNoGrad { try net(input) }
        let b = try Torch.withNoGrad { try twin(input) }
        #expect(try (a - b).abs().max().item() == 0)
    }

    @Test func adn_evaluatingDropout_isIdentity_mcDropoutStillSamples() throws {
        let block = try Convolution(spatialDims: 2, inChannels: 1, outChannels: 4, act: .prelu, norm: .batch,
                                    dropout: 0.5)
        block.eval()
        let input = try Tensor.randn([1, 1, 16, 16])
        let a = try Torch.withNoGrad { try block(input) }
        let b = try Torch.withNoGrad { try block(input) }
        #expect(try (a - b).abs().max().item() == 0)
        #expect(block.enableMCDropout() == 1)
        let c = try Torch.withNoGrad { try block(input) }
        #expect(try (a - c).abs().max().item() > 0, "an active dropout layer still drops")
    }
}
