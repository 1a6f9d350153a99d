import Foundation
import Testing
@testable import TorchKit

extension TorchKitTests {
    @Suite struct OpsTests {
        @Test func arithmetic_broadcastsAndTakesScalarsOnEitherSide() throws {
            let a = try Tensor([1, 2, 3, 4] as [Float], shape: [2, 2])
            let b = try Tensor([10, 20] as [Float], shape: [2])
            #expect(try (a + b).floats() == [11, 22, 13, 24])
            #expect(try (a - 1).floats() == [0, 1, 2, 3])
            #expect(try (1 - a).floats() == [0, -1, -2, -3])
            #expect(try (a * 2).floats() == [2, 4, 6, 8])
            #expect(try (12 / a).floats() == [12, 6, 4, 3])
            #expect(try (a / b).floats() == [0.1, 0.1, 0.3, 0.2])
            #expect(try a.pow(2).floats() == [1, 4, 9, 16])
            #expect(try (-a).floats() == [-1, -2, -3, -4])
            #expect(try a.matmul(a).floats() == [7, 10, 15, 22])
            #expect(try a.gt(2).array(of: Bool.self) == [false, false, true, true])
            #expect(try a.clamp(min: 2, max: 3).floats() == [2, 2, 3, 3])
            #expect(try a.clamp(max: 1.5).floats() == [1, 1.5, 1.5, 1.5])
            #expect(try Tensor.where(a.gt(2), a, b).floats() == [10, 20, 3, 4])
            let e = try a.log().exp().floats()
            #expect(maxAbsDifference(e, [1, 2, 3, 4]) < 1e-5)
            #expect(try a.sqrt().square().floats().enumerated().allSatisfy { Swift.abs($1 - Float($0 + 1)) < 1e-5 })
        }

        @Test func reductions_overDimsAndAll() throws {
            let a = try Tensor([1, 5, 3, 4, 2, 6] as [Float], shape: [2, 3])
            #expect(try a.sum().item() == 21)
            #expect(try a.mean(dims: [1]).floats() == [3, 4])
            #expect(try a.sum(dims: [0], keepDim: true).shape == [1, 3])
            #expect(try a.max().item() == 6)
            #expect(try a.min(dims: [1]).floats() == [1, 2])
            #expect(try a.argmax(dim: 1).array(of: Int64.self) == [1, 2])
            #expect(try a.argmax().item() == 5)
            #expect(try a.prod(dim: 0).floats() == [4, 10, 18])
        }

        @Test func softmaxOneHot_matchPyTorchSemantics() throws {
            let logits = try Tensor([0, 0, 1, 3] as [Float], shape: [2, 2])
            let s = try logits.softmax(dim: 1).floats()
            #expect(Swift.abs(s[0] - 0.5) < 1e-6 && Swift.abs(s[2] + s[3] - 1) < 1e-6)
            let ls = try logits.logSoftmax(dim: 1).exp().floats()
            #expect(maxAbsDifference(ls, s) < 1e-6)
            let labels = try Tensor([0, 2, 1] as [Int64])
            let oh = try labels.oneHot(numClasses: 3)
            #expect(oh.shape == [3, 3] && oh.dtype == .int64)
            #expect(try oh.array(of: Int64.self) == [1, 0, 0, 0, 0, 1, 0, 1, 0])
        }

        @Test func convolution_2dAnd3d_shapesAndValues() throws {
            // A 3x3 all-ones kernel with zero padding sums each neighbourhood.
            let x = try Tensor.ones([1, 1, 4, 4])
            let w = try Tensor.ones([1, 1, 3, 3])
            let y = try x.conv(weight: w, bias: nil, stride: [1, 1], padding: [1, 1], dilation: [1, 1])
            #expect(try y.floats().prefix(4) == [4, 6, 6, 4])
            let x3 = try Tensor.randn([2, 4, 8, 8, 8])
            let conv = try Conv(spatialDims: 3, inChannels: 4, outChannels: 6, kernelSize: 3, stride: 2, padding: 1,
                                groups: 2)
            #expect(try conv(x3).shape == [2, 6, 4, 4, 4])
            let up = try Conv(spatialDims: 3, inChannels: 4, outChannels: 2, kernelSize: 3, stride: 2, padding: 1,
                              transposed: true, outputPadding: 1)
            #expect(up.weight.tensor.shape == [4, 2, 3, 3, 3])
            #expect(try up(x3).shape == [2, 2, 16, 16, 16])
            let dilated = try Conv(spatialDims: 2, inChannels: 1, outChannels: 1, kernelSize: 3, dilation: 2, bias: false)
            #expect(dilated.bias == nil)
            #expect(try dilated(Tensor.ones([1, 1, 9, 9])).shape == [1, 1, 5, 5])
        }

        @Test func norms_normalize() throws {
            let x = try Tensor.randn([2, 4, 6, 6, 6]).mul(3).add(5)
            let inorm = try InstanceNorm(numFeatures: 4)
            #expect(inorm.namedState().isEmpty)
            let y = try inorm(x)
            #expect(try Swift.abs(y.mean(dims: [2, 3, 4]).max().item()) < 1e-4)
            let gnorm = try GroupNorm(groups: 2, channels: 4)
            #expect(try Swift.abs(gnorm(x).mean().item()) < 1e-4)
            let lnorm = try LayerNorm(normalizedShape: [6])
            #expect(try Swift.abs(lnorm(x).mean(dims: [4]).max().item()) < 1e-4)
            #expect(throws: TorchError.self) { try GroupNorm(groups: 3, channels: 4) }
        }

