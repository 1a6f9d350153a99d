import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// This process's private temporary folder, `<TMPDIR>/monailabel-<pid>` (mode 0700): the server spools request
/// bodies there, the image writer puts results there (Imaging's `ImageIO` uses the same name) and the dataset
/// zip is built there. A process killed with SIGKILL cannot clean up, so the next server sweeps the folders of
/// processes that no longer exist.
public enum ProcessTemp {
    /// The folder name's prefix; the rest is the owner's pid in decimal and nothing else.
    public static let prefix = "monailabel-"

    /// `$TMPDIR`, else `/tmp`.
    public static var base: URL { FileManager.default.temporaryDirectory }

    /// The private folder of process `pid` under `base`.
    public static func folder(pid: Int32 = getpid(), in base: URL = ProcessTemp.base) -> URL {
        base.appendingPathComponent(prefix + String(pid))
    }

    /// Creates (when needed) and returns this process's private folder. One that already exists (left by an
    /// earlier process with the same pid) is used only when it is a real folder of our user that nobody else can
    /// enter: in a shared `/tmp` another user could have made it to read our uploads.
    public static func makeFolder(in base: URL = ProcessTemp.base) throws -> URL {
        let dir = folder(in: base)
        if mkdir(dir.path, 0o700) != 0 && errno != EEXIST {
            throw MONAILabelError.io(
                "cannot create the private temporary folder \(dir.lastPathComponent): \(String(cString: strerror(errno)))")
        }
        var st = stat()
        guard lstat(dir.path, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR, st.st_uid == getuid(),
            st.st_mode & 0o077 == 0
        else {
            throw MONAILabelError.io(
                "the private temporary folder \(dir.lastPathComponent) exists but is not a folder of this user with "
                    + "mode 0700; remove it")
        }
        return dir
    }

    /// The pid a folder name belongs to: exactly `monailabel-<digits>` with a positive pid, else nil (so no other
    /// program's files ever match).
    public static func ownerPID(ofFolderNamed name: String) -> Int32? {
        guard name.hasPrefix(prefix) else { return nil }
        let digits = name.dropFirst(prefix.count)
        guard !digits.isEmpty, digits.count <= 10, digits.allSatisfy({ $0 >= "0" && $0 <= "9" }),
            let pid = Int32(digits), pid > 0
        else { return nil }
        return pid
    }

    /// Whether a process with this pid exists (one of another user counts: we may not signal it, but it lives).
    public static func isAlive(_ pid: Int32) -> Bool {
        kill(pid, 0) == 0 || errno == EPERM
    }

    /// Removes the private folders under `base` whose owning process is gone: real folders (not links) of our own
    /// user named exactly `monailabel-<pid>`, never this process's nor a live one's. Returns the names removed.
    @discardableResult
    public static func sweepDead(in base: URL = ProcessTemp.base, isAlive: (Int32) -> Bool = ProcessTemp.isAlive)
        -> [String]
    {
        let me = getpid()
        var removed: [String] = []
        for name in FileOps.listDirectory(base.path).sorted() {
            guard let pid = ownerPID(ofFolderNamed: name), pid != me, !isAlive(pid) else { continue }
            let path = base.appendingPathComponent(name)
            var st = stat()
            guard lstat(path.path, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR, st.st_uid == getuid() else { continue }
            if (try? FileManager.default.removeItem(at: path)) != nil { removed.append(name) }
        }
        return removed
    }
}
