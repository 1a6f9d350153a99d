import ArgumentParser
import Foundation
import MONAILabel

/// `monailabel selftest`: the backend and network checks of `SelfTest` on one device, as a table; exits 1 when
/// any check fails (the GPU check's run.sh runs it before benchmarking a host).
struct SelfTestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "selftest",
        abstract: "Check the libtorch backend on a device against the CPU and the network fixtures.",
        discussion: "Tensor ops, an autograd step and a checkpoint round trip on the device against the CPU; with "
            + "--fixtures, the small MONAI network fixtures (manifest.json, <name>.small.pt, .input.npy, .output.npy) "
            + "on the CPU and the device against PyTorch's outputs. CUDA runs with TF32 off.")

    @Option(name: .long, help: "Device to check: cpu, cuda or cuda:N.")
    var device = "cpu"

    @Option(name: .long, help: "Folder of the MONAI network fixtures (e.g. ../shared/fixtures/monai).")
    var fixtures: String?

    @Option(name: .long, help: "Largest absolute difference allowed, device vs CPU and vs a fixture.")
    var tolerance = SelfTest.defaultTolerance

    func validate() throws {
        guard tolerance.isFinite, tolerance > 0 else { throw ValidationError("--tolerance must be a positive number") }
    }

    func run() throws {
        let folder = fixtures.map { URL(fileURLWithPath: $0).standardizedFileURL }
        let report = SelfTest.run(device: device, fixtures: folder, tolerance: tolerance)
        print(report.table)
        if !report.passed { throw ExitCode(1) }
    }
}
