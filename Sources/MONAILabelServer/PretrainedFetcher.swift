import Foundation
import HTTPClient
import MONAILabel

#if canImport(Glibc)
import Glibc
#endif

/// Fetches a model's missing pretrained weights at start-up, as upstream's radiology app does with
/// `use_pretrained_model` (its default): from `<pretrained path>/<files.download>` into `<app>/model/`. The bytes
/// go to `<file>.part`, which a cut connection leaves behind for the next try (this run's or the next start's)
/// to resume with a `Range` request; a known SHA-256 is checked before the file is renamed into place. A failure
/// is logged, never fatal: the model then starts untrained and says so.
public struct PretrainedFetcher: Sendable {
    public var client: HTTPClient
    /// Tries per file; each resumes where the previous one stopped.
    public var attempts = 4
    /// The most bytes one file may have (a weights file is tens to hundreds of MB).
    public var maxBytes: Int64 = 8 << 30
    /// Receives the progress and retry lines.
    public var log: @Sendable (String) -> Void

    public init(client: HTTPClient = HTTPClient(), log: @escaping @Sendable (String) -> Void) {
        self.client = client
        self.log = log
    }

    /// Why a file could not be fetched.
    public struct Failure: Error, CustomStringConvertible, Sendable {
        public var message: String
        /// Worth another try that resumes (a cut connection, a 5xx); false for a refused connection, a 4xx or a
        /// checksum mismatch.
        var transient: Bool
        public var description: String { message }
    }

    /// Start-up: fetches what the selected models of the app at `appDir` are missing (`PretrainedDownload.missing`)
    /// from `--conf pretrained_path`, else `MONAI_LABEL_PRETRAINED_PATH`, else upstream's release URL; logs each
    /// outcome. Throws only for a malformed conf or app.
    public static func fetchMissing(appDir: URL, conf: [String: String], environment: [String: String], log: Logger) throws {
        let appConf = try AppConf(conf)
        guard appConf.usePretrainedModel, !appConf.reviewOnly else { return }
        let definition = try AppDefinition.load(appDir: appDir)
        // A bundle app's weights come with its bundles (ZooDownloader), and its `--conf models` names bundles,
        // not app.json's models.
        guard !definition.bundleModels else { return }
        let base = appConf.pretrainedPath ?? environment["MONAI_LABEL_PRETRAINED_PATH"] ?? AppConf.defaultPretrainedPath
        let modelDir = appDir.appendingPathComponent("model")
        let downloads = try PretrainedDownload.missing(
            models: try definition.selectModels(conf), definition: definition, conf: appConf, modelDir: modelDir, base: base)
        guard !downloads.isEmpty else { return }
        try FileOps.makeDirectory(modelDir)
        let fetcher = PretrainedFetcher(log: { log.info($0) })
        for d in downloads {
            log.info("Downloading pretrained weights for \(d.model) from \(d.url.absoluteString)")
            do {
                let bytes = try fetcher.fetch(d)
                log.info("Pretrained weights for \(d.model): \(d.destination.lastPathComponent) (\(bytes) bytes)")
            } catch {
                log.error("Pretrained weights for \(d.model) could not be fetched from \(d.url.absoluteString): \(error). "
                    + "\(d.model) starts untrained. Without internet, copy \(d.url.lastPathComponent) here and run "
                    + "`monailabel models --import \(d.url.lastPathComponent) --app \(appDir.path)`, or set "
                    + "MONAI_LABEL_PRETRAINED_PATH (--conf pretrained_path) to a reachable copy, or "
                    + "--conf use_pretrained_model false to skip the download")
            }
        }
    }

    /// Fetches one file into its destination; returns its size. Throws `Failure`.
    @discardableResult
    public func fetch(_ d: PretrainedDownload) throws -> Int64 {
        let part = URL(fileURLWithPath: d.destination.path + ".part")
        var last = Failure(message: "no attempt made", transient: false)
        for attempt in 1...max(1, attempts) {
            do {
                try fetchOnce(d.url, into: part)
                return try install(part, as: d.destination, sha256: d.sha256)
            } catch let f as Failure {
                last = f
            } catch let e as HTTPClientError {
                // A refused or unresolvable connection will not resume: the machine is offline or the host is wrong.
                last = e.isConnectFailure
                    ? Failure(message: "cannot connect to \(d.url.host ?? "the server") (offline?): \(e.message)", transient: false)
                    : Failure(message: e.message, transient: true)
            }
            guard last.transient, attempt < attempts else { break }
            log("Download of \(d.destination.lastPathComponent) interrupted (\(last.message)); resuming at "
                + "\(FileOps.fileSize(part.path) ?? 0) bytes (try \(attempt + 1) of \(attempts))")
            Thread.sleep(forTimeInterval: min(0.2 * Double(attempt), 2))
        }
        throw last
    }

