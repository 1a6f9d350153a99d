import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A studies folder in upstream's layout (spec section 3.2): images at the top level, labels under
/// `labels/<tag>/`, metadata in `datastore_v2.json`. Files written by upstream open unchanged and upstream
/// opens ours.
///
/// Every mutation stages the file next to its destination, fsyncs, renames, then rewrites the JSON atomically,
/// all under one lock (and upstream's `.lock` file lock for other processes). A kill at any instant therefore
/// leaves a readable store in which every label whose save returned is present; a label file that landed before
/// its JSON entry is picked up by the next reconcile.
public final class LocalDatastore: Datastore, @unchecked Sendable {
    public let root: URL
    public let patterns: [String]
    public let readOnly: Bool
    /// Checks that an upload is a readable image before it enters the store (throws otherwise).
    private let validator: (@Sendable (URL, String) throws -> Void)?

    private let lock = NSLock()
    private var doc = DatastoreDocument() {
        didSet {
            cachedJSON = nil
            cachedStatus.withLock { $0 = nil }
        }
    }
    private var lastJSONMTime: Int64?
    private var cachedJSON: [UInt8]?
    /// `status()` as last computed, nil after any change. Changed only under `lock`, but read without it by
    /// `statusWithoutWaiting()`, so a caller that must not wait for a write in progress can still ask.
    private let cachedStatus = Mutex<DatastoreStatus?>(nil)
    private var watcher: DirectoryWatcher?
    /// Set when start-up found `datastore_v2.json` unreadable: why, and where the bad file was moved.
    public private(set) var recovery: Recovery?

    /// A `datastore_v2.json` that could not be loaded at start-up: it was kept under `movedTo` (nil for a
    /// read-only store, which leaves it in place) and the store was rebuilt from the files.
    public struct Recovery: Sendable, Equatable {
        /// What was wrong with the file.
        public var reason: String
        /// The name it was moved to in the studies folder (`datastore_v2.json.corrupt-<timestamp>`).
        public var movedTo: String?
    }

    /// Opens (creating when needed) the store at `root` and reconciles it with the disk.
    /// - Parameters:
    ///   - patterns: `MONAI_LABEL_DATASTORE_FILE_EXT`.
    ///   - autoReload: watch the folder (inotify) and reconcile when files appear or vanish.
    ///   - validator: called with a staged upload and its extension; throw to refuse it.
    public init(
        root: URL, patterns: [String] = StoreNames.defaultPatterns, readOnly: Bool = false, autoReload: Bool = false,
        validator: (@Sendable (URL, String) throws -> Void)? = nil
    ) throws {
        guard let real = FileOps.realPath(root.path), FileOps.isDirectory(real) else {
            throw MONAILabelError.notFound("studies folder \(root.path) does not exist")
        }
        self.root = URL(fileURLWithPath: real)
        self.patterns = patterns
        self.readOnly = readOnly
        self.validator = validator
        lock.lock()
        defer { lock.unlock() }
        do {
            try loadDocumentLocked()
        } catch {
            // A store that was written must always open: a corrupt document is kept aside and rebuilt from the
            // files (image and label files are the truth; only their info is lost).
            recovery = try setAsideUnreadableDocumentLocked(reason: "\(error)")
        }
        if !readOnly {
            try FileOps.makeDirectory(labelsRoot.appendingPathComponent(LabelTag.final))
            try FileOps.makeDirectory(labelsRoot.appendingPathComponent(LabelTag.original))
        }
        if !readOnly { removeStaleStagedFiles() }
        try reconcileLocked()
        if autoReload {
            watcher = DirectoryWatcher(root: self.root, labelsDir: labelsRoot) { [weak self] in self?.refresh() }
        }
    }

    deinit { watcher?.stop() }

    public var name: String { withLock { doc.name } }
    public var description: String { withLock { doc.description } }

    private var jsonURL: URL { root.appendingPathComponent(DatastoreDocument.fileName) }
    private var imagesRoot: URL { doc.imagesDir == "." ? root : root.appendingPathComponent(doc.imagesDir) }
    private var labelsRoot: URL { root.appendingPathComponent(doc.labelsDir) }

    private func withLock<T>(_ body: () throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body()
    }

    // MARK: Queries

