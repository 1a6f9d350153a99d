import Foundation
import Testing
import TestSupport
@testable import TorchCheckpoint

/// Runs `scripts/check_checkpoint_python.py` on checkpoints we wrote. With a Python that has torch
/// (`$MONAILABEL_PYTHON`, `python3`, or Debian's `/usr/bin/python3` with `python3-torch`) PyTorch's own
/// `torch.load(weights_only=True)` must read them as expected; without one the script's no-torch path runs.
@Suite(.tags(.unit)) struct PythonInteropTests {
    private static func run(_ executable: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
        try runProcess(URL(fileURLWithPath: "/usr/bin/env"), [executable] + arguments)
    }

    private static func pythonWithTorch() -> String? {
        var candidates = ["python3", "/usr/bin/python3"]
        if let configured = ProcessInfo.processInfo.environment["MONAILABEL_PYTHON"] { candidates.insert(configured, at: 0) }
        return candidates.first { (try? run($0, ["-c", "import torch"]).status) == 0 }
    }

    /// Whether any `python3` is on the PATH; without one there is nothing to run the script with.
    static var hasPython3: Bool {
        (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":")
            .contains { FileManager.default.isExecutableFile(atPath: "\($0)/python3") }
    }

    @Test(.enabled(if: hasPython3, "needs python3 to run scripts/check_checkpoint_python.py"))
    func writeCheckpoint_readByPyTorchWeightsOnlyLoad_matches() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        var arguments = [Fixtures.repository.appendingPathComponent("scripts/check_checkpoint_python.py").path]

        for url in try Fixtures.monaiCheckpoints() {
            let copy = dir.file("ours-" + url.lastPathComponent)
            try Checkpoint.write(try Checkpoint.read(contentsOf: url), to: copy)
            arguments += ["--pair", copy.path, url.path]
        }

        var rng = SplitMix(seed: 7)
        let tensors: [(name: String, tensor: StoredTensor)] = StoredDType.allCases.map { dtype in
            var bytes = (0..<(12 * dtype.size)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            if dtype == .bool { bytes = bytes.map { $0 & 1 } }
            // Keep floating-point payloads finite and non-NaN so torch.equal-style checks stay meaningful.
            if dtype == .float16 || dtype == .bfloat16 { for i in stride(from: 1, to: bytes.count, by: 2) { bytes[i] &= 0x3F } }
            if dtype == .float32 { for i in stride(from: 3, to: bytes.count, by: 4) { bytes[i] &= 0x3F } }
            if dtype == .float64 { for i in stride(from: 7, to: bytes.count, by: 8) { bytes[i] &= 0x3F } }
            return ("net.\(dtype.rawValue)", StoredTensor(dtype: dtype, shape: [3, 4], bytes: bytes))
        } + [("net.scalar", StoredTensor(dtype: .int64, shape: [], bytes: le(123_456_789_012, 8)))]
        let synthetic = dir.file("ours-synthetic.pt")
        // Torch 1.13's weights-only loader has no float opcode, so plain values here avoid floats.
        try Checkpoint.write(stateDict: tensors, key: "model", extra: [
            ("epoch", .int(7)), ("big", .int(1 << 40)), ("name", .string("spleen")),
            ("flags", .list([.bool(true), .bool(false), .none])), ("shape", .tuple([.int(1), .int(2), .int(3)])),
        ], to: synthetic)
        let expect: [String: Any] = [
            "key": "model",
            "tensors": tensors.map { [$0.name, $0.tensor.dtype.rawValue, $0.tensor.shape, SHA256.hex($0.tensor.bytes)] as [Any] },
            "plain": ["epoch": 7, "big": 1 << 40, "name": "spleen", "flags": [true, false, NSNull()], "shape": [1, 2, 3]] as [String: Any],
        ]
        let expectFile = dir.file("synthetic.json")
        try JSONSerialization.data(withJSONObject: expect).write(to: expectFile)
        arguments += ["--expect", synthetic.path, expectFile.path]

        if let python = Self.pythonWithTorch() {
            let (status, output) = try Self.run(python, arguments)
            #expect(status == 0, "\(output)")
            #expect(output.contains("OK: torch"), "\(output)")
            #expect(output.contains("read 11 checkpoints"), "\(output)")
        } else {
            let (status, output) = try Self.run("python3", arguments)
            #expect(status == 0, "\(output)")
            #expect(output.contains("torch is not available"), "\(output)")
        }
    }
}
