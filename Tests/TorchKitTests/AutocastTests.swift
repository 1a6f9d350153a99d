import Foundation
import Testing
@testable import TorchKit

extension TorchKitTests {
    @Suite struct AutocastTests {
        static let bf16 = Autocast(device: .cpu, dtype: .bfloat16)

        @Test func cpuBF16_runsConvolutionsInBF16_andRestoresTheThreadState() throws {
            Torch.manualSeed(1)
            let conv = try Conv(spatialDims: 3, inChannels: 2, outChannels: 4, kernelSize: 3, padding: 1)
            let x = try Tensor.randn([1, 2, 6, 6, 6])
            #expect(!Autocast.isEnabled(on: .cpu))
            let inside = try Self.bf16.run { () throws -> (DType, Bool) in
                // A nested scope leaves autocast on for the outer one.
                try Self.bf16.run { _ = try conv(x) }
                return (try conv(x).dtype, Autocast.isEnabled(on: .cpu))
            }
            #expect(inside.0 == .bfloat16)
            #expect(inside.1, "autocast is on inside the scope")
            #expect(!Autocast.isEnabled(on: .cpu))
            #expect(try conv(x).dtype == .float32)
        }

        @Test func cpuBF16_scopeEndsEvenWhenTheBodyThrows() throws {
            struct Boom: Error {}
            #expect(throws: Boom.self) { try Self.bf16.run { throw Boom() } }
            #expect(!Autocast.isEnabled(on: .cpu))
        }

        @Test func cpuFloat16_isNotOffered_andEnteringItFails() throws {
            #expect(Autocast.isSupported(on: .cpu, dtype: .bfloat16))
            #expect(!Autocast.isSupported(on: .cpu, dtype: .float16))
            #expect(!Autocast.isSupported(on: .cpu, dtype: .float32))
            #expect(throws: TorchError.self) { try Autocast(device: .cpu, dtype: .float16).run {} }
            #expect(!Autocast.isEnabled(on: .cpu))
        }

        /// UNet's up-sampling path. libtorch 1.13 runs transposed convolutions in float32 under CPU autocast
        /// (its plain bf16 kernel is broken), 2.x in bfloat16: either way the result stays within bfloat16's
        /// precision of float32's.
        @Test func transposedConv_underAutocast_staysWithinBF16PrecisionOfFloat32() throws {
            Torch.manualSeed(2)
            let up = try Conv(spatialDims: 3, inChannels: 8, outChannels: 4, kernelSize: 3, stride: 2, padding: 1,
                              transposed: true, outputPadding: 1)
            let x = try Tensor.randn([1, 8, 4, 4, 4])
            let reference = try Torch.withNoGrad { try up(x) }
            let mixed = try Torch.withNoGrad { try Self.bf16.run { try up(x) }.to(.float32) }
            #expect(mixed.shape == [1, 4, 8, 8, 8])
            let err = try (mixed - reference).abs().max().item()
            let scale = try reference.abs().max().item()
            #expect(err <= scale * 0.02, "max error \(err) against values up to \(scale)")
        }
    }

    @Suite struct GradScalerTests {
        /// One parameter `p` and the loss `sum(p * w)`, whose gradient is `w`.
        static func setup(_ values: [Float]) throws -> (p: Tensor, w: Tensor, sgd: SGD) {
            let p = try Tensor([1, 1] as [Float])
            try p.setRequiresGrad(true)
            return (p, try Tensor(values), try SGD(parameters: [p], lr: 0.5))
        }

        @Test func scaledBackward_unscalesToTheTrueGradient_andSteps() throws {
            let (p, w, sgd) = try Self.setup([2, -4])
            let scaler = GradScaler()
            try sgd.zeroGrad()
            try scaler.scaled((p * w).sum()).backward()
            #expect(try p.grad()?.floats() == [2 * 65536, -4 * 65536])
            let overflow = try scaler.unscale([p])
            #expect(!overflow)
            #expect(try p.grad()?.floats() == [2, -4])
            #expect(try scaler.step(sgd, foundNonFinite: overflow))
            #expect(try p.floats() == [0, 3])
            #expect(scaler.scale == 65536)
            #expect(scaler.growthTracker == 1)
        }

        @Test func nonFiniteGradients_skipTheStep_halveTheScale_andRestartTheCount() throws {
            for bad in [Float.infinity, -Float.infinity, Float.nan] {
                let (p, w, sgd) = try Self.setup([1, bad])
                let scaler = GradScaler(growthInterval: 3)
                scaler.update(foundNonFinite: false)
                #expect(scaler.growthTracker == 1)
                try sgd.zeroGrad()
                try scaler.scaled((p * w).sum()).backward()
                let overflow = try scaler.unscale([p])
                #expect(overflow, "gradient \(bad)")
                #expect(!(try scaler.step(sgd, foundNonFinite: overflow)))
                #expect(try p.floats() == [1, 1], "the parameters did not move")
                #expect(scaler.scale == 32768)
                #expect(scaler.growthTracker == 0)
            }
        }

        @Test func scale_doublesAfterTheIntervalOfGoodSteps_only() throws {
            let scaler = GradScaler(initScale: 1024, growthInterval: 3)
            scaler.update(foundNonFinite: false)
            scaler.update(foundNonFinite: false)
            #expect(scaler.scale == 1024)
            scaler.update(foundNonFinite: false)
            #expect(scaler.scale == 2048)
            #expect(scaler.growthTracker == 0)
            // A bad step in the middle restarts the interval.
            scaler.update(foundNonFinite: false)
            scaler.update(foundNonFinite: true)
            #expect(scaler.scale == 1024)
            for _ in 0..<2 { scaler.update(foundNonFinite: false) }
            #expect(scaler.scale == 1024)
            scaler.update(foundNonFinite: false)
            #expect(scaler.scale == 2048)
        }

        @Test func defaults_matchPyTorch() {
            let s = GradScaler()
            #expect(s.scale == 65536)
            #expect(s.growthFactor == 2)
            #expect(s.backoffFactor == 0.5)
            #expect(s.growthInterval == 2000)
        }
    }
}
