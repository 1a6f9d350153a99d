import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// `GET /info/` as pre-serialised bytes, rebuilt only when something it shows has changed.
///
/// Building the document walks every model, trainer and scoring method and serialises it all; at tens of
/// thousands of requests a second that is most of the cost. Each request instead compares a cheap key of
/// everything `MONAILabelApp.info()` reads that can change while the server runs with the key the cached bytes
/// were built from (`cachedBytes()` is cheap enough for the HTTP server's event loop):
/// - the datastore's status (`Datastore.status()`, cached by the local store between writes; a DICOMweb store's
///   changes after each listing refresh), which catches uploads, label saves and deletions, files picked up by
///   the folder watcher, and remote refreshes;
/// - a `stat` of every model file path (published, pretrained) and every trainer's `train_stats.json`, so weights
///   published by `PUT /model`, a training run or a copy into `model/` by hand, and new training stats, show at
///   once. The stamps are taken again only when `FileChangeMonitor` reports that the folders holding those files
///   may have changed (one non-blocking read per request instead of a `stat` per file); a file rewritten in place
///   counts from when its writer closes it;
/// - the key of the training planner's last plan, which is computed in the background after datastore changes.
///
/// Everything else in the document (app name, models' configs, strategies, scoring methods, the backend's
/// devices) comes from the app's settings and definition, which are fixed for the life of the app, and so of
/// its cache. Whoever adds to `info()` something that can change at run time must add it to `Key`.
public final class InfoCache: @unchecked Sendable {
    private let app: MONAILabelApp
    /// The files whose stamps are part of the key, fixed at start-up (the models and trainers are).
    private let watchedFiles: [String]
    // Guarded by `lock`.
    private let lock = NSLock()
    private var cached: (key: Key, bytes: [UInt8])?
    private let monitor: FileChangeMonitor
    /// The watched files' stamps as last taken; current as long as `monitor` reports no change.
    private var stamps: [FileStamp?] = []

    /// What the cached bytes were built from; equal keys mean equal documents.
    struct Key: Equatable {
        var datastore: DatastoreStatus
        var files: [FileStamp?]
        var planKey: String?
    }

    /// Identifies one version of a file: a rename over it (as every write here does) changes the inode, an
    /// in-place rewrite the size or the nanosecond modification time.
    struct FileStamp: Equatable {
        var device: UInt64
        var inode: UInt64
        var size: Int64
        var mtimeSeconds: Int64
        var mtimeNanoseconds: Int64

        init?(path: String) {
            var st = stat()
            guard stat(path, &st) == 0 else { return nil }
            device = UInt64(st.st_dev)
            inode = UInt64(st.st_ino)
            size = Int64(st.st_size)
            mtimeSeconds = Int64(st.st_mtim.tv_sec)
            mtimeNanoseconds = Int64(st.st_mtim.tv_nsec)
        }
    }

    /// `watchFolders` false takes the files' stamps on every request (what happens anyway where inotify is
    /// unavailable); for tests of that path.
    public init(app: MONAILabelApp, watchFolders: Bool = true) {
        self.app = app
        var files = app.inferTasks.values.flatMap { $0.modelPaths.map(\.path) }
        for (name, _) in app.trainDefinitions {
            files.append(app.modelDir.appendingPathComponent(name).appendingPathComponent("train_stats.json").path)
        }
        watchedFiles = files
        monitor = FileChangeMonitor(files: files, enabled: watchFolders)
    }

    /// The compact JSON of `app.info()` as it would be built now.
    public func bytes() -> [UInt8] {
        // The key is taken before building: a change during the build leaves the stored key older than the
        // bytes, so the next request rebuilds instead of serving a stale document as current.
        let (key, hit) = lookup(datastore: app.datastore.status())
        if let hit { return hit }
        let bytes = app.info().compactBytes()
        lock.withLock { cached = (key, bytes) }
        return bytes
    }

    /// The cached bytes when they are still current, nil when the document must be built (`bytes()`) or the
    /// datastore is busy with a write: what the event loop serves by itself, so it neither builds nor waits.
    public func cachedBytes() -> [UInt8]? {
        guard let status = app.datastore.statusWithoutWaiting() else { return nil }
        return lookup(datastore: status).hit
    }

    /// The current key for the datastore's `status`, and the cached bytes when they were built from it. The
    /// datastore is asked before, outside `lock`: its answer may wait for a write, which must not hold up the
    /// event loop's `cachedBytes()`.
    private func lookup(datastore status: DatastoreStatus) -> (key: Key, hit: [UInt8]?) {
        let planKey = app.training.planKey
        return lock.withLock {
            if monitor.changedSinceLastCall() { stamps = watchedFiles.map(FileStamp.init(path:)) }
            let key = Key(datastore: status, files: stamps, planKey: planKey)
            return (key, cached.flatMap { $0.key == key ? $0.bytes : nil })
        }
    }
}

