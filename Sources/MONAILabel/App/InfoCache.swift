import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// `GET /info/` as pre-serialised bytes, rebuilt only when something it shows has changed.
///
/// Building the document walks every model, trainer and scoring method and serialises it all; at tens of
/// thousands of requests a second that is most of the cost. Each request instead compares a cheap key of
/// everything `MONAILabelApp.info()` reads that can change while the server runs with the key the cached bytes
/// were built from:
/// - the datastore's status (`Datastore.status()`, cached by the local store between writes; a DICOMweb store's
///   changes after each listing refresh), which catches uploads, label saves and deletions, files picked up by
///   the folder watcher, and remote refreshes;
/// - a `stat` of every model file path (published, pretrained) and every trainer's `train_stats.json`, so weights
///   published by `PUT /model`, a training run or a copy into `model/` by hand, and new training stats, show at
///   once;
/// - the key of the training planner's last plan, which is computed in the background after datastore changes.
///
/// Everything else in the document (app name, models' configs, strategies, scoring methods, the backend's
/// devices) comes from the app's settings and definition, which are fixed for the life of the app, and so of
/// its cache. Whoever adds to `info()` something that can change at run time must add it to `Key`.
public final class InfoCache: @unchecked Sendable {
    private let app: MONAILabelApp
    /// The files whose stamps are part of the key, fixed at start-up (the models and trainers are).
    private let watchedFiles: [String]
    private let lock = NSLock()
    private var cached: (key: Key, bytes: [UInt8])?

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

    public init(app: MONAILabelApp) {
        self.app = app
        var files = app.inferTasks.values.flatMap { $0.modelPaths.map(\.path) }
        for (name, _) in app.trainDefinitions {
            files.append(app.modelDir.appendingPathComponent(name).appendingPathComponent("train_stats.json").path)
        }
        watchedFiles = files
    }

    /// The compact JSON of `app.info()` as it would be built now.
    public func bytes() -> [UInt8] {
        // The key is taken before building: a change during the build leaves the stored key older than the
        // bytes, so the next request rebuilds instead of serving a stale document as current.
        let key = currentKey()
        lock.lock()
        if let c = cached, c.key == key {
            lock.unlock()
            return c.bytes
        }
        lock.unlock()
        let bytes = app.info().compactBytes()
        lock.lock()
        cached = (key, bytes)
        lock.unlock()
        return bytes
    }

    func currentKey() -> Key {
        Key(datastore: app.datastore.status(), files: watchedFiles.map(FileStamp.init(path:)),
            planKey: app.training.planKey)
    }
}
