import Foundation
import Testing
import Imaging
import TestSupport
@testable import DICOM

/// A fresh temporary directory removed when the value is released.
final class TempDir: @unchecked Sendable {
    let url: URL
    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("dicomtests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(at: url) }
    func sub(_ name: String) -> URL { url.appendingPathComponent(name) }
}

/// An oblique RAS affine: rotation about a tilted axis, anisotropic spacing, arbitrary origin.
func obliqueAffine(spacing: [Double] = [0.7, 0.9, 2.5], origin: [Double] = [-101.5, 37.25, -250.125]) -> Affine {
    // Rotation from a unit quaternion (normalised below).
    var q = [0.9, 0.2, -0.3, 0.25]
    let qn = (q.map { $0 * $0 }.reduce(0, +)).squareRoot()
    q = q.map { $0 / qn }
    let (w, x, y, z) = (q[0], q[1], q[2], q[3])
    let r = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ]
    var m = [Double](repeating: 0, count: 16)
    for row in 0..<3 {
        for col in 0..<3 { m[row * 4 + col] = r[row][col] * spacing[col] }
        m[row * 4 + 3] = origin[row]
    }
    m[15] = 1
    return Affine(m)
}

/// A CT-like int16 volume of `shape` with structured plus random values in [-1024, 2000].
func syntheticCT(shape: [Int], affine: Affine = obliqueAffine(), seed: UInt64 = 1) -> Volume {
    var rng = SplitMix(seed: seed)
    let (a, b, c) = (shape[0], shape[1], shape[2])
    var v = [Int16](repeating: 0, count: a * b * c)
    for i in 0..<a {
        for j in 0..<b {
            for k in 0..<c {
                let base = (i * 7 + j * 3 + k * 11) % 900 - 1024
                v[(i * b + j) * c + k] = Int16(base + Int(rng.next() % 500))
            }
        }
    }
    return Volume(spatialShape: shape, data: .int16(v), affine: affine)
}

func maxAffineDifference(_ a: Affine, _ b: Affine) -> Double {
    zip(a.m, b.m).map { abs($0 - $1) }.max() ?? .infinity
}

func maxValueDifference(_ a: Volume, _ b: Volume) -> Double {
    zip(a.data.asDouble(), b.data.asDouble()).map { abs($0 - $1) }.max() ?? .infinity
}

extension Trait where Self == ConditionTrait {
    /// Runs the test only where every one of `tools` is on PATH; otherwise it is reported as skipped.
    static func needsTools(_ tools: String..., installedBy script: String) -> Self {
        .enabled(if: tools.allSatisfy { which($0) != nil }, "needs \(tools.joined(separator: ", ")) on PATH (\(script))")
    }
}

/// dciodvfy's findings for a file: the IOD it recognised (its other output lines) and its "Error" and "Warning"
/// lines. Tests that call it carry `.needsTools("dciodvfy", ...)`.
func dciodvfy(_ file: URL) throws -> (iod: [String], errors: [String], warnings: [String]) {
    let tool = try #require(which("dciodvfy"))
    let (_, output) = try runProcess(tool, ["-new", file.path])
    let lines = output.split(separator: "\n").map(String.init)
    let errors = lines.filter { $0.hasPrefix("Error") }, warnings = lines.filter { $0.hasPrefix("Warning") }
    return (lines.filter { !$0.hasPrefix("Error") && !$0.hasPrefix("Warning") }, errors, warnings)
}
