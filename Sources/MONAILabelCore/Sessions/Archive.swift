import Foundation

/// Unpacks a session upload (`PUT /session/?uncompress=true`). Extraction runs `bsdtar` (zip and every tar
/// flavour) or GNU `tar` (tar flavours only); both refuse absolute paths and `..` members by default, and the
/// result is checked again so nothing lands outside the target folder.
enum Archive {
    static func extract(_ file: URL, fileName: String, into dir: URL) throws {
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
        let err = Pipe()
        p.standardError = err
        do {
            try p.run()
        } catch {
            throw MONAILabelError.io("cannot run \(tool): \(error.localizedDescription)")
        }
        let message = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            throw MONAILabelError.invalid("cannot unpack '\(fileName)': \(message.trimmingCharacters(in: .whitespacesAndNewlines))")
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
}
