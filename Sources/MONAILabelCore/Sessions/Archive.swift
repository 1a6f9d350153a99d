import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Unpacks a session upload (`PUT /session/?uncompress=true`). Extraction runs `bsdtar` (zip and every tar
/// flavour) or GNU `tar` (tar flavours only); both refuse absolute paths and `..` members by default, and the
/// result is checked again so nothing lands outside the target folder.
///
/// A few megabytes of archive can expand to gigabytes (or to millions of empty files), and an archive's own
/// size fields can lie, so the limits are enforced on what actually lands on disk: the folder is measured while
/// the extractor runs and the extractor is killed as soon as either limit is passed.
enum Archive {
    /// What one extraction may produce.
    struct Limits: Sendable {
        /// Total bytes of the extracted regular files.
        var maxBytes: Int64
        /// Files, folders and links together.
        var maxFiles: Int
    }

    /// How often the folder is measured while the extractor runs. Between two looks a fast disk writes some tens
    /// of megabytes, which is the most an archive can overshoot the byte limit by before it is stopped.
    static let pollInterval: useconds_t = 10_000

    static func extract(_ file: URL, fileName: String, into dir: URL, limits: Limits) throws {
        let lower = fileName.lowercased()
        let tools = ["/usr/bin/bsdtar", "/bin/bsdtar"].filter { FileManager.default.isExecutableFile(atPath: $0) }
        let isZip = lower.hasSuffix(".zip")
        let tool: String
        if let t = tools.first {
            tool = t
        } else if !isZip && FileManager.default.isExecutableFile(atPath: "/usr/bin/tar") {
            tool = "/usr/bin/tar"
        } else {
            throw MONAILabelError.invalid("cannot unpack '\(fileName)': install libarchive-tools (bsdtar)")
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: tool)
        p.arguments = ["-x", "-f", file.path, "-C", dir.path, "--no-same-owner"]
        p.standardOutput = FileHandle.nullDevice
        p.standardInput = FileHandle.nullDevice
        let err = Pipe()
        p.standardError = err
        // Drained as it arrives (a chatty extractor must not block on a full pipe while we poll), keeping the start.
        let messages = CappedBuffer(limit: 4096)
        err.fileHandleForReading.readabilityHandler = { h in
            let d = h.availableData
            if d.isEmpty { h.readabilityHandler = nil } else { messages.append(d) }
        }
        do {
            try p.run()
        } catch {
            err.fileHandleForReading.readabilityHandler = nil
            throw MONAILabelError.io("cannot run \((tool as NSString).lastPathComponent): \(error.localizedDescription)")
        }
        var exceeded: String?
        // hasExited, not isRunning: Foundation can see the exit only when an unrelated process exits too.
        while !p.hasExited {
            usleep(pollInterval)
            exceeded = exceededLimit(dir, limits)
            if exceeded != nil {
                kill(p.processIdentifier, SIGKILL)
                break
            }
        }
        let ended = p.waitForExit()
        err.fileHandleForReading.readabilityHandler = nil
        // The extractor may have finished between two looks.
        if exceeded == nil { exceeded = exceededLimit(dir, limits) }
        if let exceeded {
            try? FileManager.default.removeItem(at: dir)
            throw MONAILabelError.invalid("archive '\(fileName)' is refused: it expands to \(exceeded)")
        }
        guard ended == .exited(0) else {
            // The extractor names the spooled upload and the session folder by absolute path; the client knows
            // neither, so they become the upload's name and a plain phrase.
            let text = messages.text.trimmingCharacters(in: .whitespacesAndNewlines)
                .replacingOccurrences(of: file.path, with: fileName)
                .replacingOccurrences(of: dir.path, with: "the session folder")
            throw MONAILabelError.invalid("cannot unpack '\(fileName)': \(text)")
        }
        guard let root = FileOps.realPath(dir.path) else { throw MONAILabelError.io("session folder vanished") }
        let e = FileManager.default.enumerator(atPath: dir.path)
        while let rel = e?.nextObject() as? String {
            let p = dir.appendingPathComponent(rel).path
            if let real = FileOps.realPath(p), !FileOps.isInside(real, root: root) {
                throw MONAILabelError.invalid("archive '\(fileName)' has a member pointing outside the session")
            }
        }
    }

    /// A description of the first limit `dir` passes ("more than N bytes ..."), or nil while within both.
    static func exceededLimit(_ dir: URL, _ limits: Limits) -> String? {
        var bytes: Int64 = 0
        var entries = 0
        var pending = [dir.path]
        while let folder = pending.popLast() {
            for name in FileOps.listDirectory(folder) {
                let path = folder + "/" + name
                var st = stat()
                guard lstat(path, &st) == 0 else { continue }
                entries += 1
                if entries > limits.maxFiles {
                    return "more than \(limits.maxFiles) files (a session holds at most that many)"
                }
                switch st.st_mode & S_IFMT {
                case S_IFDIR: pending.append(path)
                case S_IFREG:
                    bytes += Int64(st.st_size)
                    if bytes > limits.maxBytes {
                        return "more than \(limits.maxBytes) bytes (MONAI_LABEL_SESSION_MAX_BYTES)"
                    }
                default: continue
                }
            }
        }
        return nil
    }
}
