import Foundation
import Testing
@testable import TorchKit

extension TorchKitTests {
    @Suite struct ScriptModuleTests {
        /// The fixtures were traced by PyTorch 2.15; Debian's libtorch 1.13 reads them and reproduces the outputs.
        @Test(arguments: [
            "unet_segmentation_spleen", "segresnet_segmentation", "dynunet_deepedit", "basicunet_deepgrow_3d",
            "basicunet_deepgrow_2d",
        ])
        func tracedFixture_loadsAndMatchesPyTorchOutput(name: String) throws {
            let model = try ScriptModule(contentsOf: Fixtures.monai("\(name).small.ts"))
            try model.eval()
            let input = try readFloatNpy(Fixtures.monai("\(name).input.npy"))
            let expected = try readFloatNpy(Fixtures.monai("\(name).output.npy"))
            let output = try Torch.withNoGrad { try model.forward(Tensor(input.values, shape: input.shape)) }
            #expect(output.shape == expected.shape)
            let diff = maxAbsDifference(try output.floats(), expected.values)
            #expect(diff < 1e-3, "max abs difference \(diff)")
        }

        @Test func stateDict_ofTracedModule_usesTheModuleNames() throws {
            let model = try ScriptModule(contentsOf: Fixtures.monai("unet_segmentation_spleen.small.ts"))
            let state = try model.stateDict()
            let byName = Dictionary(state, uniquingKeysWith: { first, _ in first })
            #expect(byName["model.0.conv.unit0.conv.weight"]?.shape == [4, 1, 3, 3, 3])
            #expect(byName["model.0.conv.unit0.adn.N.num_batches_tracked"]?.dtype == .int64)
            #expect(byName["model.0.conv.unit0.adn.A.weight"]?.shape == [1])
            #expect(byName.count == state.count)
        }

        @Test func forward_wrongInputRank_throws() throws {
            let model = try ScriptModule(contentsOf: Fixtures.monai("unet_segmentation_spleen.small.ts"))
            let error = #expect(throws: TorchError.self) { try model.forward(Tensor.zeros([4, 4])) }
            #expect(error?.message.isEmpty == false)
        }
    }
}
