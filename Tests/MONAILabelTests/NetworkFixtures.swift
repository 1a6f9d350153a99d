import Foundation
@testable import MONAILabel
import TorchKit

/// Fixture access for the network tests (named apart from other suites' `Fixtures` helpers in this target).
enum NetworkFixtures {
    /// `<repo>/../shared`, or `$MONAILABEL_SHARED` when set.
    static var shared: URL {
        if let p = ProcessInfo.processInfo.environment["MONAILABEL_SHARED"] { return URL(fileURLWithPath: p) }
        return URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("shared")
    }

    static func monai(_ name: String) -> URL { shared.appendingPathComponent("fixtures/monai/\(name)") }

    struct Failure: Error, CustomStringConvertible { var description: String }

    /// `manifest.json`'s `full_state_dict` for `network`: (name, shape) in state-dict order.
    static func fullStateDict(_ network: String) throws -> [(String, [Int])] {
        let url = monai("manifest.json")
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw Failure(description: "missing fixture \(url.path)")
        }
        let root = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any]
        guard let networks = root?["networks"] as? [String: Any], let entry = networks[network] as? [String: Any],
              let list = entry["full_state_dict"] as? [[Any]]
        else { throw Failure(description: "manifest has no full_state_dict for \(network)") }
        return try list.map { pair in
            guard pair.count == 2, let name = pair[0] as? String, let shape = pair[1] as? [Int] else {
                throw Failure(description: "malformed manifest entry \(pair)")
            }
            return (name, shape)
        }
    }

    /// Reads the little-endian float32, C-order `.npy` files of the MONAI fixtures (test-only helper; the
    /// Imaging target owns the product reader).
    static func floatNpy(_ name: String) throws -> Tensor { try floatNpy(at: monai(name)) }

    /// `floatNpy` for a file anywhere.
    static func floatNpy(at url: URL) throws -> Tensor {
        let name = url.lastPathComponent
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw Failure(description: "missing fixture \(url.path)")
        }
        let data = try Data(contentsOf: url)
        guard data.count > 10, data.prefix(6) == Data([0x93] + Array("NUMPY".utf8)) else {
            throw Failure(description: "\(name) is not an .npy file")
        }
        let v1 = data[6] == 1
        let headerLength = v1 ? Int(data[8]) | Int(data[9]) << 8
            : Int(data[8]) | Int(data[9]) << 8 | Int(data[10]) << 16 | Int(data[11]) << 24
        let start = v1 ? 10 : 12
        let header = String(decoding: data[start..<(start + headerLength)], as: UTF8.self)
        guard header.contains("'descr': '<f4'"), header.contains("'fortran_order': False"),
              let open = header.range(of: "'shape': ("), let close = header[open.upperBound...].firstIndex(of: ")")
        else { throw Failure(description: "unsupported .npy header \(header)") }
        let shape = header[open.upperBound..<close].split(separator: ",").compactMap {
            Int($0.trimmingCharacters(in: .whitespaces))
        }
        let payload = data[(start + headerLength)...]
        let count = shape.reduce(1, *)
        guard payload.count == count * 4 else { throw Failure(description: "\(name): size does not match \(shape)") }
        let values = payload.withUnsafeBytes { raw in
            (0..<count).map { Float(bitPattern: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self).littleEndian) }
        }
        return try Tensor(values, shape: shape)
    }

    /// Runs `network` (weights taken from the traced `<fixture>.small.ts`, whose parameter names are the
    /// MONAI module's) on the fixture input, in eval mode, and returns the max abs difference from PyTorch's output.
    static func parity(_ network: Module & Layer, fixture: String) throws -> Double {
        let script = try ScriptModule(contentsOf: monai("\(fixture).small.ts"))
        try network.load(stateDict: script.stateDict(), strict: true)
        network.eval()
        let input = try floatNpy("\(fixture).input.npy")
        let expected = try floatNpy("\(fixture).output.npy")
        let output = try Torch.withNoGrad { try network(input) }
        guard output.shape == expected.shape else {
            throw Failure(description: "output shape \(output.shape), expected \(expected.shape)")
        }
        return try (output - expected).abs().max().item()
    }
}