    public func status() -> DatastoreStatus {
        withLock {
            if let s = cachedStatus.withLock({ $0 }) { return s }
            var tags = OrderedMap<Int>()
            var completed = 0
            for (_, obj) in doc.objects {
                if obj.labels[LabelTag.final] != nil { completed += 1 }
                for (tag, _) in obj.labels { tags[tag] = (tags[tag] ?? 0) + 1 }
            }
            let s = DatastoreStatus(total: doc.objects.count, completed: completed, labelTags: tags)
            cachedStatus.withLock { $0 = s }
            return s
        }
    }

    public func statusWithoutWaiting() -> DatastoreStatus? { cachedStatus.withLock { $0 } }

    public func json() -> JSONValue { withLock { doc.json } }

    /// The compact document, cached between mutations (a 10,000-image listing is served without re-encoding).
    public func compactJSON() -> [UInt8] {
        withLock {
            if let c = cachedJSON { return c }
            let bytes = doc.json.compactBytes()
            cachedJSON = bytes
            return bytes
        }
    }

    public func datalist() -> [DatalistItem] {
        withLock {
            doc.objects.compactMap { id, obj in
                guard let l = obj.labels[LabelTag.final] else { return nil }
                let image = imagePathLocked(id, obj).path, label = labelPathLocked(id, LabelTag.final, l).path
                guard resolvesInsideRoot(image), resolvesInsideRoot(label) else { return nil }
                return DatalistItem(image: image, label: label)
            }
        }
    }

    public func listImages() -> [String] { withLock { doc.objects.keys } }

    public func labeledImages() -> [String] {
        withLock { doc.objects.compactMap { $0.value.labels[LabelTag.final] != nil ? $0.key : nil } }
    }

    public func unlabeledImages() -> [String] {
        withLock { doc.objects.compactMap { $0.value.labels[LabelTag.final] == nil ? $0.key : nil } }
    }

    public func imageURI(_ id: String) -> String? {
        withLock {
            guard let obj = doc.objects[id] else { return nil }
            return insideRootPath(imagePathLocked(id, obj).path)
        }
    }

    public func labelURI(_ id: String, tag: String) -> String? {
        withLock {
            guard let entry = doc.objects[id]?.labels[tag] else { return nil }
            return insideRootPath(labelPathLocked(id, tag, entry).path)
        }
    }

    public func imageInfo(_ id: String) -> JSONObject? { withLock { doc.objects[id]?.image.info } }

    public func labelInfo(_ id: String, tag: String) -> JSONObject? { withLock { doc.objects[id]?.labels[tag]?.info } }

    public func labelsByImage(_ id: String) -> OrderedMap<String> {
        withLock {
            var out = OrderedMap<String>()
            for (tag, _) in doc.objects[id]?.labels ?? OrderedMap() { out[tag] = id }
            return out
        }
    }

    public func imageFileName(_ id: String) -> String? { withLock { doc.objects[id].map { id + $0.image.ext } } }

    public func labelFileName(_ id: String, tag: String) -> String? {
        withLock { doc.objects[id]?.labels[tag].map { id + $0.ext } }
    }

    /// The canonical path of a stored file, or nil when it is missing or resolves outside the studies folder (a
    /// planted symlink): such a file is never listed, served or handed to a model.
    private func insideRootPath(_ path: String) -> String? {
        guard let real = FileOps.realPath(path), FileOps.isInside(real, root: root.path) else { return nil }
        return real
    }

    private func resolvesInsideRoot(_ path: String) -> Bool { insideRootPath(path) != nil }

    /// A regular file that stays inside the studies folder.
    private func isStoredFile(_ path: String) -> Bool { FileOps.isRegularFile(path) && resolvesInsideRoot(path) }

    private func imagePathLocked(_ id: String, _ obj: ImageObject) -> URL {
        imagesRoot.appendingPathComponent(id + obj.image.ext)
    }

    private func labelPathLocked(_ id: String, _ tag: String, _ e: FileEntry) -> URL {
        labelsRoot.appendingPathComponent(tag).appendingPathComponent(id + e.ext)
    }

    // MARK: Mutations

    private func requireWritable() throws {
        if readOnly { throw MONAILabelError(.notEnabled, "the datastore is read-only") }
    }

