import Foundation
import Testing
import TestSupport
@testable import MONAILabel

/// `PUT /model` checks an upload before it replaces working weights; for TorchScript, garbage must be refused
/// before libtorch (which trusts what it loads) ever sees it.
@Suite(.tags(.unit)) struct ModelVerifyTests {
    static let scriptFixture = Fixtures.shared.appendingPathComponent("fixtures/monai/unet_segmentation_spleen.small.ts")
    static let checkpointFixture = Fixtures.shared.appendingPathComponent("fixtures/monai/unet_segmentation_spleen.small.pt")

    func expectInvalid(_ file: URL, as destination: URL, containing text: String) {
        let loader = ModelLoader(networkSpec: ["name": "UNet"], paths: [destination])
        #expect {
            try loader.verify(file, as: destination)
        } throws: { error in
            guard let e = error as? MONAILabelError else { return false }
            return e.kind == .invalidInput && e.message.contains(text)
        }
    }

    @Test func verify_garbageAsTorchScript_isRefusedWithoutLibtorch() {
        let tmp = TempDir()
        let garbage = tmp.write("up.bin", Array("definitely not a zip".utf8))
        expectInvalid(garbage, as: tmp.url.appendingPathComponent("m.ts"), containing: "not a TorchScript archive")
    }

    @Test(.enabled(if: FileManager.default.fileExists(atPath: checkpointFixture.path), "needs ../shared/fixtures"))
    func verify_checkpointAsTorchScript_isRefusedForLackingCode() {
        let tmp = TempDir()
        expectInvalid(Self.checkpointFixture, as: tmp.url.appendingPathComponent("m.ts"), containing: "code/")
    }

    @Test(.enabled(if: FileManager.default.fileExists(atPath: scriptFixture.path), "needs ../shared/fixtures"))
    func verify_realTorchScriptModule_passes() throws {
        let tmp = TempDir()
        let destination = tmp.url.appendingPathComponent("m.ts")
        try ModelLoader(networkSpec: [:], paths: [destination]).verify(Self.scriptFixture, as: destination)
    }
}