/// Tells whether any of a fixed set of files may have changed since the last call, from the process's
/// `FolderWatch`: one non-blocking read of an inotify descriptor watching the folders that hold them (and, for a
/// file that is a symbolic link, the folder of its target). A folder that does not exist yet is covered by a watch
/// on its nearest existing ancestor, which reports the folder's creation; every report re-places the watches, and
/// only then does the caller look at the files, so nothing done after its look goes unreported. A report about
/// another monitor's folders counts too (a needless look at the files, never a missed change). Without inotify (no
/// descriptor, or a watch refused by the per-user limit) every call reports a possible change.
final class FileChangeMonitor: @unchecked Sendable {
    private let files: [String]
    private let watch: FolderWatch?
    /// Whether every folder (or its ancestor) has a watch; false reports a change on every call and retries.
    private var armed = false
    /// The watch's report count when the files were last looked at.
    private var seen: UInt64 = 0

    init(files: [String], enabled: Bool = true) {
        self.files = files
        watch = enabled ? FolderWatch.shared : nil
    }

    /// True when something may have changed since the last call (always the first time). The caller serialises
    /// calls.
    func changedSinceLastCall() -> Bool {
        guard let watch, let reports = watch.reports() else { return true }
        if armed && reports == seen { return false }
        var folders: [String] = []
        for file in files {
            folders.append((file as NSString).deletingLastPathComponent)
            folders += Self.linkTargetFolders(file)
        }
        armed = watch.add(folders)
        // The count from before the watches were placed: a report in between makes the next call look again.
        seen = reports
        return true
    }

    /// The folders of the targets a symbolic link leads to (a few hops, a dangling target included): a target can
    /// change without an event in the link's own folder.
    private static func linkTargetFolders(_ file: String) -> [String] {
        var out: [String] = []
        var path = file
        var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        for _ in 0..<8 {
            let n = buf.withUnsafeMutableBufferPointer { readlink(path, $0.baseAddress!, $0.count - 1) }
            guard n > 0 else { break }
            let target = String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            path = target.hasPrefix("/") ? target : ((path as NSString).deletingLastPathComponent as NSString).appendingPathComponent(target)
            out.append((path as NSString).deletingLastPathComponent)
        }
        return out
    }
}

/// The process's one inotify descriptor for `FileChangeMonitor`s (instances are limited per user, 128 by
/// default, and the datastore's folder watcher needs its own), counting the reports read from it. Watches are
/// never removed: a watched folder that is deleted drops its watch by itself.
final class FolderWatch: @unchecked Sendable {
    static let shared = FolderWatch()

    // Guarded by `lock`.
    private let lock = NSLock()
    private let fd: Int32
    private var count: UInt64 = 0
    /// Room for a burst of events (each at most a header and `NAME_MAX` + 1 bytes of name); kept, so a read that
    /// finds nothing, as most do, allocates nothing.
    private var buffer = [UInt8](repeating: 0, count: 4096 + Int(NAME_MAX) + 1)

    /// Creations, deletions, renames in or out, attribute changes (`touch`), files closed after writing, and the
    /// folder itself going away. Writes still in progress (`IN_MODIFY`) are left out: a training run writing
    /// checkpoints beside the watched files would otherwise queue an event per write.
    private static let mask = UInt32(IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_CLOSE_WRITE | IN_ATTRIB
                                     | IN_DELETE_SELF | IN_MOVE_SELF)

    private init() { fd = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC)) }

    /// How many times something was reported so far, after reading what is queued; nil without inotify.
    func reports() -> UInt64? {
        guard fd >= 0 else { return nil }
        return lock.withLock {
            while true {
                let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n > 0 {
                    count &+= 1
                    continue
                }
                // Anything but "nothing queued" (an interrupted read) may hide an event: count it as one.
                if n < 0 && errno != EAGAIN { count &+= 1 }
                return count
            }
        }
    }

    /// Places a watch on each folder, or on its nearest existing ancestor while it does not exist. False when a
    /// watch was refused for another reason (the per-user limit).
    func add(_ folders: [String]) -> Bool {
        guard fd >= 0 else { return false }
        var all = true
        for folder in Set(folders) {
            var dir = folder
            while inotify_add_watch(fd, dir, Self.mask) < 0 {
                let parent = (dir as NSString).deletingLastPathComponent
                if errno != ENOENT || parent == dir || parent.isEmpty {
                    all = false
                    break
                }
                dir = parent
            }
        }
        return all
    }
}
