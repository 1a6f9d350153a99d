import Foundation
import Testing
@testable import TorchKit

extension TorchKitTests {
    /// MONAI's UNet up-sampling (transposed, stride 2, kernel 3, padding 1, output padding 1) through ordinary
    /// convolutions, as `Conv.rewritten` prepares and `Conv.run(_:rewrite:)` computes it, gives libtorch's
    /// transposed convolution.
    @Suite struct TransposedFormTests {
        struct Case: CustomStringConvertible, Sendable {
            var dims: Int, form: TransposedRewrite.Form, outChannels: Int, bias = true, slope: Double? = nil
            var channelsLast = false
            var description: String {
                "\(dims)d \(form) ->\(outChannels)\(bias ? "" : " no bias")\(slope.map { " slope \($0)" } ?? "")"
                    + (channelsLast ? " channels-last" : "")
            }
        }

        static let cases: [Case] = [
            Case(dims: 3, form: .subpixel, outChannels: 2),
            Case(dims: 3, form: .phases, outChannels: 5),
            Case(dims: 3, form: .subpixel, outChannels: 3, bias: false, slope: 0.25),
            Case(dims: 3, form: .phases, outChannels: 2, slope: 0.1, channelsLast: true),
            Case(dims: 3, form: .subpixel, outChannels: 4, slope: -0.5, channelsLast: true),
            Case(dims: 2, form: .subpixel, outChannels: 2, slope: 0.25),
            Case(dims: 2, form: .phases, outChannels: 3, bias: false),
        ]

        static func up(_ dims: Int, _ outChannels: Int, bias: Bool) throws -> Conv {
            try Conv(spatialDims: dims, inChannels: 6, outChannels: outChannels, kernelSize: [3], stride: [2],
                     padding: [1], bias: bias, transposed: true, outputPadding: [1])
        }

        @Test(arguments: cases)
        func rewrittenForm_matchesTransposedConvolution(_ c: Case) throws {
            let conv = try Self.up(c.dims, c.outChannels, bias: c.bias)
            var x = try Tensor.randn([2, 6] + (c.dims == 3 ? [5, 7, 4] : [9, 6]))
            if c.channelsLast { x = try x.contiguous(channelsLast: true) }
            try Torch.withNoGrad {
                var expected = try conv(x)
                if let slope = c.slope { expected = try expected.leakyRelu(slope: slope) }
                let rewrite = try #require(try conv.rewritten(weight: conv.weight.tensor, bias: conv.bias?.tensor,
                                                              form: c.form))
                #expect(rewrite.form == c.form)
                let got = try conv.run(x, rewrite: rewrite, leakyReluSlope: c.slope)
                #expect(got.shape == expected.shape)
                let diff = try got.sub(expected).abs().max().item()
                #expect(diff < 1e-5, "\(c): max difference \(diff)")
            }
        }

        @Test func otherGeometries_andTheNativeForm_areNotRewritten() throws {
            let native = try Self.up(3, 2, bias: true)
            #expect(try native.rewritten(weight: native.weight.tensor, bias: nil, form: .native) == nil)
            let others = [
                try Conv(spatialDims: 3, inChannels: 2, outChannels: 2, kernelSize: [2], stride: [2], transposed: true),
                try Conv(spatialDims: 3, inChannels: 2, outChannels: 2, kernelSize: [3], stride: [1], padding: [1],
                         transposed: true),
                try Conv(spatialDims: 3, inChannels: 2, outChannels: 2, kernelSize: [3], stride: [2], padding: [1]),
                try Conv(spatialDims: 1, inChannels: 2, outChannels: 2, kernelSize: [3], stride: [2], padding: [1],
                         transposed: true, outputPadding: [1]),
            ]
            for conv in others {
                #expect(!conv.hasPhaseForms)
                #expect(try conv.rewritten(weight: conv.weight.tensor, bias: nil, form: .subpixel) == nil)
            }
        }

        @Test func rewrittenForm_withAutograd_throws() throws {
            let conv = try Self.up(3, 2, bias: true)
            let rewrite = try #require(try conv.rewritten(weight: conv.weight.tensor, bias: nil, form: .subpixel))
            #expect(throws: TorchError.self) { try conv.run(Tensor.randn([1, 6, 3, 3, 3]), rewrite: rewrite) }
        }

        /// On the CPU few output channels take the sub-pixel form; more take the phases where libtorch has no
        /// oneDNN transposed convolution (1.13) and libtorch's own on 2.x; other devices keep libtorch's own.
        @Test func preferredForm_followsOutputChannelsAndBackend() {
            #expect(Conv.preferredTransposedForm(outChannels: 2) == .subpixel)
            #expect(Conv.preferredTransposedForm(outChannels: 16) == (Torch.version.major >= 2 ? .native : .phases))
            #expect(Conv.preferredTransposedForm(outChannels: 2, device: .cuda(0)) == .native)
            Conv.$transposedForm.withValue(.native) { #expect(Conv.preferredTransposedForm(outChannels: 2) == .native) }
        }
    }
}
