import Foundation
import Imaging

/// Checks that an upload is an image of the kind its extension claims before it enters the store, so a
/// truncated or mislabelled file is refused at upload time instead of failing every later inference.
public enum ImageValidation {
    /// The datastore's validator: throws `invalidInput` with the reason.
    public static let validator: @Sendable (URL, String) throws -> Void = { url, ext in
        try validate(url, ext: ext)
    }

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
        // What the header claims (size, the voxel limit) is checked now, not at the first inference.
        do { try ImageIO.checkHeader(url, ext: e) } catch let error as ImagingError {
            throw MONAILabelError.invalid(error.message.replacingOccurrences(of: url.path, with: "the upload"))
        }
    }
}