    /// One GET (following redirects, as GitHub's release downloads need) that appends to `part` from its
    /// current size.
    func fetchOnce(_ start: URL, into part: URL) throws {
        var have = FileOps.fileSize(part.path) ?? 0
        var url = start
        var stream: HTTPClientStream
        var hops = 0
        while true {
            var headers = HTTPHeaders()
            if have > 0 { headers.add("Range", "bytes=\(have)-") }
            stream = try client.stream(method: "GET", url: url, headers: headers)
            guard [301, 302, 303, 307, 308].contains(stream.status), let location = stream.headers["Location"] else { break }
            guard hops < 5, let next = URL(string: location, relativeTo: url)?.absoluteURL,
                ["http", "https"].contains(next.scheme?.lowercased() ?? "")
            else { throw Failure(message: "too many or bad redirects", transient: false) }
            url = next
            hops += 1
        }
        var total: Int64?
        switch stream.status {
        case 206:
            guard let range = stream.headers["Content-Range"].flatMap(Self.contentRange), range.start == have else {
                // Not the bytes asked for: start again from nothing.
                try? FileManager.default.removeItem(at: part)
                throw Failure(message: "the server answered another range than asked", transient: true)
            }
            total = range.total
        case 200:
            have = 0
            total = stream.headers["Content-Length"].flatMap { Int64($0.trimmingCharacters(in: .whitespaces)) }
        case 416:
            // The partial file is not a prefix of this file (it changed, or the part is corrupt).
            try? FileManager.default.removeItem(at: part)
            throw Failure(message: "the partial download does not fit the file on the server", transient: true)
        case 400..<500:
            throw Failure(message: "HTTP \(stream.status) \(stream.reason)", transient: false)
        default:
            throw Failure(message: "HTTP \(stream.status) \(stream.reason)", transient: true)
        }
        if let total, total > maxBytes {
            throw Failure(message: "the file has \(total) bytes, more than the \(maxBytes) allowed", transient: false)
        }
        let fd = open(part.path, O_WRONLY | O_CREAT | O_CLOEXEC | (have == 0 ? O_TRUNC : O_APPEND), 0o644)
        guard fd >= 0 else { throw Failure(message: "cannot write \(part.lastPathComponent): \(String(cString: strerror(errno)))", transient: false) }
        defer { close(fd) }
        var size = have
        var reported = total.map { $0 > 0 ? Int(size * 10 / $0) : 10 } ?? Int(size >> 24)
        while let chunk = try stream.next() {
            guard size + Int64(chunk.count) <= (total ?? maxBytes) else {
                throw Failure(message: "the server sent more bytes than announced", transient: false)
            }
            try chunk.withUnsafeBytes { raw in
                var off = 0
                while off < raw.count {
                    let n = write(fd, raw.baseAddress! + off, raw.count - off)
                    if n < 0 {
                        if errno == EINTR { continue }
                        throw Failure(message: "cannot write \(part.lastPathComponent): \(String(cString: strerror(errno)))", transient: false)
                    }
                    off += n
                }
            }
            size += Int64(chunk.count)
            // Progress: every tenth of a known size, else every 16 MiB.
            let step = total.map { $0 > 0 ? Int(size * 10 / $0) : 10 } ?? Int(size >> 24)
            if step > reported {
                reported = step
                log("Downloading \(part.deletingPathExtension().lastPathComponent): "
                    + (total.map { "\(step * 10)% (\(size) of \($0) bytes)" } ?? "\(size) bytes"))
            }
        }
        guard fsync(fd) == 0 else { throw Failure(message: "cannot sync \(part.lastPathComponent)", transient: false) }
        if let total, size != total {
            throw Failure(message: "the connection ended after \(size) of \(total) bytes", transient: true)
        }
    }

    /// Checks the digest (when known) and renames the complete part into place; returns the size.
    func install(_ part: URL, as destination: URL, sha256: String?) throws -> Int64 {
        if let want = sha256 {
            let got = try Checksum.sha256Hex(part.path)
            guard got == want else {
                try? FileManager.default.removeItem(at: part)
                throw Failure(message: "checksum mismatch: SHA-256 \(got), expected \(want); the download was deleted",
                              transient: false)
            }
        }
        guard rename(part.path, destination.path) == 0 else {
            throw Failure(message: "cannot rename the download into place: \(String(cString: strerror(errno)))", transient: false)
        }
        FileOps.fsyncDirectory(destination.deletingLastPathComponent())
        return FileOps.fileSize(destination.path) ?? 0
    }