        @Test func activations_andDropout() throws {
            let x = try Tensor([-2, -1, 0, 3] as [Float])
            #expect(try ReLU()(x).floats() == [0, 0, 0, 3])
            #expect(try LeakyReLU(slope: 0.5)(x).floats() == [-1, -0.5, 0, 3])
            #expect(try PReLU()(x).floats() == [-0.5, -0.25, 0, 3])
            #expect(maxAbsDifference(try x.sigmoid().floats(), [0.11920292, 0.26894143, 0.5, 0.95257413]) < 1e-6)
            let ones = try Tensor.ones([1000])
            let d = try Dropout(p: 0.5)
            let dropped = try d(ones).floats()
            #expect(dropped.contains(0) && dropped.contains(2))
            d.eval()
            #expect(try d(ones).floats() == [Float](repeating: 1, count: 1000))
            let channels = try Tensor.ones([1, 64, 4, 4])
            let cd = try Dropout(p: 0.5, channelwise: true)(channels).sum(dims: [2, 3]).floats()
            #expect(cd.allSatisfy { $0 == 0 || $0 == 32 })
        }

        @Test func interpolate_nearestTrilinearAndScale() throws {
            let x = try Tensor([1, 2, 3, 4] as [Float], shape: [1, 1, 2, 2])
            let n = try x.interpolate(scale: [2, 2], mode: .nearest)
            #expect(n.shape == [1, 1, 4, 4])
            #expect(try n.floats().prefix(4) == [1, 1, 2, 2])
            let b = try x.interpolate(size: [3, 3], mode: .bilinear, alignCorners: true)
            #expect(try b.floats() == [1, 1.5, 2, 2, 2.5, 3, 3, 3.5, 4])
            let v = try Tensor.randn([1, 2, 4, 4, 4])
            #expect(try v.interpolate(size: [8, 6, 5], mode: .trilinear, alignCorners: false).shape == [1, 2, 8, 6, 5])
            #expect(throws: TorchError.self) { try x.interpolate(size: [3, 3], mode: .nearest, alignCorners: true) }
        }

        @Test func gridSample_identityGrid_returnsInput() throws {
            let x = try Tensor.randn([1, 2, 5, 5])
            // Identity affine grid with align_corners: coordinates -1...1 over each axis, (x, y) order.
            var grid: [Float] = []
            for i in 0..<5 { for j in 0..<5 { grid += [Float(j) / 2 - 1, Float(i) / 2 - 1] } }
            let g = try Tensor(grid, shape: [1, 5, 5, 2])
            let y = try x.gridSample(grid: g, alignCorners: true)
            #expect(maxAbsDifference(try y.floats(), try x.floats()) < 1e-5)
        }

        @Test func pooling_andPadding() throws {
            let x = try Tensor((0..<16).map { Float($0) }, shape: [1, 1, 4, 4])
            #expect(try x.maxPool(kernel: [2, 2]).floats() == [5, 7, 13, 15])
            #expect(try x.avgPool(kernel: [2, 2]).floats() == [2.5, 4.5, 10.5, 12.5])
            #expect(try x.adaptiveAvgPool(outputSize: [1, 1]).floats() == [7.5])
            let v = try Tensor.randn([1, 1, 4, 4, 4])
            #expect(try v.maxPool(kernel: [2, 2, 2]).shape == [1, 1, 2, 2, 2])
            let row = try Tensor([1, 2, 3] as [Float], shape: [1, 1, 3])
            #expect(try row.pad([2, 1]).floats() == [0, 0, 1, 2, 3, 0])
            #expect(try row.pad([1, 1], mode: .constant(9)).floats() == [9, 1, 2, 3, 9])
            #expect(try row.pad([2, 2], mode: .reflect).floats() == [3, 2, 1, 2, 3, 2, 1])
            #expect(try row.pad([1, 2], mode: .replicate).floats() == [1, 1, 2, 3, 3, 3])
        }
    
        @Test func geluIndexSelectRoll_matchPyTorch() throws {
            // torch.nn.functional.gelu([-1, 0, 1, 2]) (exact form).
            let g = try Tensor([-1, 0, 1, 2] as [Float], shape: [4]).gelu().floats()
            #expect(maxAbsDifference(g, [-0.1586553, 0, 0.8413447, 1.9544997]) < 1e-6)
            let t = try Tensor([10, 20, 30, 40, 50, 60] as [Float], shape: [3, 2])
            let rows = try t.indexSelect(dim: 0, index: Tensor([2, 0, 2] as [Int64], shape: [3]))
            #expect(rows.shape == [3, 2])
            #expect(try rows.floats() == [50, 60, 10, 20, 50, 60])
            let row = try Tensor([1, 2, 3, 4, 5] as [Float], shape: [5])
            #expect(try row.roll(shift: 2, dim: 0).floats() == [4, 5, 1, 2, 3])
            #expect(try row.roll(shift: -1, dim: 0).floats() == [2, 3, 4, 5, 1])
            #expect(try row.roll(shift: 5, dim: -1).floats() == [1, 2, 3, 4, 5])
            #expect(try t.roll(shift: 1, dim: 1).floats() == [20, 10, 40, 30, 60, 50])
            #expect(throws: TorchError.self) { try row.roll(shift: 1, dim: 1) }
        }
    }
}
