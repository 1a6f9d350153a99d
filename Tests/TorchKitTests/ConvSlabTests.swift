import Foundation
import Testing
@testable import TorchKit

extension TorchKitTests {
    /// Convolutions run in slabs along the last spatial axis (inference's bounded workspace) give the one-call
    /// result.
    @Suite struct ConvSlabTests {
        struct Geometry: CustomStringConvertible, Sendable {
            var dims: Int, kernel: Int, stride: Int, padding: Int, dilation: Int = 1
            var transposed = false, outputPadding = 0
            var description: String {
                "\(dims)d k\(kernel) s\(stride) p\(padding) d\(dilation)\(transposed ? " transposed op\(outputPadding)" : "")"
            }

            /// A 3 -> 2 channel convolution of this geometry.
            func conv() throws -> Conv {
                try Conv(spatialDims: dims, inChannels: 3, outChannels: 2, kernelSize: [kernel], stride: [stride],
                         padding: [padding], dilation: [dilation], transposed: transposed, outputPadding: [outputPadding])
            }

            /// A batch of 2 small inputs of odd sizes.
            var inputShape: [Int] { [2, 3] + (dims == 3 ? [5, 6, 11] : [7, 11]) }
        }

        static let geometries: [Geometry] = [
            Geometry(dims: 3, kernel: 3, stride: 1, padding: 1),
            Geometry(dims: 3, kernel: 3, stride: 2, padding: 1),
            Geometry(dims: 3, kernel: 3, stride: 1, padding: 2, dilation: 2),
            Geometry(dims: 3, kernel: 1, stride: 1, padding: 0),
            Geometry(dims: 3, kernel: 3, stride: 2, padding: 1, transposed: true, outputPadding: 1),
            Geometry(dims: 3, kernel: 2, stride: 2, padding: 0, transposed: true),
            Geometry(dims: 3, kernel: 3, stride: 1, padding: 1, transposed: true),
            Geometry(dims: 2, kernel: 3, stride: 1, padding: 1),
            Geometry(dims: 2, kernel: 3, stride: 2, padding: 1, transposed: true, outputPadding: 1),
        ]

        @Test(arguments: geometries)
        func slabs_matchOneCall(_ g: Geometry) throws {
            let conv = try g.conv()
            let shape = g.inputShape
            let x = try Tensor.randn(shape)
            let kernel = Array(repeating: g.kernel, count: g.dims)
            // A limit of a few rows' voxels: several slabs, the first and last padded.
            let limit = 40
            let plan = try #require(conv.slabs(inputShape: shape, kernel: kernel, limit: limit))
            #expect(plan.count >= 2)
            try Torch.withNoGrad {
                let whole = try conv(x)
                let sliced = try Conv.$largeOutputsChannelsLast.withValue(false) {
                    try conv.run(x, weight: conv.weight.tensor, bias: conv.bias?.tensor, limit: limit)
                }
                #expect(sliced.shape == whole.shape)
                let diff = try sliced.sub(whole).abs().max().item()
                #expect(diff < 1e-5, "\(g): max difference \(diff)")
            }
        }

        /// The other way past the limit (libtorch 2.x's default): one call on a channels-last copy of the input.
        @Test(arguments: geometries.filter { $0.dims >= 2 })
        func channelsLastPath_matchesOneCall(_ g: Geometry) throws {
            let conv = try g.conv()
            let shape = g.inputShape
            let x = try Tensor.randn(shape)
            // Past the limit, so `run` leaves the one-call path.
            _ = try #require(conv.slabs(inputShape: shape, kernel: Array(repeating: g.kernel, count: g.dims), limit: 40))
            try Torch.withNoGrad {
                let whole = try conv(x)
                let cl = try Conv.$largeOutputsChannelsLast.withValue(true) {
                    try conv.run(x, weight: conv.weight.tensor, bias: conv.bias?.tensor, limit: 40)
                }
                #expect(cl.shape == whole.shape)
                let diff = try cl.sub(whole).abs().max().item()
                #expect(diff < 1e-5, "\(g): max difference \(diff)")
            }
        }

