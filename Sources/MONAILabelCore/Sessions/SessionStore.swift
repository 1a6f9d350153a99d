import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A session: an image uploaded once and referenced by id in later inferences (spec section 1.9).
public struct SessionInfo: Sendable, Equatable {
    public var name: String
    public var path: String
    public var image: String
    public var meta: JSONObject
    public var createTS: Int
    public var lastAccessTS: Int
    public var expiry: Int

    public var json: JSONValue {
        [
            "name": .string(name), "path": .string(path), "image": .string(image), "meta": .object(meta),
            "create_ts": .int(createTS), "last_access_ts": .int(lastAccessTS), "expiry": .int(expiry),
        ]
    }

    init?(json: JSONValue) {
        guard let name = json["name"]?.stringValue, let path = json["path"]?.stringValue,
            let image = json["image"]?.stringValue
        else { return nil }
        self.name = name
        self.path = path
        self.image = image
        meta = json["meta"]?.objectValue ?? JSONObject()
        createTS = json["create_ts"]?.intValue ?? 0
        lastAccessTS = json["last_access_ts"]?.intValue ?? createTS
        expiry = json["expiry"]?.intValue ?? 3600
    }

    init(name: String, path: String, image: String, now: Int, expiry: Int) {
        self.name = name
        self.path = path
        self.image = image
        meta = JSONObject()
        createTS = now
        lastAccessTS = now
        self.expiry = expiry
    }

    /// Overflow-safe: both numbers can come from a `meta.info` on disk.
    func isExpired(now: Int) -> Bool {
        let (end, overflow) = lastAccessTS.addingReportingOverflow(expiry)
        return overflow ? expiry < 0 : end < now
    }
}

/// An uploaded file handed to the session store: where it was spooled and the name the client gave it.
public struct UploadedFile: Sendable {
    public var path: URL
    public var fileName: String
    public init(path: URL, fileName: String) {
        self.path = path
        self.fileName = fileName
    }

    /// The client's file name without any directory part (clients may send a full local path).
    public var baseName: String {
        fileName.split(whereSeparator: { $0 == "/" || $0 == "\\" }).last.map(String.init) ?? fileName
    }
}

/// Sessions on disk: `<root>/<uuid1>/` holding the uploaded image (or a directory of several files) and
/// `meta.info`, upstream's layout, so sessions survive a restart.
public final class SessionStore: @unchecked Sendable {
    public let root: URL
    /// `MONAI_LABEL_SESSION_EXPIRY`: the longest a session may live, in seconds.
    public let globalExpiry: Int
    /// `MONAI_LABEL_SESSION_MAX_BYTES`: the most bytes one session may hold (its uploads, or what an archive
    /// expands to).
    public let maxBytes: Int64
    /// The most files one session may hold (an archive of many tiny members is refused as soon as it passes this).
    public let maxFiles: Int
    private let lock = NSLock()

    /// `MONAI_LABEL_SESSION_MAX_BYTES`'s default: a CT series of a thousand 512x512 slices and then some.
    public static let defaultMaxBytes: Int64 = 1 << 30
    /// The default file cap: a DICOM series of 20,000 slices.
    public static let defaultMaxFiles = 20_000
    /// The session's own metadata file, which an upload must not replace.
    static let metaFileName = "meta.info"

    public init(
        root: URL, globalExpiry: Int = 3600, maxBytes: Int64 = SessionStore.defaultMaxBytes,
        maxFiles: Int = SessionStore.defaultMaxFiles
    ) throws {
        try FileOps.makeDirectory(root)
        self.root = URL(fileURLWithPath: FileOps.realPath(root.path) ?? root.path)
        self.globalExpiry = globalExpiry > 60 ? globalExpiry : 3600
        self.maxBytes = max(1, maxBytes)
        self.maxFiles = max(1, maxFiles)
    }

    static func now() -> Int { Int(Date().timeIntervalSince1970) }

