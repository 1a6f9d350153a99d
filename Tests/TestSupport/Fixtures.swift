import Foundation

/// Where the read-only fixtures live.
public enum Fixtures {
    /// `<repo>/../shared`, or `$MONAILABEL_SHARED` when set.
    public static var shared: URL {
        if let p = ProcessInfo.processInfo.environment["MONAILABEL_SHARED"] { return URL(fileURLWithPath: p) }
        return URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("shared")
    }
}

/// A fresh temporary directory, removed when the value is released.
public final class TempDir {
    public let url: URL
    public init() {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("mltest-" + UUID().uuidString)
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(at: url) }

    public func write(_ name: String, _ bytes: [UInt8]) -> URL {
        let u = url.appendingPathComponent(name)
        try? FileManager.default.createDirectory(at: u.deletingLastPathComponent(), withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: u.path, contents: Data(bytes))
        return u
    }
}
