import Foundation
import HTTPServer
import MONAILabel

/// The last line of defence for error details: the server's own folders (studies, app, sessions, temp) are
/// replaced by short relative names before a detail reaches the wire, so a message built with a full path
/// somewhere below (ours, Foundation's or a tool's) never tells a client where the server keeps its files.
/// Messages should already name files relatively at their source; this catches what slips through.
///
/// The roots are a process-wide registry because `route(_:)` wraps handlers without knowing their app; a process
/// serves one app, and in tests, where many apps share a process, replacing every registered root is still right.
enum WirePaths {
    private static let lock = NSLock()
    /// (absolute path, name), longest path first so nested roots (studies inside the temp folder) win.
    nonisolated(unsafe) private static var roots: [(path: String, name: String)] = []

    /// Registers the folders of an app: each under its given and its canonical (symlink-free) spelling.
    static func register(app: MONAILabelApp) {
        var entries: [(String, String)] = [
            (app.settings.studies, "studies"),
            (app.settings.appDir.path, "app"),
            (ProcessTemp.base.path, "tmp"),
        ]
        if let local = app.datastore as? LocalDatastore { entries.append((local.root.path, "studies")) }
        if let sessions = app.sessions { entries.append((sessions.root.path, "sessions")) }
        for (path, name) in entries { register(path, as: name) }
    }

    static func register(_ path: String, as name: String) {
        var spellings = [URL(fileURLWithPath: path).standardizedFileURL.path]
        if let real = FileOps.realPath(path) { spellings.append(real) }
        lock.lock()
        defer { lock.unlock() }
        for var p in spellings {
            while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
            // "/" would turn every path into nonsense without hiding anything more.
            guard p.count > 1, !roots.contains(where: { $0.path == p }) else { continue }
            roots.append((p, name))
        }
        roots.sort { $0.path.count > $1.path.count }
    }

    /// `text` with every registered root replaced by its name (`/srv/studies/labels/x` -> `studies/labels/x`). A
    /// root followed by more name characters (`/srv/studies2`) is another path and is left alone.
    static func scrub(_ text: String) -> String {
        lock.lock()
        let current = roots
        lock.unlock()
        var out = text
        for (path, name) in current where out.contains(path) {
            out = replace(path, with: name, in: out)
        }
        return out
    }

    private static func replace(_ path: String, with name: String, in text: String) -> String {
        var result = ""
        var rest = Substring(text)
        while let r = rest.range(of: path) {
            let next = rest[r.upperBound...].first
            let continuesName = next.map { $0.isLetter || $0.isNumber || "._-~".contains($0) } ?? false
            result += rest[..<r.lowerBound]
            result += continuesName ? String(rest[r]) : name
            rest = rest[r.upperBound...]
        }
        return result + rest
    }
}

extension HTTPResponseError {
    /// The same error with its detail scrubbed of server paths (see `WirePaths`).
    var scrubbed: HTTPError { HTTPError(status, WirePaths.scrub(detail), headers: headers) }
}
