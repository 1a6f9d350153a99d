import Foundation
import Testing
@testable import TorchKit

extension TorchKitTests {
    @Suite struct ErrorTests {
        @Test func conv_channelMismatch_throwsLibtorchMessage() throws {
            let x = try Tensor.randn([1, 3, 8, 8, 8])
            let conv = try Conv(spatialDims: 3, inChannels: 2, outChannels: 4, kernelSize: 3)
            let error = #expect(throws: TorchError.self) { try conv(x) }
            #expect(error?.operation == "conv")
            // libtorch: "Given groups=1, weight of size [4, 2, 3, 3, 3], expected input[1, 3, 8, 8, 8] to have 2
            // channels, but got 3 channels instead"
            #expect(error?.message.contains("expected input[1, 3, 8, 8, 8] to have 2 channels") == true,
                    "\(error?.message ?? "")")
            // The message carries no C++ backtrace.
            #expect(error?.message.contains("Exception raised from") == false)
        }

        @Test func binary_incompatibleShapes_throws() throws {
            let error = #expect(throws: TorchError.self) { try Tensor.ones([2, 3]) + Tensor.ones([4]) }
            #expect(error?.message.contains("must match the size") == true, "\(error?.message ?? "")")
        }

        @Test func backward_ofNonScalar_throws() throws {
            let x = try Tensor.ones([3])
            try x.setRequiresGrad(true)
            let y = try x * 2
            let error = #expect(throws: TorchError.self) { try y.backward() }
            #expect(error?.message.contains("scalar outputs") == true, "\(error?.message ?? "")")
        }

        @Test func scriptModule_garbageFile_throwsClearError() throws {
            let url = FileManager.default.temporaryDirectory.appendingPathComponent("not-a-model-\(UUID()).ts")
            try Data("this is not a TorchScript archive".utf8).write(to: url)
            defer { try? FileManager.default.removeItem(at: url) }
            let error = #expect(throws: TorchError.self) { try ScriptModule(contentsOf: url) }
            #expect(error?.message.isEmpty == false)
            #expect(error?.operation.contains(url.lastPathComponent) == true)
        }

        @Test func scriptModule_missingFile_throws() {
            let url = URL(fileURLWithPath: "/nonexistent/model-\(UUID()).ts")
            let error = #expect(throws: TorchError.self) { try ScriptModule(contentsOf: url) }
            #expect(error?.message.isEmpty == false)
        }
    }
}
