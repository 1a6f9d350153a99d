import Foundation

enum Fixtures {
    /// `<repo>/../shared`, or `$MONAILABEL_SHARED` when set.
    static var shared: URL {
        if let p = ProcessInfo.processInfo.environment["MONAILABEL_SHARED"] { return URL(fileURLWithPath: p) }
        return URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("shared")
    }

    static func monai(_ name: String) -> URL { shared.appendingPathComponent("fixtures/monai/\(name)") }
}

struct FixtureError: Error, CustomStringConvertible {
    var description: String
}

/// Reads the little-endian float32, C-order `.npy` files the MONAI fixtures use. Test-only: the Imaging target
/// owns the real reader.
func readFloatNpy(_ url: URL) throws -> (shape: [Int], values: [Float]) {
    guard FileManager.default.fileExists(atPath: url.path) else {
        throw FixtureError(description: "missing fixture \(url.path)")
    }
    let data = try Data(contentsOf: url)
    guard data.count > 10, data.prefix(6) == Data([0x93] + Array("NUMPY".utf8)) else {
        throw FixtureError(description: "\(url.lastPathComponent) is not an .npy file")
    }
    let major = data[6]
    let headerLength: Int
    let headerStart: Int
    if major == 1 {
        headerLength = Int(data[8]) | Int(data[9]) << 8
        headerStart = 10
    } else {
        headerLength = Int(data[8]) | Int(data[9]) << 8 | Int(data[10]) << 16 | Int(data[11]) << 24
        headerStart = 12
    }
    let header = String(decoding: data[headerStart..<(headerStart + headerLength)], as: UTF8.self)
    guard header.contains("'descr': '<f4'"), header.contains("'fortran_order': False"),
          let open = header.range(of: "'shape': ("), let close = header[open.upperBound...].firstIndex(of: ")")
    else { throw FixtureError(description: "unsupported .npy header \(header)") }
    let shape = header[open.upperBound..<close].split(separator: ",").compactMap {
        Int($0.trimmingCharacters(in: .whitespaces))
    }
    let payload = data[(headerStart + headerLength)...]
    let count = shape.reduce(1, *)
    guard payload.count == count * 4 else {
        throw FixtureError(description: "\(url.lastPathComponent): \(payload.count) bytes for shape \(shape)")
    }
    let values = payload.withUnsafeBytes { raw in
        (0..<count).map { Float(bitPattern: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self).littleEndian) }
    }
    return (shape, values)
}

func maxAbsDifference(_ a: [Float], _ b: [Float]) -> Float {
    zip(a, b).reduce(0) { Swift.max($0, Swift.abs($1.0 - $1.1)) }
}

import Testing

/// Parent of every suite here. Serialized because libtorch's generator is global: seeded tests must not
/// interleave their draws with other tests'.
@Suite(.tags(.unit), .serialized) enum TorchKitTests {}