    /// Copies `file` into `dir` under a temporary name (outside the lock: uploads can be hundreds of MB).
    private func stage(_ file: URL, in dir: URL) throws -> URL {
        try FileOps.makeDirectory(dir)
        try ensureInsideRoot(dir)
        let tmp = dir.appendingPathComponent(FileOps.tempPrefix + UUID().uuidString)
        try FileOps.atomicCopy(from: file, to: tmp)
        return tmp
    }

    /// Refuses a destination directory that resolves outside the studies folder (a symlinked tag directory).
    private func ensureInsideRoot(_ dir: URL) throws {
        guard let real = FileOps.realPath(dir.path), FileOps.isInside(real, root: root.path) else {
            throw MONAILabelError.invalid("\(dir.lastPathComponent) resolves outside the studies folder")
        }
    }

    @discardableResult
    public func addImage(id: String, file: URL, fileName: String, info: JSONObject) throws -> String {
        try requireWritable()
        try StoreNames.validate(id, what: "image id")
        let ext = StoreNames.uploadExtension(fileName, patterns: patterns)
        guard StoreNames.matches("x" + ext, patterns: patterns) else {
            throw MONAILabelError.invalid(
                "unsupported image file '\(fileName)': expected one of \(patterns.joined(separator: ", "))")
        }
        try StoreNames.validateFileName(id, ext: ext, what: "image id")
        try InfoLimits.check(info, field: "image info")
        try validator?(file, ext)
        let dir = withLock { imagesRoot }
        try commit(file, as: id + ext, in: dir) {
            if let old = doc.objects[id], old.image.ext != ext {
                try FileOps.removeFile(imagePathLocked(id, old))
            }
        } update: {
            doc.objects[id] = ImageObject(image: FileEntry(ext: ext, info: Self.stamped(info, name: id + ext)))
            try reconcileLabelsOf(id)
        }
        return id
    }

    /// Stages `file` in `dir` (outside the lock), then under the lock runs `check`, renames the staged copy to
    /// `name`, fsyncs the folder, runs `update` on the document and writes it. A failure at any step leaves the
    /// previous file and document in place.
    private func commit(
        _ file: URL, as name: String, in dir: URL, check: () throws -> Void, update: () throws -> Void
    ) throws {
        let staged = try stage(file, in: dir)
        var committed = false
        defer {
            if !committed { unlink(staged.path) }
        }
        try withLock {
            try check()
            let dest = dir.appendingPathComponent(name)
            guard rename(staged.path, dest.path) == 0 else {
                throw MONAILabelError.io("cannot store \(name): \(FileOps.errnoText())")
            }
            committed = true
            FileOps.fsyncDirectory(dir)
            try update()
            try writeDocumentLocked()
        }
    }

    /// Info as upstream stores it: the caller's keys, then `ts` and `name` (which overwrite same-named keys).
    static func stamped(_ info: JSONObject, name: String) -> JSONObject {
        var merged = info
        merged["ts"] = .int(now())
        merged["name"] = .string(name)
        return merged
    }

    public func removeImage(_ id: String) throws {
        try requireWritable()
        try withLock {
            guard let obj = doc.objects[id] else { throw MONAILabelError.notFound("Image \(id) not found") }
            for (tag, e) in obj.labels { try FileOps.removeFile(labelPathLocked(id, tag, e)) }
            try FileOps.removeFile(imagePathLocked(id, obj))
            doc.objects[id] = nil
            try writeDocumentLocked()
        }
    }

    @discardableResult
    public func saveLabel(imageID: String, file: URL, fileName: String, tag: String, info: JSONObject) throws
        -> String
    {
        try requireWritable()
        try StoreNames.validate(imageID, what: "image id")
        try StoreNames.validate(tag, what: "label tag")
        guard withLock({ doc.objects[imageID] != nil }) else {
            throw MONAILabelError.notFound("Image \(imageID) not found")
        }
        let ext = StoreNames.uploadExtension(fileName, patterns: patterns)
        guard StoreNames.matches("x" + ext, patterns: patterns) else {
            throw MONAILabelError.invalid(
                "unsupported label file '\(fileName)': expected one of \(patterns.joined(separator: ", "))")
        }
        try StoreNames.validateFileName(imageID, ext: ext, what: "image id")
        try InfoLimits.check(info, field: "label info")
        try validator?(file, ext)
        let dir = withLock { labelsRoot.appendingPathComponent(tag) }
        try commit(file, as: imageID + ext, in: dir) {
            guard doc.objects[imageID] != nil else { throw MONAILabelError.notFound("Image \(imageID) not found") }
        } update: {
            doc.objects[imageID]?.labels[tag] = FileEntry(ext: ext, info: Self.stamped(info, name: imageID + ext))
        }
        return imageID
    }

