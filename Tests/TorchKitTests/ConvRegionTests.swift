import Foundation
import Testing
@testable import TorchKit

extension TorchKitTests {
    /// A convolution run on `inputWindow`'s box of its input gives the whole run's output rows over the region.
    @Suite struct ConvRegionTests {
        typealias Geometry = ConvSlabTests.Geometry

        /// Ranges of an axis of `size` rows: the edges, the middle, one row, the whole.
        static func ranges(_ size: Int) -> [Range<Int>] {
            Array(Set([0..<size, 0..<1, (size - 1)..<size, 1..<(size - 1), (size / 2)..<(size / 2 + 1), 2..<size,
                       0..<(size - 2)].filter { !$0.isEmpty && $0.lowerBound >= 0 && $0.upperBound <= size }))
                .sorted { ($0.lowerBound, $0.upperBound) < ($1.lowerBound, $1.upperBound) }
        }

        @Test(arguments: ConvSlabTests.geometries)
        func boxRun_matchesWholeRunOverTheRegion(_ g: Geometry) throws {
            let conv = try g.conv()
            let x = try Tensor.randn(g.inputShape)
            let size = Array(g.inputShape.dropFirst(2))
            let kernel = Array(repeating: g.kernel, count: g.dims)
            let outSize = try #require(conv.outputSize(inputSize: size, kernel: kernel))
            try Torch.withNoGrad {
                let whole = try conv(x)
                #expect(Array(whole.shape.dropFirst(2)) == outSize)
                var checked = 0
                // Every axis takes each of its ranges while the others take the whole or one inner range.
                for axis in 0..<g.dims {
                    for r in Self.ranges(outSize[axis]) {
                        var region = outSize.map { 0..<$0 }
                        region[axis] = r
                        if axis > 0 { region[0] = Self.ranges(outSize[0]).last! }
                        let w = try #require(conv.inputWindow(for: region, inputSize: size, kernel: kernel),
                                             "\(g): no box for \(region)")
                        var part = x
                        var expected = whole
                        for d in 0..<g.dims {
                            #expect(w.box[d].lowerBound >= 0 && w.box[d].upperBound <= size[d])
                            part = try part.narrow(dim: d + 2, start: w.box[d].lowerBound, length: w.box[d].count)
                            expected = try expected.narrow(dim: d + 2, start: region[d].lowerBound,
                                                           length: region[d].count)
                        }
                        var got = try conv(part)
                        for d in 0..<g.dims {
                            got = try got.narrow(dim: d + 2, start: region[d].lowerBound - w.offset[d],
                                                 length: region[d].count)
                        }
                        let diff = try got.sub(expected).abs().max().item()
                        #expect(diff < 1e-5, "\(g) region \(region) box \(w.box): max difference \(diff)")
                        checked += 1
                    }
                }
                #expect(checked >= 3 * g.dims)
            }
        }

        /// The box is no larger than the region needs: a one-row region of a stride-1 kernel-3 convolution reads
        /// three rows inside the input, one at its edge two.
        @Test func box_ofAnInnerRow_isTheKernelsReach() throws {
            let conv = try Conv(spatialDims: 1, inChannels: 1, outChannels: 1, kernelSize: 3, padding: 1)
            let inner = try #require(conv.inputWindow(for: [4..<5], inputSize: [10], kernel: [3]))
            #expect(inner.box == [3..<6])
            #expect(inner.offset == [3])
            let edge = try #require(conv.inputWindow(for: [0..<1], inputSize: [10], kernel: [3]))
            #expect(edge.box == [0..<2])
            #expect(edge.offset == [0])
        }

        /// A geometry a checkpoint's config might carry but libtorch refuses (stride or dilation 0) is no size and no
        /// box rather than a division by zero.
        @Test func zeroStrideOrDilation_hasNoSizeNorBox() throws {
            let zeroStride = try Conv(spatialDims: 1, inChannels: 1, outChannels: 1, kernelSize: [3], stride: [0])
            #expect(zeroStride.outputSize(inputSize: [10], kernel: [3]) == nil)
            #expect(zeroStride.inputWindow(for: [0..<2], inputSize: [10], kernel: [3]) == nil)
            #expect(zeroStride.slabs(inputShape: [1, 1, 10], kernel: [3], limit: 1) == nil)
            let zeroDilation = try Conv(spatialDims: 1, inChannels: 1, outChannels: 1, kernelSize: [3], dilation: [0])
            #expect(zeroDilation.outputSize(inputSize: [10], kernel: [3]) == nil)
        }

        @Test func region_outsideTheOutput_hasNoBox() throws {
            let conv = try Conv(spatialDims: 1, inChannels: 1, outChannels: 1, kernelSize: 3, padding: 1)
            #expect(conv.inputWindow(for: [8..<11], inputSize: [10], kernel: [3]) == nil)
            #expect(conv.inputWindow(for: [3..<3], inputSize: [10], kernel: [3]) == nil)
            #expect(conv.inputWindow(for: [0..<1, 0..<1], inputSize: [10], kernel: [3]) == nil)
        }
    }
}
