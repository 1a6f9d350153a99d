import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Log levels, in upstream's (Python logging's) names.
public enum LogLevel: Int, Sendable, Comparable, CaseIterable {
    case debug = 10, info = 20, warning = 30, error = 40

    public var name: String {
        switch self {
        case .debug: return "DEBUG"
        case .info: return "INFO"
        case .warning: return "WARNING"
        case .error: return "ERROR"
        }
    }

    public init?(name: String) {
        guard let l = LogLevel.allCases.first(where: { $0.name == name.uppercased() }) else { return nil }
        self = l
    }

    public static func < (a: LogLevel, b: LogLevel) -> Bool { a.rawValue < b.rawValue }
}

/// The server's log: lines on stderr and in `<app>/logs/app.log` (what `GET /logs/` serves), rotated at 10 MB
/// keeping 10 old files like upstream's RotatingFileHandler.
public final class Logger: @unchecked Sendable {
    public let file: URL?
    public let level: LogLevel
    private let echo: Bool
    private let maxBytes: Int
    private let backups: Int
    private let lock = NSLock()
    private var fd: Int32 = -1
    private var size = 0

    public init(file: URL?, level: LogLevel = .info, echo: Bool = true, maxBytes: Int = 10 << 20, backups: Int = 10) {
        self.file = file
        self.level = level
        self.echo = echo
        self.maxBytes = maxBytes
        self.backups = backups
        if let f = file { openFile(f) }
    }

    deinit { if fd >= 0 { close(fd) } }

    /// A logger that writes nowhere (tests).
    public static let silent = Logger(file: nil, level: .error, echo: false)

    public func debug(_ m: @autoclosure () -> String, source: String = "monailabel") { log(.debug, m(), source) }
    public func info(_ m: @autoclosure () -> String, source: String = "monailabel") { log(.info, m(), source) }
    public func warning(_ m: @autoclosure () -> String, source: String = "monailabel") { log(.warning, m(), source) }
    public func error(_ m: @autoclosure () -> String, source: String = "monailabel") { log(.error, m(), source) }

    public func log(_ l: LogLevel, _ message: @autoclosure () -> String, _ source: String = "monailabel") {
        guard l >= level else { return }
        let line = "[\(Logger.timestamp())] [\(getpid())] [\(l.name)] (\(source)) - \(message())\n"
        let bytes = Array(line.utf8)
        lock.lock()
        defer { lock.unlock() }
        if echo { bytes.withUnsafeBytes { _ = write(2, $0.baseAddress, $0.count) } }
        guard fd >= 0 else { return }
        if size + bytes.count > maxBytes { rotate() }
        bytes.withUnsafeBytes { _ = write(fd, $0.baseAddress, $0.count) }
        size += bytes.count
    }

    private func openFile(_ f: URL) {
        try? FileManager.default.createDirectory(at: f.deletingLastPathComponent(), withIntermediateDirectories: true)
        fd = open(f.path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        size = Int(FileOps.fileSize(f.path) ?? 0)
    }

    private func rotate() {
        guard let f = file else { return }
        close(fd)
        for i in stride(from: backups - 1, through: 1, by: -1) {
            rename(f.path + ".\(i)", f.path + ".\(i + 1)")
        }
        rename(f.path, f.path + ".1")
        openFile(f)
    }

    /// `2026-11-24 08:10:00,123`, Python logging's asctime.
    static func timestamp() -> String {
        var tv = timeval()
        gettimeofday(&tv, nil)
        var t = time_t(tv.tv_sec)
        var tmv = tm()
        localtime_r(&t, &tmv)
        func p(_ v: Int32, _ w: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, w - s.count)) + s
        }
        return "\(tmv.tm_year + 1900)-\(p(tmv.tm_mon + 1, 2))-\(p(tmv.tm_mday, 2)) "
            + "\(p(tmv.tm_hour, 2)):\(p(tmv.tm_min, 2)):\(p(tmv.tm_sec, 2)),\(p(Int32(tv.tv_usec / 1000), 3))"
    }
}