        /// A convolution with a leaky ReLU applied by `run` (fused into oneDNN's primitive where the backend has
        /// it, else in place on the output; in one call, in slabs, or on a channels-last copy) equals the
        /// convolution followed by `leakyRelu`, for contiguous and channels-last inputs.
        @Test(arguments: geometries)
        func leakyReluSlope_matchesConvThenLeakyRelu(_ g: Geometry) throws {
            let conv = try g.conv()
            let shape = g.inputShape
            let kernel = Array(repeating: g.kernel, count: g.dims)
            #expect(conv.slabs(inputShape: shape, kernel: kernel, limit: 40) != nil)
            let slope = 0.17
            let plain = try Tensor.randn(shape)
            let inputs = [plain] + (g.dims >= 2 ? [try plain.contiguous(channelsLast: true)] : [])
            try Torch.withNoGrad {
                let expected = try conv(plain).leakyRelu(slope: slope)
                #expect(try expected.lt(0).sum().item() > 0, "\(g): some outputs take the slope")
                for x in inputs {
                    for fuses in [true, false] {
                        for (limit, channelsLast) in [(Conv.slabVoxels, false), (40, false), (40, true)] {
                            let y = try Conv.$fusesActivation.withValue(fuses) {
                                try Conv.$largeOutputsChannelsLast.withValue(channelsLast) {
                                    try conv.run(x, weight: conv.weight.tensor, bias: conv.bias?.tensor, limit: limit,
                                                 leakyReluSlope: slope)
                                }
                            }
                            #expect(y.shape == expected.shape)
                            let diff = try y.sub(expected).abs().max().item()
                            #expect(diff < 1e-5, "\(g) fuses \(fuses) limit \(limit) channels-last \(channelsLast): \(diff)")
                        }
                    }
                }
            }
        }

        /// libtorch 2.x's CPU builds have oneDNN's fused convolution, so there the fused path above is the one
        /// tested; its op rejects what it cannot take instead of computing something else.
        @Test func fusedConvLeakyRelu_availableOnLibtorch2_rejectsNonFloat32() throws {
            if Torch.version.major >= 2 {
                #expect(Tensor.hasFusedConvLeakyRelu(transposed: false))
                #expect(Tensor.hasFusedConvLeakyRelu(transposed: true))
            }
            guard Tensor.hasFusedConvLeakyRelu(transposed: false) else { return }
            let x = try Tensor.randn([1, 2, 4, 4, 4]).to(.float64)
            let w = try Tensor.randn([3, 2, 3, 3, 3]).to(.float64)
            #expect(throws: TorchError.self) {
                try Torch.withNoGrad {
                    try x.convLeakyRelu(weight: w, bias: nil, stride: [1, 1, 1], padding: [1, 1, 1],
                                        dilation: [1, 1, 1], slope: 0.1)
                }
            }
        }

        /// The fused activation is for inference only: with autograd on, `run` refuses it (the fused op has no
        /// backward) rather than returning a result that cannot be differentiated.
        @Test func leakyReluSlope_withAutograd_throws() throws {
            let conv = try Conv(spatialDims: 3, inChannels: 1, outChannels: 2, kernelSize: 3, padding: 1)
            #expect(throws: TorchError.self) {
                try conv.forward(Tensor.randn([1, 1, 4, 4, 4]), weight: conv.weight.tensor, bias: conv.bias?.tensor,
                                 leakyReluSlope: 0.1)
            }
        }

        @Test func smallOutput_runsInOneCall() throws {
            let conv = try Conv(spatialDims: 3, inChannels: 1, outChannels: 1, kernelSize: 3, padding: 1)
            #expect(conv.slabs(inputShape: [1, 1, 8, 8, 8], kernel: [3, 3, 3], limit: 512) == nil)
            #expect(conv.slabs(inputShape: [1, 1, 8, 8, 8], kernel: [3, 3, 3], limit: 511)?.count == 2)
        }
    }
}