    public func removeLabel(_ id: String, tag: String) throws {
        try requireWritable()
        try StoreNames.validate(tag, what: "label tag")
        try withLock {
            guard let entry = doc.objects[id]?.labels[tag] else { return }
            try FileOps.removeFile(labelPathLocked(id, tag, entry))
            doc.objects[id]?.labels[tag] = nil
            try writeDocumentLocked()
        }
    }

    public func updateImageInfo(_ id: String, info: JSONObject) throws {
        try requireWritable()
        try withLock {
            guard var merged = doc.objects[id]?.image.info else { throw MONAILabelError.notFound("Image \(id) not found") }
            merged.merge(info)
            try InfoLimits.check(merged, field: "image info")
            doc.objects[id]?.image.info = merged
            try writeDocumentLocked()
        }
    }

    public func updateLabelInfo(_ id: String, tag: String, info: JSONObject) throws {
        try requireWritable()
        try withLock {
            guard var merged = doc.objects[id]?.labels[tag]?.info else {
                throw MONAILabelError.notFound("Label \(id) (\(tag)) not found")
            }
            merged.merge(info)
            try InfoLimits.check(merged, field: "label info")
            doc.objects[id]?.labels[tag]?.info = merged
            try writeDocumentLocked()
        }
    }

    public func refresh() {
        withLock {
            do {
                try reconcileLocked()
            } catch {
                FileHandle.standardError.write(Data("datastore refresh failed: \(error)\n".utf8))
            }
        }
    }

    // MARK: Disk state

    private func loadDocumentLocked() throws {
        let path = jsonURL.path
        guard FileOps.isRegularFile(path) else {
            if FileOps.exists(path) {
                throw MONAILabelError.io("\(DatastoreDocument.fileName) is not a regular file")
            }
            doc = DatastoreDocument()
            lastJSONMTime = nil
            return
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw MONAILabelError.io("\(DatastoreDocument.fileName) cannot be read")
        }
        do {
            doc = try DatastoreDocument(json: try JSONValue.parse(Array(data)))
        } catch let e as JSONParseError {
            throw MONAILabelError.invalid("\(DatastoreDocument.fileName) is not valid JSON: \(e)")
        }
        lastJSONMTime = FileOps.modificationTime(path)
        cachedJSON = nil
        cachedStatus.withLock { $0 = nil }
    }

    /// Moves an unloadable `datastore_v2.json` (or whatever occupies its name) aside as
    /// `datastore_v2.json.corrupt-<UTC timestamp>` and starts from an empty document, which the reconcile then
    /// fills from the files. A read-only store leaves the file alone and rebuilds in memory only.
    private func setAsideUnreadableDocumentLocked(reason: String) throws -> Recovery {
        doc = DatastoreDocument()
        if readOnly {
            // Nothing may be written; remember the bad file's mtime so the reconcile does not retry it.
            lastJSONMTime = FileOps.modificationTime(jsonURL.path)
            return Recovery(reason: reason, movedTo: nil)
        }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        let stamp = formatter.string(from: Date())
        var name = DatastoreDocument.fileName + ".corrupt-" + stamp
        var n = 1
        while FileOps.exists(root.appendingPathComponent(name).path) {
            n += 1
            name = DatastoreDocument.fileName + ".corrupt-\(stamp)-\(n)"
        }
        guard rename(jsonURL.path, root.appendingPathComponent(name).path) == 0 else {
            throw MONAILabelError.io(
                "\(DatastoreDocument.fileName) cannot be loaded (\(reason)) nor moved aside: \(FileOps.errnoText())")
        }
        FileOps.fsyncDirectory(root)
        lastJSONMTime = nil
        return Recovery(reason: reason, movedTo: name)
    }

