import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Watches the studies folder, the labels folder and every tag folder with inotify and calls `onChange` (at most
/// about every 200 ms) when files appear, vanish or are rewritten — upstream's watchdog-driven auto-reload.
final class DirectoryWatcher: @unchecked Sendable {
    private let fd: Int32
    private let labelsDir: URL
    private let onChange: @Sendable () -> Void
    private let lock = NSLock()
    private var stopped = false
    private var watchedTags = Set<String>()
    private var stopPipe: [Int32] = [-1, -1]

    init?(root: URL, labelsDir: URL, onChange: @escaping @Sendable () -> Void) {
        fd = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        guard fd >= 0 else { return nil }
        self.labelsDir = labelsDir
        self.onChange = onChange
        guard pipe(&stopPipe) == 0 else {
            close(fd)
            return nil
        }
        let mask = UInt32(IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_CLOSE_WRITE)
        _ = inotify_add_watch(fd, root.path, mask)
        _ = inotify_add_watch(fd, labelsDir.path, mask)
        addTagWatches()
        let thread = Thread { [self] in run() }
        thread.name = "datastore-watch"
        thread.start()
    }

    private func addTagWatches() {
        let mask = UInt32(IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_CLOSE_WRITE)
        for tag in FileOps.listDirectory(labelsDir.path) where !watchedTags.contains(tag) {
            let p = labelsDir.appendingPathComponent(tag).path
            if FileOps.isDirectory(p), inotify_add_watch(fd, p, mask) >= 0 { watchedTags.insert(tag) }
        }
    }

    func stop() {
        lock.lock()
        defer { lock.unlock() }
        if stopped { return }
        stopped = true
        var b: UInt8 = 1
        _ = write(stopPipe[1], &b, 1)
    }

    private func run() {
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        defer {
            close(fd)
            close(stopPipe[0])
            close(stopPipe[1])
        }
        var pending = false
        while true {
            var fds = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: stopPipe[0], events: Int16(POLLIN), revents: 0)]
            // While changes are pending, wait a short quiet period so a burst of events causes one reconcile.
            let r = poll(&fds, 2, pending ? 200 : -1)
            if r < 0 && errno != EINTR { return }
            if fds[1].revents != 0 { return }
            if r == 0 {
                pending = false
                addTagWatches()
                onChange()
                continue
            }
            if fds[0].revents != 0 {
                while buffer.withUnsafeMutableBytes({ read(fd, $0.baseAddress, $0.count) }) > 0 { pending = true }
            }
        }
    }
}
