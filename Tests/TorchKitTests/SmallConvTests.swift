import Foundation
import Testing
@testable import TorchKit

extension TorchKitTests {
    /// The backend's own loops for convolutions with few channels (`Tensor.convSmall`, which `Conv` takes in
    /// inference) give libtorch's convolution.
    @Suite struct SmallConvTests {
        struct Case: CustomStringConvertible, Sendable {
            var inChannels: Int, outChannels: Int, kernel: [Int], padding: [Int], size: [Int]
            var bias = true, channelsLast = false
            var description: String {
                "\(inChannels)->\(outChannels) k\(kernel) p\(padding) \(size)\(bias ? "" : " no bias")\(channelsLast ? " channels-last" : "")"
            }
        }

        static let cases: [Case] = [
            Case(inChannels: 2, outChannels: 2, kernel: [3, 3, 3], padding: [1, 1, 1], size: [9, 14, 17]),
            Case(inChannels: 1, outChannels: 1, kernel: [3, 3, 3], padding: [0, 0, 0], size: [5, 6, 7]),
            Case(inChannels: 3, outChannels: 4, kernel: [1, 1, 1], padding: [0, 0, 0], size: [4, 5, 33], bias: false),
            Case(inChannels: 4, outChannels: 1, kernel: [5, 5, 5], padding: [2, 2, 2], size: [6, 9, 8]),
            Case(inChannels: 2, outChannels: 3, kernel: [3, 1, 2], padding: [1, 0, 1], size: [7, 4, 10]),
            Case(inChannels: 2, outChannels: 2, kernel: [3, 3, 3], padding: [3, 2, 1], size: [3, 3, 3]),
            Case(inChannels: 2, outChannels: 2, kernel: [3, 3, 3], padding: [1, 1, 1], size: [8, 9, 19], channelsLast: true),
            Case(inChannels: 2, outChannels: 2, kernel: [3, 3], padding: [1, 1], size: [13, 21]),
            Case(inChannels: 4, outChannels: 4, kernel: [2, 4], padding: [0, 2], size: [5, 40], bias: false),
        ]

        @Test(arguments: cases)
        func smallConvolution_matchesLibtorch(_ c: Case) throws {
            let dims = c.kernel.count
            let conv = try Conv(spatialDims: dims, inChannels: c.inChannels, outChannels: c.outChannels,
                                kernelSize: c.kernel, padding: c.padding, bias: c.bias)
            var x = try Tensor.randn([2, c.inChannels] + c.size)
            if c.channelsLast { x = try x.contiguous(channelsLast: true) }
            try Torch.withNoGrad {
                let expected = try Conv.$computesSmallDirectly.withValue(false) { try conv(x) }
                let direct = try x.convSmall(weight: conv.weight.tensor, bias: conv.bias?.tensor, padding: c.padding)
                #expect(direct.shape == expected.shape)
                let diff = try direct.sub(expected).abs().max().item()
                #expect(diff < 1e-5, "\(c): max difference \(diff)")
                // `Conv` takes it by default in inference.
                let viaConv = try conv(x)
                #expect(try viaConv.sub(direct).abs().max().item() == 0)
            }
        }

        @Test func smallConvolution_refusesWhatItDoesNotCompute() throws {
            let x = try Tensor.randn([1, 2, 4, 4, 4])
            let w = try Tensor.randn([2, 2, 3, 3, 3])
            try Torch.withNoGrad {
                // Too many channels, a dtype other than float32, a rank that does not match, negative padding.
                #expect(throws: TorchError.self) {
                    try Tensor.randn([1, 5, 4, 4, 4]).convSmall(weight: Tensor.randn([2, 5, 3, 3, 3]), bias: nil, padding: [1, 1, 1])
                }
                #expect(throws: TorchError.self) { try x.to(.float64).convSmall(weight: w.to(.float64), bias: nil, padding: [1, 1, 1]) }
                #expect(throws: TorchError.self) { try x.convSmall(weight: w, bias: nil, padding: [1, 1]) }
                #expect(throws: TorchError.self) { try x.convSmall(weight: w, bias: nil, padding: [1, -1, 1]) }
                #expect(throws: TorchError.self) {
                    try x.convSmall(weight: w, bias: Tensor.randn([3]), padding: [1, 1, 1])
                }
                // A kernel larger than the padded input.
                #expect(throws: TorchError.self) {
                    try Tensor.randn([1, 2, 2, 2, 2]).convSmall(weight: w, bias: nil, padding: [0, 0, 0])
                }
            }
            // With autograd on, a weight that requires grad is refused (and `Conv` takes libtorch's path).
            try w.setRequiresGrad(true)
            #expect(throws: TorchError.self) { try x.convSmall(weight: w, bias: nil, padding: [1, 1, 1]) }
        }

        /// Training still differentiates through the convolution: `Conv` leaves the direct loops alone with
        /// autograd on.
        @Test func conv_withAutograd_takesLibtorchsDifferentiablePath() throws {
            let conv = try Conv(spatialDims: 3, inChannels: 2, outChannels: 2, kernelSize: 3, padding: 1)
            let y = try conv(Tensor.randn([1, 2, 5, 5, 5]))
            try y.sum().backward()
            #expect(try conv.weight.tensor.grad() != nil)
        }
    }
}
