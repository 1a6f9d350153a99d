import Foundation
import Testing

enum Fixtures {
    /// `<repo>/../shared`, or `$MONAILABEL_SHARED` when set.
    static var shared: URL {
        if let p = ProcessInfo.processInfo.environment["MONAILABEL_SHARED"] { return URL(fileURLWithPath: p) }
        return URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("shared")
    }

    /// A file under `fixtures/pipeline`; a missing fixture fails the test with its path.
    static func pipeline(_ name: String) throws -> URL {
        let url = shared.appendingPathComponent("fixtures/pipeline").appendingPathComponent(name)
        try #require(FileManager.default.fileExists(atPath: url.path), "missing fixture \(url.path)")
        return url
    }

    /// A fresh temporary directory, removed by the caller.
    static func tempDir() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("imaging-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }
}
