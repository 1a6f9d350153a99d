import Foundation
import Imaging
import Testing
@testable import MONAILabel
import TorchKit

/// `SelfTest` (`monailabel selftest`) on the CPU: what passes here is what run.sh checks on a GPU host.
@Suite(.tags(.unit), .serialized) struct SelfTestTests {
    static let fixtures = NetworkFixtures.monai("")
    static let haveFixtures = FileManager.default.fileExists(atPath: NetworkFixtures.monai("manifest.json").path)

    /// A temporary fixtures folder of links to the real files, with `replaced` files written instead.
    static func fixtureCopy(replacing replaced: [String: Data]) throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("selftest-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        for name in try FileManager.default.contentsOfDirectory(atPath: fixtures.path) where replaced[name] == nil {
            try FileManager.default.createSymbolicLink(at: dir.appendingPathComponent(name),
                                                       withDestinationURL: fixtures.appendingPathComponent(name))
        }
        for (name, data) in replaced { try data.write(to: dir.appendingPathComponent(name)) }
        return dir
    }

    @Test(.enabled(if: haveFixtures, "needs ../shared/fixtures/monai"))
    func selfTest_onCPU_passesEveryCheckAndEveryFixture() throws {
        let report = SelfTest.run(device: "cpu", fixtures: Self.fixtures)
        #expect(report.passed, "\(report.table)")
        #expect(report.device == "cpu")
        let names = report.checks.map(\.name)
        #expect(names == ["backend", "tensor ops", "autograd step", "save/load"] + SelfTest.fixtureNetworks)
        #expect(report.table.hasSuffix("0 failed, 0 skipped - OK"))
    }

    @Test(.enabled(if: haveFixtures, "needs ../shared/fixtures/monai"))
    func selfTest_corruptedFixtureOutput_failsThatFixtureWithItsDifference() throws {
        let name = "unet_segmentation_spleen.output.npy"
        let original = try NPYArray.read(Self.fixtures.appendingPathComponent(name))
        var values = original.floats
        values[values.count / 2] += 0.5
        let corrupted = try NPYArray(shape: original.shape, data: .float32(values)).encoded()
        let dir = try Self.fixtureCopy(replacing: [name: corrupted])
        defer { try? FileManager.default.removeItem(at: dir) }
        let report = SelfTest.run(device: "cpu", fixtures: dir)
        #expect(!report.passed)
        let failed = report.checks.filter { $0.outcome == .failed }
        #expect(failed.map(\.name) == ["unet_segmentation_spleen"])
        #expect(failed.first?.detail.hasPrefix("cpu vs \(name): max |diff| 5.0e-01 > tolerance 1.0e-03") == true,
                "\(failed.first?.detail ?? "")")
        #expect(report.table.contains("FAIL  unet_segmentation_spleen"))
        #expect(report.table.hasSuffix("FAILED"))
    }

    @Test(.enabled(if: haveFixtures, "needs ../shared/fixtures/monai"))
    func selfTest_truncatedWeightsAndMissingInput_failWithTheFileNamed() throws {
        let weights = try Data(contentsOf: Self.fixtures.appendingPathComponent("dynunet_deepedit.small.pt"))
        let dir = try Self.fixtureCopy(replacing: ["dynunet_deepedit.small.pt": weights.prefix(1000)])
        defer { try? FileManager.default.removeItem(at: dir) }
        try FileManager.default.removeItem(at: dir.appendingPathComponent("segresnet_segmentation.input.npy"))
        let report = SelfTest.run(device: "cpu", fixtures: dir)
        let failed = Dictionary(uniqueKeysWithValues: report.checks.filter { $0.outcome == .failed }.map { ($0.name, $0.detail) })
        #expect(Set(failed.keys) == ["dynunet_deepedit", "segresnet_segmentation"])
        #expect(failed["segresnet_segmentation"] == "segresnet_segmentation.input.npy is missing")
        #expect(failed["dynunet_deepedit"]?.isEmpty == false)
        #expect(!report.passed)
    }

    @Test func selfTest_withoutFixtures_skipsTheNetworksVisibly() {
        let report = SelfTest.run(device: "cpu", fixtures: nil)
        #expect(report.passed, "\(report.table)")
        #expect(report.checks.last?.outcome == .skipped)
        #expect(report.table.contains("SKIP  fixtures"))
    }

    @Test func selfTest_missingManifest_failsSayingSo() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("selftest-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let report = SelfTest.run(device: "cpu", fixtures: dir)
        #expect(!report.passed)
        #expect(report.checks.last?.detail == "manifest.json is missing from the fixtures folder")
    }

    @Test(.enabled(if: !Torch.cudaIsAvailable, "this backend has a GPU"))
    func selfTest_cudaOnACPUOnlyBackend_failsNamingTheDevice() {
        let report = SelfTest.run(device: "cuda", fixtures: nil)
        #expect(!report.passed)
        #expect(report.checks.map(\.name) == ["device"])
        #expect(report.checks.first?.detail.hasPrefix("device 'cuda' asked for, but libtorch") == true)
    }

    @Test func selfTest_badDeviceOrTolerance_failsWithoutRunning() {
        let device = SelfTest.run(device: "tpu", fixtures: nil)
        #expect(device.checks.map(\.name) == ["device"])
        #expect(device.checks.first?.detail.hasPrefix("device 'tpu' is not a device name") == true)
        for bad in [0, -1, Double.nan, Double.infinity] {
            let report = SelfTest.run(device: "cpu", fixtures: nil, tolerance: bad)
            #expect(!report.passed)
            #expect(report.checks.map(\.name) == ["tolerance"])
        }
    }
}
