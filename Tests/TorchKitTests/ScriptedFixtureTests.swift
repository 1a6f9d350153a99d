import Foundation
import Testing
@testable import TorchKit

/// `torch.jit.script`ed MONAI networks, written by scripts/fixtures/make_scripted_fixtures.py (scripts/test-torch2.sh
/// runs it under torch 2.13 into .build/scripted-fixtures, or `$MONAILABEL_SCRIPTED_FIXTURES`).
enum ScriptedFixtures {
    static var folder: URL {
        if let p = ProcessInfo.processInfo.environment["MONAILABEL_SCRIPTED_FIXTURES"] { return URL(fileURLWithPath: p) }
        return URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent(".build/scripted-fixtures")
    }

    static var present: Bool {
        ["segresnet", "dynunet"].allSatisfy {
            FileManager.default.fileExists(atPath: folder.appendingPathComponent("\($0).scripted.ts").path)
        }
    }
}

extension TorchKitTests {
    @Suite struct ScriptedFixtureTests {
        /// Runs the scripted fixture `name` on its input: the max abs difference from PyTorch's output.
        static func difference(_ name: String) throws -> Float {
            let model = try ScriptModule(contentsOf: ScriptedFixtures.folder.appendingPathComponent("\(name).scripted.ts"))
            try model.eval()
            let input = try readFloatNpy(ScriptedFixtures.folder.appendingPathComponent("\(name).input.npy"))
            let expected = try readFloatNpy(ScriptedFixtures.folder.appendingPathComponent("\(name).output.npy"))
            let output = try Torch.withNoGrad { try model.forward(Tensor(input.values, shape: input.shape)) }
            guard output.shape == expected.shape else {
                throw FixtureError(description: "output shape \(output.shape), expected \(expected.shape)")
            }
            return maxAbsDifference(try output.floats(), expected.values)
        }

        /// libtorch 2.x loads what torch 2.x scripted and reproduces it.
        @Test(.enabled(if: ScriptedFixtures.present, "needs the scripted fixtures (scripts/test-torch2.sh makes them)"),
              .enabled(if: Torch.version.major >= 2, "libtorch 1.13: see scriptedFixture_onLibtorch1_loadsOrFailsCleanly"),
              arguments: ["segresnet", "dynunet"])
        func scriptedFixture_loadsAndMatchesPyTorchOutput(name: String) throws {
            let diff = try Self.difference(name)
            #expect(diff < 1e-4, "max abs difference \(diff)")
        }

        /// libtorch 1.13 may refuse a torch 2.x scripted archive (newer TorchScript operators or bytecode): a
        /// thrown TorchError with a message, never a crash; when it does load, it must match.
        @Test(.enabled(if: ScriptedFixtures.present, "needs the scripted fixtures (scripts/test-torch2.sh makes them)"),
              .enabled(if: Torch.version.major < 2, "libtorch 2.x: see scriptedFixture_loadsAndMatchesPyTorchOutput"),
              arguments: ["segresnet", "dynunet"])
        func scriptedFixture_onLibtorch1_loadsOrFailsCleanly(name: String) throws {
            do {
                let diff = try Self.difference(name)
                #expect(diff < 1e-4, "max abs difference \(diff)")
            } catch let error as TorchError {
                #expect(!error.message.isEmpty)
            }
        }
    }
}