    /// Creates a session from one or more uploaded files; `uncompress` unpacks a single archive into a folder.
    public func create(files: [UploadedFile], expiry: Int = 0, uncompress: Bool = false) throws -> SessionInfo {
        guard !files.isEmpty else { throw MONAILabelError.invalid("at least one file is required") }
        for f in files {
            let base = f.baseName
            guard !base.isEmpty, base != ".", base != "..", !base.utf8.contains(0) else {
                throw MONAILabelError.invalid("invalid upload file name '\(f.fileName)'")
            }
            if files.count == 1 && !uncompress && base == Self.metaFileName {
                throw MONAILabelError.invalid(
                    "a session file cannot be named '\(Self.metaFileName)': that name holds the session's metadata")
            }
        }
        if files.count > maxFiles {
            throw MONAILabelError.invalid("a session holds at most \(maxFiles) files; \(files.count) were uploaded")
        }
        let uploaded = files.reduce(Int64(0)) { $0 + (FileOps.fileSize($1.path.path) ?? 0) }
        if uploaded > maxBytes {
            throw MONAILabelError.invalid(
                "a session holds at most \(maxBytes) bytes (MONAI_LABEL_SESSION_MAX_BYTES); \(uploaded) were uploaded")
        }
        let id = UUID1.make()
        let dir = root.appendingPathComponent(id)
        try FileOps.makeDirectory(dir)
        do {
            let image: URL
            if files.count == 1 && !uncompress {
                image = dir.appendingPathComponent(files[0].baseName)
                try FileOps.atomicCopy(from: files[0].path, to: image)
            } else {
                image = dir.appendingPathComponent("tmp" + String(UUID().uuidString.prefix(8)).lowercased())
                try FileOps.makeDirectory(image)
                if uncompress {
                    guard files.count == 1 else {
                        throw MONAILabelError.invalid("uncompress takes exactly one archive")
                    }
                    try Archive.extract(
                        files[0].path, fileName: files[0].baseName, into: image,
                        limits: Archive.Limits(maxBytes: maxBytes, maxFiles: maxFiles))
                } else {
                    for f in files { try FileOps.atomicCopy(from: f.path, to: image.appendingPathComponent(f.baseName)) }
                }
            }
            let e = expiry > 0 ? min(expiry, globalExpiry) : globalExpiry
            let info = SessionInfo(name: id, path: dir.path, image: image.path, now: Self.now(), expiry: e)
            try save(info)
            return info
        } catch {
            try? FileManager.default.removeItem(at: dir)
            throw error
        }
    }

    /// The session, or nil when unknown, expired or its image vanished (such sessions are removed).
    public func get(_ id: String, updateTS: Bool = false) -> SessionInfo? {
        lock.lock()
        defer { lock.unlock() }
        guard var info = loadLocked(id) else { return nil }
        let now = Self.now()
        if info.isExpired(now: now) || !FileManager.default.fileExists(atPath: info.image) {
            try? FileManager.default.removeItem(at: root.appendingPathComponent(id))
            return nil
        }
        if updateTS {
            info.lastAccessTS = now
            try? save(info)
        }
        return info
    }

    /// Removes a session; nil when unknown.
    public func remove(_ id: String) -> SessionInfo? {
        lock.lock()
        defer { lock.unlock() }
        guard let info = loadLocked(id) else { return nil }
        try? FileManager.default.removeItem(at: root.appendingPathComponent(id))
        return info
    }

    /// Deletes expired sessions; returns how many.
    @discardableResult
    public func purgeExpired() -> Int {
        lock.lock()
        defer { lock.unlock() }
        let now = Self.now()
        var n = 0
        for id in FileOps.listDirectory(root.path) {
            guard let info = loadLocked(id) else { continue }
            if info.isExpired(now: now) {
                try? FileManager.default.removeItem(at: root.appendingPathComponent(id))
                n += 1
            }
        }
        return n
    }

    private func loadLocked(_ id: String) -> SessionInfo? {
        guard (try? StoreNames.validate(id, what: "session id")) != nil else { return nil }
        let meta = root.appendingPathComponent(id).appendingPathComponent("meta.info")
        guard let data = FileManager.default.contents(atPath: meta.path),
            let json = try? JSONValue.parse(Array(data))
        else { return nil }
        return SessionInfo(json: json)
    }

    private func save(_ info: SessionInfo) throws {
        try FileOps.atomicWrite(
            info.json.compactBytes(), to: root.appendingPathComponent(info.name).appendingPathComponent("meta.info"))
    }
}

/// Time-based UUIDs (version 1) like Python's `uuid.uuid1()`, which upstream uses for session ids; the node is
/// random with the multicast bit set, as RFC 4122 allows when no MAC address is used.
enum UUID1 {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var lastTimestamp: UInt64 = 0
    nonisolated(unsafe) private static var clockSeq: UInt16 = UInt16.random(in: 0...0x3FFF)
    private static let node: UInt64 = UInt64.random(in: 0...0xFFFF_FFFF_FFFF) | 0x0100_0000_0000

    static func make() -> String {
        lock.lock()
        // 100-ns intervals since 1582-10-15.
        var ts = UInt64(Date().timeIntervalSince1970 * 10_000_000) + 0x01B2_1DD2_1381_4000
        if ts <= lastTimestamp { ts = lastTimestamp + 1 }
        lastTimestamp = ts
        let seq = clockSeq
        lock.unlock()
        let timeLow = UInt32(ts & 0xFFFF_FFFF)
        let timeMid = UInt16((ts >> 32) & 0xFFFF)
        let timeHi = UInt16((ts >> 48) & 0x0FFF) | 0x1000
        let seqField = (seq & 0x3FFF) | 0x8000
        func hex<T: BinaryInteger>(_ v: T, _ width: Int) -> String {
            let s = String(v, radix: 16)
            return String(repeating: "0", count: max(0, width - s.count)) + s
        }
        return "\(hex(timeLow, 8))-\(hex(timeMid, 4))-\(hex(timeHi, 4))-\(hex(seqField, 4))-\(hex(node, 12))"
    }
}
