import Foundation
import Testing
@testable import TorchKit

extension TorchKitTests {
    @Suite struct TrainingTests {
        /// conv -> batch norm -> PReLU -> conv, the shape of MONAI's residual units.
        static func tinyNet() throws -> Sequential {
            try Sequential([
                Conv(spatialDims: 3, inChannels: 1, outChannels: 4, kernelSize: 3, padding: 1),
                BatchNorm(numFeatures: 4),
                PReLU(),
                Conv(spatialDims: 3, inChannels: 4, outChannels: 1, kernelSize: 3, padding: 1),
            ])
        }

        @Test func adam_tiny3dConvNet_lossFalls() throws {
            Torch.manualSeed(0)
            let net = try Self.tinyNet()
            let x = try Tensor.randn([2, 1, 8, 8, 8])
            // A learnable target: a local smoothing of the input, shifted and scaled.
            let target = try x.avgPool(kernel: [3, 3, 3], stride: [1, 1, 1], padding: [1, 1, 1]).mul(2).add(0.5)
            let adam = try Adam(parameters: net.parameters(), lr: 0.01)
            var losses: [Double] = []
            for _ in 0..<50 {
                try adam.zeroGrad()
                let loss = try (net(x) - target).square().mean()
                try loss.backward()
                try adam.step()
                losses.append(try loss.item())
            }
            #expect(losses.allSatisfy { $0.isFinite })
            #expect(losses.last! < losses.first! * 0.2, "losses \(losses.first!) -> \(losses.last!)")
        }

        @Test func sgd_step_followsGradient() throws {
            let p = try Tensor([1, 2] as [Float])
            try p.setRequiresGrad(true)
            let sgd = try SGD(parameters: [p], lr: 0.1)
            try p.square().sum().backward()
            #expect(try p.grad()?.floats() == [2, 4])
            try sgd.step()
            #expect(maxAbsDifference(try p.floats(), [0.8, 1.6]) < 1e-6)
            try sgd.setLearningRate(0.5)
            #expect(sgd.learningRate == 0.5)
            try sgd.zeroGrad()
            #expect(try p.grad()?.floats() ?? [0, 0] == [0, 0])
        }

        @Test func adamW_decaysWeightsWithoutGradient() throws {
            let p = try Tensor([1, -1] as [Float])
            try p.setRequiresGrad(true)
            let opt = try AdamW(parameters: [p], lr: 0.1, weightDecay: 0.5)
            // A zero gradient isolates the decoupled decay: p *= 1 - lr * wd.
            try p.mul(0).sum().backward()
            try opt.step()
            #expect(maxAbsDifference(try p.floats(), [0.95, -0.95]) < 1e-6)
        }

        @Test func autograd_gradDetachAndNoGrad() throws {
            let x = try Tensor([1, 2, 3] as [Float])
            try x.setRequiresGrad(true)
            #expect(try x.grad() == nil)
            try x.mul(x).sum().backward()
            #expect(try x.grad()?.floats() == [2, 4, 6])
            try x.mul(x).sum().backward()
            #expect(try x.grad()?.floats() == [4, 8, 12])
            try x.zeroGrad()
            #expect(try x.grad() == nil)
            #expect(try x.mul(2).requiresGrad)
            #expect(try !x.detach().mul(2).requiresGrad)
            let inside = try Torch.withNoGrad { () throws -> Bool in
                #expect(!Torch.isGradEnabled)
                return try x.mul(2).requiresGrad
            }
            #expect(!inside)
            #expect(Torch.isGradEnabled)
        }
    }
}
