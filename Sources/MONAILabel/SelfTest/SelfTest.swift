import Foundation
import Imaging
import MONAILabelCore
import TorchCheckpoint
import TorchKit

/// `monailabel selftest`: checks that the loaded libtorch backend computes on a device what it computes on the
/// CPU, and that the MONAI networks this server builds reproduce PyTorch's outputs there. Meant for a new host
/// (a GPU box with a backend compiled against its own torch) before it serves: tensor ops, an autograd step,
/// a checkpoint save/load round trip, and the small network fixtures of `fixtures/monai` (weights `.small.pt`,
/// input `.input.npy`, PyTorch's output `.output.npy`), each compared device against CPU and against the
/// fixture. CUDA runs with TF32 off, so float32 results agree to rounding rather than to TF32's 10-bit mantissa.
public enum SelfTest {
    /// One line of the report.
    public struct Check: Sendable, Equatable {
        public enum Outcome: String, Sendable {
            case passed = "PASS", failed = "FAIL", skipped = "SKIP"
        }

        /// What was checked (`tensor ops`, or the fixture's name).
        public var name: String
        public var outcome: Outcome
        /// What was measured, or why the check failed or was skipped.
        public var detail: String

        public var passed: Bool { outcome == .passed }
    }

    /// The outcome of a run.
    public struct Report: Sendable {
        /// The device the checks ran on (as libtorch names it, e.g. `cuda:0`), or the name asked for when it
        /// could not be used.
        public var device: String
        public var tolerance: Double
        public var checks: [Check]

        /// No check failed and at least one passed (skipped ones are listed but do not fail the run).
        public var passed: Bool { checks.contains(where: \.passed) && !checks.contains { $0.outcome == .failed } }

        /// The report as the CLI prints it: a heading, one `PASS`/`FAIL` line per check, a summary.
        public var table: String {
            let width = max(12, checks.map(\.name.count).max() ?? 0)
            var lines = ["selftest on \(device), tolerance \(SelfTest.format(tolerance))"]
            for c in checks {
                let name = c.name.padding(toLength: width, withPad: " ", startingAt: 0)
                lines.append("\(c.outcome.rawValue)  \(name)  \(c.detail)")
            }
            let count = { (o: Check.Outcome) in checks.filter { $0.outcome == o }.count }
            lines.append("selftest: \(count(.passed)) passed, \(count(.failed)) failed, \(count(.skipped)) skipped - "
                + (passed ? "OK" : "FAILED"))
            return lines.joined(separator: "\n")
        }
    }

    /// The network fixtures the self-test runs, one per network family the radiology app serves.
    public static let fixtureNetworks = [
        "unet_segmentation_spleen", "basicunet_deepgrow_2d", "basicunet_deepgrow_3d", "dynunet_deepedit",
        "segresnet_segmentation",
    ]

    /// The default largest absolute difference allowed, device against CPU and against a fixture's output.
    public static let defaultTolerance = 1e-3

    /// Runs every check on `device` (`cpu`, `cuda`, `cuda:N`); with `fixtures` (a folder holding `manifest.json`
    /// and the fixture files) also the network fixtures. Never throws: a check that cannot run fails with the
    /// reason. Loads the backend first; call it from one thread (it changes the process's TF32 setting and
    /// seeds libtorch's generator for its duration).
    public static func run(device name: String, fixtures: URL?, tolerance: Double = defaultTolerance) -> Report {
        var report = Report(device: name, tolerance: tolerance, checks: [])
        guard tolerance.isFinite, tolerance > 0 else {
            report.checks.append(Check(name: "tolerance", outcome: .failed,
                                       detail: "tolerance must be a positive number, got \(tolerance)"))
            return report
        }
        do {
            try Torch.loadBackend()
        } catch {
            report.checks.append(Check(name: "backend", outcome: .failed, detail: "\(error)"))
            return report
        }
        let device: Device
        do {
            device = try resolve(name)
        } catch {
            report.checks.append(Check(name: "device", outcome: .failed, detail: "\(error)"))
            return report
        }
        report.device = device.description
        report.checks.append(Check(
            name: "backend", outcome: .passed,
            detail: "libtorch \(Torch.versionString); devices " + Device.available.map(\.description).joined(separator: ", ")))
        // TF32 rounds float32 matmul/conv inputs to 10 mantissa bits on Ampere and later GPUs: off, or CUDA could
        // not be compared with the CPU at 1e-3. Restored afterwards so an embedding process keeps its setting.
        let previousTF32: Bool
        do {
            previousTF32 = try Torch.setAllowTF32(false)
        } catch {
            report.checks.append(Check(name: "TF32 off", outcome: .failed, detail: "\(error)"))
            return report
        }
        defer { _ = try? Torch.setAllowTF32(previousTF32) }
        let context = Context(device: device, tolerance: tolerance)
        report.checks.append(check("tensor ops") { try context.tensorOps() })
        report.checks.append(check("autograd step") { try context.autogradStep() })
        report.checks.append(check("save/load") { try context.saveLoadRoundTrip() })
        if let fixtures {
            let manifest: JSONValue
            do {
                let url = fixtures.appendingPathComponent("manifest.json")
                guard FileOps.isRegularFile(url.path) else {
                    throw SelfTestFailure("manifest.json is missing from the fixtures folder")
                }
                manifest = try JSONValue.parse(Data(contentsOf: url))
            } catch {
                report.checks.append(Check(name: "fixtures", outcome: .failed, detail: "\(error)"))
                return report
            }
            for network in fixtureNetworks {
                report.checks.append(check(network) { try context.fixture(network, in: fixtures, manifest: manifest) })
            }
        } else {
            report.checks.append(Check(name: "fixtures", outcome: .skipped,
                                       detail: "no fixtures folder given (--fixtures DIR): network checks not run"))
        }
        return report
    }