    private func writeDocumentLocked() throws {
        cachedJSON = nil
        cachedStatus.withLock { $0 = nil }
        guard !readOnly else { return }
        let lockFD = open(root.appendingPathComponent(".lock").path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o644)
        if lockFD >= 0 { flock(lockFD, LOCK_EX) }
        defer {
            if lockFD >= 0 {
                flock(lockFD, LOCK_UN)
                close(lockFD)
            }
        }
        try FileOps.atomicWrite(doc.json.prettyBytes(indent: 2), to: jsonURL)
        lastJSONMTime = FileOps.modificationTime(jsonURL.path)
    }

    /// Files of `dir` that match the image patterns, as (id, ext), in sorted order.
    private func scan(_ dir: URL) -> [(id: String, ext: String)] {
        FileOps.listDirectory(dir.path)
            .filter { !$0.hasPrefix(FileOps.tempPrefix) && StoreNames.matches($0, patterns: patterns) }
            .sorted()
            .compactMap { name in
                guard isStoredFile(dir.appendingPathComponent(name).path) else { return nil }
                let s = StoreNames.split(name, patterns: patterns)
                return s.id.isEmpty ? nil : s
            }
    }

    /// A writer killed mid-save leaves its staged copy behind; nothing else uses our temp prefix.
    private func removeStaleStagedFiles() {
        let dirs = [imagesRoot] + tagDirectories().map { labelsRoot.appendingPathComponent($0) } + [root]
        for dir in dirs {
            for name in FileOps.listDirectory(dir.path) where name.hasPrefix(FileOps.tempPrefix) {
                unlink(dir.appendingPathComponent(name).path)
            }
        }
    }

    /// Tag directories under `labels/` that stay inside the studies folder.
    private func tagDirectories() -> [String] {
        FileOps.listDirectory(labelsRoot.path).sorted().filter { tag in
            let p = labelsRoot.appendingPathComponent(tag).path
            guard !tag.hasPrefix("."), FileOps.isDirectory(p), let real = FileOps.realPath(p) else { return false }
            return FileOps.isInside(real, root: root.path)
        }
    }

    /// Upstream's `_reconcile_datastore`: reload the JSON if someone else changed it, drop entries whose files
    /// vanished, add new images and labels of known images; write only when something changed.
    private func reconcileLocked() throws {
        let mtime = FileOps.modificationTime(jsonURL.path)
        if mtime != nil && mtime != lastJSONMTime { try loadDocumentLocked() }
        let before = doc
        for (id, obj) in doc.objects {
            if !isStoredFile(imagePathLocked(id, obj).path) {
                doc.objects[id] = nil
                continue
            }
            for (tag, e) in obj.labels where !isStoredFile(labelPathLocked(id, tag, e).path) {
                doc.objects[id]?.labels[tag] = nil
            }
        }
        let now = Self.now()
        for (id, ext) in scan(imagesRoot) where doc.objects[id] == nil {
            doc.objects[id] = ImageObject(image: FileEntry(ext: ext, info: ["ts": .int(now), "name": .string(id + ext)]))
        }
        for tag in tagDirectories() {
            for (id, ext) in scan(labelsRoot.appendingPathComponent(tag))
            where doc.objects[id] != nil && doc.objects[id]?.labels[tag] == nil {
                doc.objects[id]?.labels[tag] = FileEntry(ext: ext, info: ["ts": .int(now), "name": .string(id + ext)])
            }
        }
        if doc != before || (mtime == nil && !readOnly) { try writeDocumentLocked() }
    }

    /// After replacing an image, re-discover label files already on disk for it (upstream drops them from the
    /// JSON until the next reconcile; we do it at once).
    private func reconcileLabelsOf(_ id: String) throws {
        let now = Self.now()
        let exts = patterns.map { $0.hasPrefix("*") ? String($0.dropFirst()) : $0 }
        for tag in tagDirectories() {
            let dir = labelsRoot.appendingPathComponent(tag)
            for ext in exts where isStoredFile(dir.appendingPathComponent(id + ext).path) {
                doc.objects[id]?.labels[tag] = FileEntry(ext: ext, info: ["ts": .int(now), "name": .string(id + ext)])
            }
        }
    }

    static func now() -> Int { Int(Date().timeIntervalSince1970) }
}
