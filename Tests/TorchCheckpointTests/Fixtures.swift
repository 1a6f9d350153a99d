import Foundation

enum Fixtures {
    /// `<repo>/../shared`, or `$MONAILABEL_SHARED` when set.
    static var shared: URL {
        if let p = ProcessInfo.processInfo.environment["MONAILABEL_SHARED"] { return URL(fileURLWithPath: p) }
        return URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("shared")
    }

    static var monai: URL { shared.appendingPathComponent("fixtures/monai") }

    /// The repository root (for scripts).
    static var repository: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    /// A file from this target's `Resources/`.
    static func resource(_ name: String) throws -> URL {
        guard let url = Bundle.module.url(forResource: "Resources/" + name, withExtension: nil) else {
            throw FixtureMissing(path: "Tests/TorchCheckpointTests/Resources/" + name)
        }
        return url
    }

    /// Every `*.small.pt` and `*.small.ckpt.pt` in the MONAI fixtures, sorted by name.
    static func monaiCheckpoints() throws -> [URL] {
        let names = try FileManager.default.contentsOfDirectory(atPath: monai.path)
        return names.filter { $0.hasSuffix(".small.pt") || $0.hasSuffix(".small.ckpt.pt") }.sorted()
            .map { monai.appendingPathComponent($0) }
    }
}

struct FixtureMissing: Error, CustomStringConvertible {
    var path: String
    var description: String { "missing fixture \(path)" }
}

/// A fresh directory under the system temporary directory, removed by `cleanup()`.
struct TemporaryDirectory {
    let url: URL

    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("ckpt-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    func file(_ name: String) -> URL { url.appendingPathComponent(name) }

    func cleanup() { try? FileManager.default.removeItem(at: url) }
}