    /// `cuda` means a GPU here: unlike a request's `device`, a self-test asked to check CUDA must not quietly
    /// check the CPU of a CPU-only backend.
    static func resolve(_ name: String) throws -> Device {
        if name.hasPrefix("cuda"), !Torch.cudaIsAvailable {
            throw SelfTestFailure("device '\(name.prefix(40))' asked for, but libtorch \(Torch.versionString) of this "
                + "backend has no CUDA device (a CPU-only build, or no GPU visible)")
        }
        do {
            return try Device(parsing: name)
        } catch {
            throw SelfTestFailure(error.message)
        }
    }

    private static func check(_ name: String, _ body: () throws -> String) -> Check {
        do {
            return Check(name: name, outcome: .passed, detail: try body())
        } catch let failure as SelfTestFailure {
            return Check(name: name, outcome: .failed, detail: failure.message)
        } catch {
            return Check(name: name, outcome: .failed, detail: "error: \(error)")
        }
    }

    static func format(_ value: Double) -> String { String(format: "%.1e", value) }
}

/// Why a check failed, in words for the report's line.
struct SelfTestFailure: Error, CustomStringConvertible {
    let message: String
    init(_ message: String) { self.message = message }
    var description: String { message }
}

extension SelfTest {
    /// The checks' shared state: the device and the tolerance.
    struct Context {
        let device: Device
        let tolerance: Double

        private var subject: String { device == .cpu ? "cpu (a second run)" : device.description }

        /// Largest absolute difference between two tensors of the same shape, on the CPU.
        func difference(_ a: Tensor, _ b: Tensor, _ what: String) throws -> Double {
            guard a.shape == b.shape else {
                throw SelfTestFailure("\(what): shape \(a.shape) vs \(b.shape)")
            }
            let d = try (a.to(.cpu) - b.to(.cpu)).abs().max().item()
            guard d.isFinite else { throw SelfTestFailure("\(what): the difference is not finite (NaN or infinity)") }
            return d
        }

        /// `difference`, failing the check when it exceeds the tolerance.
        func expectClose(_ a: Tensor, _ b: Tensor, _ what: String) throws -> Double {
            let d = try difference(a, b, what)
            guard d <= tolerance else {
                throw SelfTestFailure("\(what): max |diff| \(SelfTest.format(d)) > tolerance \(SelfTest.format(tolerance))")
            }
            return d
        }

        func expectOnDevice(_ t: Tensor, _ what: String) throws {
            guard t.device == device else { throw SelfTestFailure("\(what) ran on \(t.device), not \(device)") }
        }