    /// `bytes START-END/TOTAL` (TOTAL may be `*`).
    static func contentRange(_ value: String) -> (start: Int64, total: Int64?)? {
        let v = value.trimmingCharacters(in: .whitespaces)
        guard v.lowercased().hasPrefix("bytes ") else { return nil }
        let rest = v.dropFirst(6)
        let parts = rest.split(separator: "/", maxSplits: 1)
        guard parts.count == 2, let dash = parts[0].firstIndex(of: "-"), let start = Int64(parts[0][..<dash]), start >= 0 else {
            return nil
        }
        return (start, parts[1] == "*" ? nil : Int64(parts[1]))
    }
}

/// `monailabel models`: pretrained weights for sites without internet. The files the app would download (by
/// their upstream names, or already by their local `pretrained_*` names) are copied into `<app>/model/` under
/// the names the models load, each checked against its SHA-256 when the app knows it.
public enum PretrainedImport {
    /// What a weights file name installs as.
    struct Target {
        var model: String
        var local: String
        var remote: String?
        var sha256: String?
    }

    /// Every model's pretrained file under both DeepEdit networks, by local and by upstream name.
    static func targets(_ definition: AppDefinition) throws -> [String: Target] {
        var out: [String: Target] = [:]
        for network in AppConf.deepEditNetworks {
            let conf = try AppConf(["network": network])
            for name in definition.models.keys {
                let d = try conf.apply(model: name, to: definition.models[name]?.objectValue ?? JSONObject())
                let files = d["files"]?.objectValue ?? JSONObject()
                let t = Target(model: name, local: files["pretrained"]?.stringValue ?? "pretrained_\(name).pt",
                               remote: files["download"]?.stringValue, sha256: files["sha256"]?.stringValue?.lowercased())
                out[t.local] = t
                if let r = t.remote { out[r] = t }
            }
        }
        return out
    }

    /// One line per model of the app at `appDir`: its pretrained file, the upstream file it comes from and
    /// whether it is installed.
    public static func list(appDir: URL) throws -> [String] {
        let all = try targets(try AppDefinition.load(appDir: appDir))
        let unique = Dictionary(all.values.map { ($0.local, $0) }, uniquingKeysWith: { a, _ in a })
        return unique.values.sorted { ($0.model, $0.local) < ($1.model, $1.local) }.map { t in
            let present = FileOps.isRegularFile(appDir.appendingPathComponent("model").appendingPathComponent(t.local).path)
            return "\(t.model): model/\(t.local) " + (present ? "(installed)" : "(missing)")
                + (t.remote.map { "; upstream file \($0)" } ?? "")
        }
    }

    /// Imports `source` (a weights file, or a folder whose files with known names are imported) into the app;
    /// returns one line per file installed.
    public static func run(source: URL, appDir: URL) throws -> [String] {
        guard FileOps.isDirectory(appDir.path) else { throw MONAILabelError.notFound("App Directory does NOT exist: \(appDir.path)") }
        let targets = try targets(try AppDefinition.load(appDir: appDir))
        let known = Set(targets.keys).sorted().joined(separator: ", ")
        var files: [URL]
        if FileOps.isDirectory(source.path) {
            files = FileOps.listDirectory(source.path).sorted().map { source.appendingPathComponent($0) }
                .filter { targets[$0.lastPathComponent] != nil && FileOps.isRegularFile($0.path) }
            guard !files.isEmpty else {
                throw MONAILabelError.notFound("\(source.path) holds no pretrained weights file of this app; expected any of: \(known)")
            }
        } else {
            guard FileOps.isRegularFile(source.path) else { throw MONAILabelError.notFound("\(source.path) does not exist") }
            guard targets[source.lastPathComponent] != nil else {
                throw MONAILabelError.invalid("\(source.lastPathComponent) is no pretrained weights file of this app; expected one of: \(known)")
            }
            files = [source]
        }
        let modelDir = appDir.appendingPathComponent("model")
        try FileOps.makeDirectory(modelDir)
        var lines: [String] = []
        for f in files {
            guard let t = targets[f.lastPathComponent] else { continue }
            if let want = t.sha256 {
                let got = try Checksum.sha256Hex(f.path)
                guard got == want else {
                    throw MONAILabelError.invalid("\(f.lastPathComponent): SHA-256 \(got), expected \(want); not imported")
                }
            }
            try FileOps.atomicCopy(from: f, to: modelDir.appendingPathComponent(t.local))
            lines.append("\(f.lastPathComponent) -> model/\(t.local) (\(t.model))")
        }
        return lines
    }
}
