import Foundation
import Imaging

/// Checks that an upload is an image of the kind its extension claims before it enters the store, so a
/// truncated or mislabelled file is refused at upload time instead of failing every later inference.
///
/// Volumes the models read (`.nii`, `.nii.gz`, `.nrrd`, `.seg.nrrd`) are read through with the same readers
/// inference uses, so a truncated or corrupt stream, or a header claiming more voxels than the file holds (or
/// than `MONAI_LABEL_MAX_VOXELS` allows), is a 422 now; other formats are checked by their signature.
/// Labels are not compared with their image's grid: upstream stores any label file as sent.
public enum ImageValidation {
    /// Read-throughs running at once: each holds one decoded volume, so a burst of uploads cannot hold more
    /// than this many volumes in memory.
    static let readThroughs = DispatchSemaphore(value: 2)

    /// The datastore's validator: throws `invalidInput` with the reason.
    public static let validator: @Sendable (URL, String) throws -> Void = { url, ext in
        try validate(url, ext: ext)
    }

    /// Throws `invalidInput` unless `url` holds an image of the kind `ext` names (read through for volumes).
    public static func validate(_ url: URL, ext: String) throws {
        guard let h = FileHandle(forReadingAtPath: url.path) else {
            throw MONAILabelError.invalid("cannot read the uploaded file")
        }
        defer { try? h.close() }
        let head = [UInt8](h.readData(ofLength: 600))
        func starts(_ bytes: [UInt8], at offset: Int = 0) -> Bool {
            head.count >= offset + bytes.count && Array(head[offset..<offset + bytes.count]) == bytes
        }
        let e = ext.lowercased()
        let ok: Bool
        let what: String
        switch e {
        case ".nii.gz", ".nrrd.gz":
            what = "a gzip-compressed NIfTI image"
            ok = starts([0x1F, 0x8B])
        case ".nii":
            what = "a NIfTI-1 or NIfTI-2 image"
            ok = starts([0x5C, 0x01, 0, 0]) || starts([0, 0, 0x01, 0x5C]) || starts([0x1C, 0x02, 0, 0])
                || starts([0, 0, 0x02, 0x1C])
        case ".nrrd", ".seg.nrrd":
            what = "an NRRD image"
            ok = starts(Array("NRRD000".utf8))
        case ".png":
            what = "a PNG image"
            ok = starts([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        case ".jpg", ".jpeg":
            what = "a JPEG image"
            ok = starts([0xFF, 0xD8, 0xFF])
        case ".tif", ".tiff", ".svs":
            what = "a TIFF image"
            ok = starts([0x49, 0x49, 0x2A, 0]) || starts([0x4D, 0x4D, 0, 0x2A]) || starts([0x49, 0x49, 0x2B, 0])
        case ".xml":
            what = "an XML document"
            ok = head.drop(while: { $0 == 0xEF || $0 == 0xBB || $0 == 0xBF || $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 })
                .first == UInt8(ascii: "<")
        default:
            what = "an image"
            ok = !head.isEmpty
        }
        guard ok else { throw MONAILabelError.invalid("the uploaded file is not \(what) (\(ext))") }
        if let volumeExt = ImageIO.fileExtension(of: "x" + e), volumeExt == e {
            // What the header claims (size, the voxel limit) is checked first: cheap, and the clearest message.
            do { try ImageIO.checkHeader(url, ext: e) } catch let error as ImagingError {
                throw MONAILabelError.invalid(error.message.replacingOccurrences(of: url.path, with: "the upload"))
            }
            try readThrough(url, ext: volumeExt)
        }
    }

    /// Decodes the whole volume. The readers pick the format from the name, so a spooled upload without the
    /// extension is read through a link that has it, made in the process's private temp folder.
    static func readThrough(_ url: URL, ext: String) throws {
        readThroughs.wait()
        defer { readThroughs.signal() }
        var source = url
        var link: URL?
        if ImageIO.fileExtension(of: url.lastPathComponent) != ext {
            let l = try ProcessTemp.makeFolder().appendingPathComponent("readthrough-\(UUID().uuidString)\(ext)")
            guard symlink(url.path, l.path) == 0 else {
                throw MONAILabelError.io("cannot check the uploaded file: \(String(cString: strerror(errno)))")
            }
            link = l
            source = l
        }
        defer { if let link { unlink(link.path) } }
        do {
            _ = try ImageIO.load(source)
        } catch {
            // The readers name the file by its (server) path; the client knows it as "the uploaded file".
            let reason = "\(error)".replacingOccurrences(of: source.path, with: "the uploaded file")
                .replacingOccurrences(of: url.path, with: "the uploaded file")
            throw MONAILabelError.invalid("the uploaded file is not a readable \(ext) image: \(reason)")
        }
    }
}