        /// A handful of the kernels the networks use (matmul, 3-D convolution, normalisation, pooling,
        /// interpolation, softmax, reductions), computed on the device and on the CPU from the same inputs.
        func tensorOps() throws -> String {
            Torch.manualSeed(7)
            let a = try Tensor.randn([64, 48]), b = try Tensor.randn([48, 32])
            let x = try Tensor.randn([2, 3, 12, 12, 12]), w = try Tensor.randn([4, 3, 3, 3, 3]), bias = try Tensor.randn([4])
            func ops(_ a: Tensor, _ b: Tensor, _ x: Tensor, _ w: Tensor, _ bias: Tensor) throws -> [(String, Tensor)] {
                let conv = try x.conv(weight: w, bias: bias, stride: [1, 1, 1], padding: [1, 1, 1], dilation: [1, 1, 1])
                return [
                    ("matmul", try a.matmul(b)),
                    ("conv3d", conv),
                    ("instance norm", try conv.instanceNorm(weight: nil, bias: nil, runningMean: nil, runningVar: nil,
                                                             useInputStats: true, momentum: 0.1, eps: 1e-5)),
                    ("max pool", try conv.maxPool(kernel: [2, 2, 2])),
                    ("trilinear resize", try conv.interpolate(size: [20, 20, 20], mode: .trilinear, alignCorners: false)),
                    ("softmax", try conv.softmax(dim: 1)),
                    ("sum", try conv.sum(dims: [2, 3, 4])),
                ]
            }
            let reference = try ops(a, b, x, w, bias)
            let moved = try ops(a.to(device), b.to(device), x.to(device), w.to(device), bias.to(device))
            var worst = 0.0
            for ((name, r), (_, m)) in zip(reference, moved) {
                try expectOnDevice(m, name)
                worst = Swift.max(worst, try expectClose(m, r, "\(name) on \(device) vs cpu"))
            }
            return "\(reference.count) ops on \(subject) vs cpu: max |diff| \(SelfTest.format(worst))"
        }

        /// A small 3-D UNet with batch norm, the same weights on the CPU and the device: one forward, loss,
        /// backward and SGD step on each; loss, gradients and updated weights must agree, and the step must move
        /// the weights.
        func autogradStep() throws -> String {
            Torch.manualSeed(11)
            func make() throws -> UNet {
                try UNet(spatialDims: 3, inChannels: 1, outChannels: 2, channels: [4, 8, 16], strides: [2, 2],
                         numResUnits: 1, norm: .batch)
            }
            let cpuNet = try make(), deviceNet = try make()
            try deviceNet.load(stateDict: cpuNet.stateDict(), strict: true)
            try deviceNet.to(device)
            let x = try Tensor.randn([2, 1, 16, 16, 16]), target = try Tensor.rand([2, 2, 16, 16, 16])
            let before = try cpuNet.namedParameters().map { try $0.parameter.tensor.detach().clone() }
            func step(_ net: UNet, _ x: Tensor, _ target: Tensor) throws -> Tensor {
                net.train()
                let optimizer = try SGD(parameters: net.namedParameters().map(\.parameter.tensor), lr: 0.5)
                try optimizer.zeroGrad()
                let loss = try Torch.withGrad { () throws -> Tensor in
                    let loss = try (net(x).sigmoid() - target).square().mean()
                    try loss.backward()
                    return loss
                }
                try optimizer.step()
                return try loss.detach()
            }
            let cpuLoss = try step(cpuNet, x, target)
            let deviceLoss = try step(deviceNet, x.to(device), target.to(device))
            try expectOnDevice(deviceLoss, "the loss")
            var worst = try expectClose(deviceLoss, cpuLoss, "loss on \(device) vs cpu")
            var moved = 0.0
            for ((name, c), ((_, d), b)) in zip(cpuNet.namedParameters(), zip(deviceNet.namedParameters(), before)) {
                guard let cg = try c.tensor.grad(), let dg = try d.tensor.grad() else {
                    throw SelfTestFailure("\(name) has no gradient after backward")
                }
                worst = Swift.max(worst, try expectClose(dg, cg, "gradient of \(name) on \(device) vs cpu"))
                worst = Swift.max(worst, try expectClose(d.tensor, c.tensor, "\(name) after the step on \(device) vs cpu"))
                moved = Swift.max(moved, try difference(c.tensor, b, name))
            }
            guard moved > 0 else { throw SelfTestFailure("the SGD step changed no weight") }
            return "loss, gradients, stepped weights on \(subject) vs cpu: max |diff| \(SelfTest.format(worst))"
        }

