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

    /// The folded up-sampling layers in each form (libtorch's transposed convolution, its sub-pixel form, its
    /// phases) keep the unfolded network's outputs.
    @Test(arguments: [TransposedRewrite.Form.native, .subpixel, .phases])
    func unet_foldedInEachTransposedForm_matchesUnfolded(form: TransposedRewrite.Form) throws {
        let net = try Self.smallUNet()
        try Torch.withNoGrad { try Self.randomiseNorms(net) }
        net.eval()
        let input = try Tensor.randn([1, 1, 24, 32, 16])
        let plain = try Torch.withNoGrad { try net(input) }
        try Conv.$transposedForm.withValue(form) { _ = try InferenceEngine.prepare(net) }
        let folded = try Torch.withNoGrad { try net(input) }
        let diff = try (folded - plain).abs().max().item()
        #expect(diff < 1e-4, "\(form): max abs difference \(diff)")
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

    /// A folded Convolution block applies its one-parameter PReLU as a leaky ReLU inside the convolution (oneDNN's
    /// fused primitive on libtorch 2.x, else in place): the same as conv -> BatchNorm -> PReLU unfolded, plain
    /// and transposed, on contiguous and channels-last inputs, fused or not.
    @Test(arguments: [false, true])
    func convolutionBlock_foldedWithActivation_matchesConvNormPReLU(transposed: Bool) throws {
        let block = try Convolution(spatialDims: 3, inChannels: 3, outChannels: 5, strides: [transposed ? 2 : 1],
                                    act: .prelu, norm: .batch, isTransposed: transposed)
        try Torch.withNoGrad {
            try Self.randomiseNorms(block)
            // Away from the default 0.25, so a slope taken from elsewhere cannot pass.
            for (name, slot) in block.namedState() where name.hasSuffix(".A.weight") { try slot.tensor.fill(0.07) }
        }
        block.eval()
        let plain = try Tensor.randn([2, 3, 6, 7, 5])
        let unfolded = try Torch.withNoGrad { try block(plain) }
        #expect(try unfolded.lt(0).sum().item() > 0, "some outputs take the slope")
        #expect(try block.foldBatchNorm())
        for x in [plain, try plain.contiguous(channelsLast: true)] {
            for fuses in [true, false] {
                let y = try Conv.$fusesActivation.withValue(fuses) { try Torch.withNoGrad { try block(x) } }
                let diff = try (y - unfolded).abs().max().item()
                #expect(diff < 1e-4, "fuses \(fuses): max abs difference \(diff)")
            }
        }
    }

    /// Autograd on, the folded block does not take the fused path (no backward there): gradients still flow.
    @Test func convolutionBlock_foldedWithAutograd_stillDifferentiable() throws {
        let block = try Convolution(spatialDims: 3, inChannels: 2, outChannels: 3, act: .prelu, norm: .batch)
        block.eval()
        #expect(try block.foldBatchNorm())
        let y = try block(Tensor.randn([1, 2, 4, 4, 4]))
        #expect(y.requiresGrad)
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
