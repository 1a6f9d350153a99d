import Foundation
import Imaging

/// OHIF sends scribbles as a raw `.bin` buffer of uint8 voxels; upstream reshapes it to the datastore image's
/// shape in Fortran order (first axis fastest) and gives it that image's affine (spec section 1.2).
enum RawScribbles {
    /// Converts the `.bin` upload at `raw` into a temporary NIfTI on `reference`'s grid; the caller deletes it.
    static func convert(_ raw: URL, reference imagePath: String) throws -> URL {
        guard let data = FileManager.default.contents(atPath: raw.path) else {
            throw MONAILabelError.io("cannot read the uploaded label buffer")
        }
        let bytes = [UInt8](data)
        let image: Volume
        do {
            image = try ImageIO.load(URL(fileURLWithPath: imagePath))
        } catch {
            throw MONAILabelError.invalid("cannot read the image the label buffer refers to: \(error)")
        }
        let shape = image.spatialShape
        guard bytes.count == image.voxelCount else {
            throw MONAILabelError.invalid(
                "label buffer has \(bytes.count) bytes; the image \(shape) has \(image.voxelCount) voxels")
        }
        var strides = Array(repeating: 1, count: shape.count)
        for a in 1..<max(1, shape.count) { strides[a] = strides[a - 1] * shape[a - 1] }
        var out = [UInt8](repeating: 0, count: bytes.count)
        bytes.withUnsafeBufferPointer { src in
            var coord = Array(repeating: 0, count: shape.count)
            for c in 0..<out.count {
                var f = 0
                for a in coord.indices { f += coord[a] * strides[a] }
                out[c] = src[f]
                // Advance the C-order coordinate (last axis fastest).
                var a = shape.count - 1
                while a >= 0 {
                    coord[a] += 1
                    if coord[a] < shape[a] { break }
                    coord[a] = 0
                    a -= 1
                }
            }
        }
        let label = Volume(spatialShape: shape, channels: 1, data: .uint8(out), affine: image.affine, source: image.source)
        do {
            return try ImageIO.writeTemporary(label, resultExtension: ".nii.gz", dtype: .uint8)
        } catch let e as ImagingError {
            throw MONAILabelError.io("cannot stage the label buffer: \(e.message)")
        }
    }
}
