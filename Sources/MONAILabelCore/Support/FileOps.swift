import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Crash-safe file writing: every write goes to a temporary file in the destination directory, is fsynced,
/// renamed over the target and the directory is fsynced, so a kill at any instant leaves either the old or the
/// new file, never a torn one. Error messages name files by their last path component: they can reach a client,
/// which must never learn the server's absolute paths.
public enum FileOps {
    /// Prefix of our temporary files. It carries no image extension, so a reconcile never mistakes one for an image.
    public static let tempPrefix = ".mltmp-"

    /// Writes `bytes` to `url` atomically; the file gets `mode` (0600 for secrets) from its creation on.
    public static func atomicWrite(_ bytes: [UInt8], to url: URL, mode: mode_t = 0o644) throws {
        let dir = url.deletingLastPathComponent()
        let tmp = dir.appendingPathComponent(tempPrefix + UUID().uuidString)
        let fd = open(tmp.path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard fd >= 0 else { throw MONAILabelError.io("cannot write \(url.lastPathComponent): \(errnoText())") }
        var ok = false
        defer {
            if !ok { unlink(tmp.path) }
        }
        do {
            defer { close(fd) }
            try writeAll(fd, bytes)
            guard fsync(fd) == 0 else { throw MONAILabelError.io("cannot sync \(url.lastPathComponent): \(errnoText())") }
        }
        guard rename(tmp.path, url.path) == 0 else {
            throw MONAILabelError.io("cannot replace \(url.lastPathComponent): \(errnoText())")
        }
        ok = true
        fsyncDirectory(dir)
    }

    /// Copies `source` to `destination` atomically (temp file, fsync, rename, directory fsync).
    public static func atomicCopy(from source: URL, to destination: URL) throws {
        let dir = destination.deletingLastPathComponent()
        let tmp = dir.appendingPathComponent(tempPrefix + UUID().uuidString)
        let input = open(source.path, O_RDONLY | O_CLOEXEC)
        guard input >= 0 else { throw MONAILabelError.io("cannot open \(source.lastPathComponent): \(errnoText())") }
        defer { close(input) }
        let out = open(tmp.path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard out >= 0 else { throw MONAILabelError.io("cannot write \(destination.lastPathComponent): \(errnoText())") }
        var ok = false
        defer {
            if !ok { unlink(tmp.path) }
        }
        do {
            defer { close(out) }
            var buffer = [UInt8](repeating: 0, count: 1 << 20)
            while true {
                let n = buffer.withUnsafeMutableBytes { read(input, $0.baseAddress, $0.count) }
                if n < 0 {
                    if errno == EINTR { continue }
                    throw MONAILabelError.io("cannot read \(source.lastPathComponent): \(errnoText())")
                }
                if n == 0 { break }
                try writeAll(out, buffer[0..<n])
            }
            guard fsync(out) == 0 else { throw MONAILabelError.io("cannot sync \(destination.lastPathComponent): \(errnoText())") }
        }
        guard rename(tmp.path, destination.path) == 0 else {
            throw MONAILabelError.io("cannot replace \(destination.lastPathComponent): \(errnoText())")
        }
        ok = true
        fsyncDirectory(dir)
    }

    /// Makes `previous` a copy of `file` that survives `file` being replaced: a hard link renamed into place
    /// (no bytes copied), or an atomic copy where the file system has no hard links. Replaces an older `previous`.
    public static func keepPrevious(_ file: URL, as previous: URL) throws {
        let dir = previous.deletingLastPathComponent()
        let tmp = dir.appendingPathComponent(tempPrefix + UUID().uuidString)
        if link(file.path, tmp.path) == 0 {
            guard rename(tmp.path, previous.path) == 0 else {
                let reason = errnoText()
                unlink(tmp.path)
                throw MONAILabelError.io("cannot keep the previous \(file.lastPathComponent): \(reason)")
            }
            fsyncDirectory(dir)
            return
        }
        try atomicCopy(from: file, to: previous)
    }

    /// Creates `url` and its parents, then fsyncs the parent so the new directory survives a crash.
    public static func makeDirectory(_ url: URL) throws {
        try makeDirectoryTree(url.path)
        fsyncDirectory(url.deletingLastPathComponent())
    }

    /// `mkdir -p` with an errno message (Foundation's error texts carry the full path).
    private static func makeDirectoryTree(_ path: String) throws {
        if isDirectory(path) { return }
        let parent = (path as NSString).deletingLastPathComponent
        if !parent.isEmpty && parent != path { try makeDirectoryTree(parent) }
        if mkdir(path, 0o777) != 0 && !(errno == EEXIST && isDirectory(path)) {
            throw MONAILabelError.io(
                "cannot create directory \((path as NSString).lastPathComponent): \(errnoText())")
        }
    }

    /// Removes a file, ignoring "does not exist", then fsyncs its directory.
    public static func removeFile(_ url: URL) throws {
        if unlink(url.path) != 0 && errno != ENOENT {
            throw MONAILabelError.io("cannot delete \(url.lastPathComponent): \(errnoText())")
        }
        fsyncDirectory(url.deletingLastPathComponent())
    }

    public static func fsyncDirectory(_ dir: URL) {
        let fd = open(dir.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return }
        _ = fsync(fd)
        close(fd)
    }

    /// The canonical absolute path (symlinks resolved), or nil when it does not exist.
    public static func realPath(_ path: String) -> String? {
        guard let p = realpath(path, nil) else { return nil }
        defer { free(p) }
        return String(cString: p)
    }

    /// Whether `path` lies inside directory `root` (both canonical).
    public static func isInside(_ path: String, root: String) -> Bool {
        path == root || path.hasPrefix(root.hasSuffix("/") ? root : root + "/")
    }

    public static func isRegularFile(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG
    }

    /// Whether anything (a dangling symlink included) has this name.
    public static func exists(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0
    }

    public static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    /// Modification time in nanoseconds, or nil when the file is missing.
    public static func modificationTime(_ path: String) -> Int64? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec)
    }

    public static func fileSize(_ path: String) -> Int64? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return Int64(st.st_size)
    }

    /// Names in a directory (no `.`/`..`), unsorted; empty when it cannot be read.
    public static func listDirectory(_ path: String) -> [String] {
        guard let d = opendir(path) else { return [] }
        defer { closedir(d) }
        var names: [String] = []
        while let e = readdir(d) {
            let name = withUnsafePointer(to: e.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    static func writeAll<C: Collection>(_ fd: Int32, _ bytes: C) throws where C.Element == UInt8 {
        try bytes.withContiguousStorageIfAvailable { buf in
            var off = 0
            while off < buf.count {
                let n = write(fd, buf.baseAddress! + off, buf.count - off)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw MONAILabelError.io("write failed: \(errnoText())")
                }
                off += n
            }
        } ?? { try writeAll(fd, Array(bytes)) }()
    }

    static func errnoText() -> String { String(cString: strerror(errno)) }
}