        /// The device network's weights written as a MONAI Label checkpoint and read back into a fresh network:
        /// the bytes must be identical and the reloaded network must give the same output on the device.
        func saveLoadRoundTrip() throws -> String {
            Torch.manualSeed(13)
            let net = try UNet(spatialDims: 3, inChannels: 1, outChannels: 2, channels: [4, 8, 16], strides: [2, 2],
                               numResUnits: 1, norm: .batch)
            try net.to(device)
            net.eval()
            let directory = FileManager.default.temporaryDirectory
                .appendingPathComponent("monailabel-selftest-\(UUID().uuidString)")
            try FileOps.makeDirectory(directory)
            defer { try? FileManager.default.removeItem(at: directory) }
            let file = directory.appendingPathComponent("model.pt")
            let saved = try net.stateDict()
            try Checkpoint.write(stateDict: saved.map { (name: $0.0, tensor: $0.1) }, key: "model", to: file)
            let loaded = try Checkpoint.stateDict(from: file, key: "model")
            guard loaded.map(\.name) == saved.map(\.0) else { throw SelfTestFailure("the reloaded state dict's names differ") }
            for (s, l) in zip(saved, loaded) where s.1 != l.tensor {
                throw SelfTestFailure("\(s.0) changed in the round trip")
            }
            let copy = try UNet(spatialDims: 3, inChannels: 1, outChannels: 2, channels: [4, 8, 16], strides: [2, 2],
                                numResUnits: 1, norm: .batch)
            try copy.load(stateDict: loaded.map { ($0.name, $0.tensor) }, strict: true)
            try copy.to(device)
            copy.eval()
            let x = try Tensor.randn([1, 1, 16, 16, 16], device: device)
            let (a, b) = try Torch.withNoGrad { (try net(x), try copy(x)) }
            let d = try expectClose(b, a, "reloaded network on \(device)")
            return "\(saved.count) tensors through a checkpoint file, identical; output max |diff| \(SelfTest.format(d))"
        }

        /// One network fixture: built from the manifest's `small_kwargs`, weights from `<name>.small.pt`, run in
        /// eval mode on the CPU (against `<name>.output.npy`) and on the device (against the CPU and the file).
        func fixture(_ name: String, in folder: URL, manifest: JSONValue) throws -> String {
            guard let entry = manifest["networks"]?[name], let cls = entry["class"]?.stringValue,
                  var spec = entry["small_kwargs"]?.objectValue
            else { throw SelfTestFailure("manifest.json has no small_kwargs/class for \(name)") }
            spec["name"] = .string(String(cls.split(separator: ".").last ?? Substring(cls)))
            func file(_ suffix: String) throws -> URL {
                let url = folder.appendingPathComponent(name + suffix)
                guard FileOps.isRegularFile(url.path) else { throw SelfTestFailure("\(name + suffix) is missing") }
                return url
            }
            let weights = try Checkpoint.stateDict(from: try file(".small.pt"), key: "model")
            func load(_ suffix: String) throws -> Tensor {
                let array: NPYArray
                do { array = try NPYArray.read(try file(suffix)) } catch let e as SelfTestFailure { throw e } catch {
                    throw SelfTestFailure("\(name + suffix) is not a readable .npy file: \(error)")
                }
                let values = array.floats
                guard values.allSatisfy(\.isFinite) else { throw SelfTestFailure("\(name + suffix) holds NaN or infinity") }
                return try Tensor(values, shape: array.shape)
            }
            let input = try load(".input.npy"), expected = try load(".output.npy")
            func output(on device: Device) throws -> Tensor {
                let net = try NetworkFactory.make(spec)
                try net.load(stateDict: weights.map { ($0.name, $0.tensor) }, strict: true)
                try net.to(device)
                net.eval()
                return try Torch.withNoGrad { try net(input.to(device)) }
            }
            let cpu = try output(on: .cpu)
            let cpuVsFile = try expectClose(cpu, expected, "cpu vs \(name).output.npy")
            guard device != .cpu else {
                return "cpu vs \(name).output.npy: max |diff| \(SelfTest.format(cpuVsFile))"
            }
            let onDevice = try output(on: device)
            try expectOnDevice(onDevice, "the network")
            let deviceVsCPU = try expectClose(onDevice, cpu, "\(device) vs cpu")
            let deviceVsFile = try expectClose(onDevice, expected, "\(device) vs \(name).output.npy")
            return "cpu vs file \(SelfTest.format(cpuVsFile)); \(device) vs cpu \(SelfTest.format(deviceVsCPU)); "
                + "\(device) vs file \(SelfTest.format(deviceVsFile))"
        }
    }
}
