import Foundation
import ZipArchive

#if canImport(Glibc)
import Glibc
#endif

/// A MONAI bundle zip (as the zoo publishes it: `<name>/configs/...` under one base folder, as monaihosting and
/// GitHub serve it, or `configs/...` at the top, as NGC does) installed as `<app>/model/<name>`, the folder
/// `--conf models <name>` reads. The archive is checked whole before anything is written (`ZipArchive`), extracted
/// into a private temporary folder beside the destination and renamed into place, so a crash or a refused archive
/// never leaves a partial bundle where the server looks for one.
public enum BundleArchive {
    /// Extracts `zip` into `<modelDir>/<name>` (`name` nil: the zip's base folder, else its file name without
    /// `.zip`) and returns the installed folder. With `requireServable` the bundle must also load as a model this
    /// server serves (`MONAIBundle.load`), else nothing is installed. Throws `MONAILabelError` naming the problem;
    /// an existing `<modelDir>/<name>` is never replaced.
    @discardableResult
    public static func install(zip: URL, modelDir: URL, name: String? = nil, requireServable: Bool,
                               limits: ZipLimits = ZipLimits()) throws -> URL
    {
        let archive: ZipArchive
        do { archive = try ZipArchive(url: zip, limits: limits) } catch let e as ZipError {
            throw MONAILabelError.invalid("\(zip.lastPathComponent) is refused: \(e.message)")
        }
        let base = try bundleBase(archive.members, zip: zip)
        var stem = zip.lastPathComponent
        if stem.lowercased().hasSuffix(".zip") { stem = String(stem.dropLast(4)) }
        let target = name ?? base ?? stem
        guard !target.isEmpty, !target.hasPrefix("."), !target.contains("/"), target.utf8.count <= 255 else {
            throw MONAILabelError.invalid("'\(target)' cannot be a bundle folder name")
        }
        let destination = modelDir.appendingPathComponent(target)
        guard !FileOps.exists(destination.path) else {
            throw MONAILabelError.invalid("model/\(target) already exists; remove it first to replace the bundle")
        }
        try FileOps.makeDirectory(modelDir)
        removeStaleExtractions(of: target, in: modelDir)
        let temp = modelDir.appendingPathComponent(".\(target).extract-\(getpid())")
        try? FileManager.default.removeItem(at: temp)
        guard mkdir(temp.path, 0o700) == 0 else {
            throw MONAILabelError.io("cannot create a temporary folder in model/: \(String(cString: strerror(errno)))")
        }
        defer { try? FileManager.default.removeItem(at: temp) }
        do { try archive.extract(into: temp) } catch let e as ZipError {
            throw MONAILabelError.invalid("\(zip.lastPathComponent) is refused: \(e.message)")
        }
        let root = base.map { temp.appendingPathComponent($0) } ?? temp
        if requireServable {
            do { _ = try MONAIBundle.load(folder: root, name: target) } catch let e as MONAILabelError {
                throw MONAILabelError.invalid("\(zip.lastPathComponent) is not installed: \(e.message)")
            }
        }
        chmod(root.path, 0o755)
        guard rename(root.path, destination.path) == 0 else {
            throw MONAILabelError.io("cannot move the bundle into model/\(target): \(String(cString: strerror(errno)))")
        }
        FileOps.fsyncDirectory(modelDir)
        return destination
    }

    /// The base folder the bundle's `configs/` sits in, nil when it sits at the top; macOS's `__MACOSX/` copies are
    /// ignored.
    static func bundleBase(_ members: [ZipMember], zip: URL) throws -> String? {
        let paths = members.map(\.path).filter { $0 != "__MACOSX" && !$0.hasPrefix("__MACOSX/") }
        if paths.contains(where: { $0 == "configs" || $0.hasPrefix("configs/") }) { return nil }
        let tops = Set(paths.map { String($0.prefix { $0 != "/" }) })
        if tops.count == 1, let top = tops.first, paths.contains(where: { $0.hasPrefix("\(top)/configs/") }) { return top }
        throw MONAILabelError.invalid("\(zip.lastPathComponent) holds no MONAI bundle: no configs/ folder at its top or "
            + "inside its single base folder")
    }

    /// Temporary folders of this bundle left by extractions whose process died (a crash, a kill).
    static func removeStaleExtractions(of target: String, in modelDir: URL) {
        let prefix = ".\(target).extract-"
        for entry in FileOps.listDirectory(modelDir.path) where entry.hasPrefix(prefix) {
            guard let pid = Int32(entry.dropFirst(prefix.count)), pid != getpid(), !ProcessTemp.isAlive(pid) else { continue }
            try? FileManager.default.removeItem(at: modelDir.appendingPathComponent(entry))
        }
    }
}
