import Foundation

/// Loading and writing images by file name, as MONAI Label's `LoadImage` and result writer pick formats.
public enum ImageIO {
    /// The known image extensions, longest first (`.seg.nrrd` before `.nrrd`, `.nii.gz` before `.gz`).
    public static let extensions = [".seg.nrrd", ".nii.gz", ".nii", ".nrrd"]

    /// The image extension of a file name (`.nii.gz`, `.seg.nrrd`, ...), or nil when it is not one we read.
    public static func fileExtension(of name: String) -> String? {
        let lower = name.lowercased()
        return extensions.first { lower.hasSuffix($0) }
    }

    /// Reads a `.nii`, `.nii.gz`, `.nrrd` or `.seg.nrrd` image (`LoadImage` + `EnsureChannelFirst`).
    public static func load(_ url: URL) throws -> Volume {
        switch fileExtension(of: url.lastPathComponent) {
        case ".nii", ".nii.gz": return try NIfTI.read(url)
        case ".nrrd", ".seg.nrrd": return try NRRD.read(url)
        default:
            throw ImagingError("\(url.path): unsupported image format (supported: \(extensions.joined(separator: ", ")))")
        }
    }

    /// The grid (spatial shape and affine) of an image, from its header alone.
    public static func grid(_ url: URL) throws -> Grid {
        switch fileExtension(of: url.lastPathComponent) {
        case ".nii", ".nii.gz": return try NIfTI.readGrid(url)
        case ".nrrd", ".seg.nrrd": return try NRRD.readGrid(url)
        default:
            throw ImagingError("\(url.lastPathComponent): unsupported image format (supported: \(extensions.joined(separator: ", ")))")
        }
    }

    /// Checks what a NIfTI or NRRD header claims (plausible dimensions, voxel data that fits in the file, below
    /// `ImagingLimits.maxVoxels`) without decoding or allocating the voxels, so an upload can be refused at once.
    /// `ext` is the name's image extension (an upload's temporary file has none); other formats pass unchecked.
    public static func checkHeader(_ url: URL, ext: String) throws {
        switch ext.lowercased() {
        case ".nii", ".nii.gz": _ = try NIfTI.precheck(path: url.path)
        case ".nrrd", ".seg.nrrd": try NRRD.checkHeader(url)
        default: return
        }
    }

    /// Writes `volume` in the format its extension names (`result_extension`), converted to `dtype`
    /// (`result_dtype`, e.g. `.uint8`) when given. `segments` apply to NRRD only. `compress` chooses a `.nrrd`'s
    /// encoding (gzip or raw; default gzip); a `.seg.nrrd` is always gzip and NIfTI compression follows the name,
    /// as upstream's writers.
    public static func write(
        _ volume: Volume, to url: URL, dtype: VoxelType? = nil, compress: Bool = true, segments: [NRRD.Segment] = []
    ) throws {
        switch fileExtension(of: url.lastPathComponent) {
        case ".nii", ".nii.gz": try NIfTI.write(volume, to: url, dtype: dtype)
        case ".nrrd": try NRRD.write(volume, to: url, dtype: dtype, compress: compress, segments: segments)
        case ".seg.nrrd": try NRRD.write(volume, to: url, dtype: dtype, segments: segments)
        default:
            throw ImagingError("\(url.path): cannot write this extension (supported: \(extensions.joined(separator: ", ")))")
        }
    }

    /// `<tmp>/monailabel-<pid>`, mode 0700: results are sent under their file name and clients on the same
    /// machine save them as `<tmp>/<name>` (the Python client does); in the shared temp folder the server's
    /// deletion after the response would then remove the client's copy.
    static func privateTemporaryDirectory() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("monailabel-\(getpid())")
        do {
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
        } catch {
            throw ImagingError("cannot create the results folder \(dir.path): \(error.localizedDescription)")
        }
        return dir
    }

    /// Writes `volume` to a new temporary file with `resultExtension` (e.g. ".nrrd" from 3D Slicer, or the input
    /// image's extension), as upstream's writer does, and returns its URL.
    public static func writeTemporary(
        _ volume: Volume, resultExtension: String, dtype: VoxelType? = nil, compress: Bool = true, directory: URL? = nil,
        segments: [NRRD.Segment] = []
    ) throws -> URL {
        var ext = resultExtension.hasPrefix(".") ? resultExtension : "." + resultExtension
        ext = ext.lowercased()
        guard extensions.contains(ext) else {
            throw ImagingError("unsupported result_extension \(resultExtension) (supported: \(extensions.joined(separator: ", ")))")
        }
        let dir = try directory ?? privateTemporaryDirectory()
        let url = dir.appendingPathComponent("tmp\(UUID().uuidString.prefix(8).lowercased())\(ext)")
        try write(volume, to: url, dtype: dtype, compress: compress, segments: segments)
        return url
    }
}

extension VoxelType {
    /// Parses a `result_dtype` / NumPy dtype name (`uint8`, `int16`, `float32`, `float`, ...).
    public init?(numpyName: String) {
        switch numpyName.lowercased() {
        case "int8": self = .int8
        case "uint8", "u1": self = .uint8
        case "int16": self = .int16
        case "uint16": self = .uint16
        case "int32": self = .int32
        case "uint32": self = .uint32
        case "int64", "int": self = .int64
        case "float32": self = .float32
        case "float64", "float", "double": self = .float64
        default: return nil
        }
    }
}
