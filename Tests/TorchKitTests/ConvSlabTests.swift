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

        @Test func smallOutput_runsInOneCall() throws {
            let conv = try Conv(spatialDims: 3, inChannels: 1, outChannels: 1, kernelSize: 3, padding: 1)
            #expect(conv.slabs(inputShape: [1, 1, 8, 8, 8], kernel: [3, 3, 3], limit: 512) == nil)
            #expect(conv.slabs(inputShape: [1, 1, 8, 8, 8], kernel: [3, 3, 3], limit: 511)?.count == 2)
        }
    }
}
