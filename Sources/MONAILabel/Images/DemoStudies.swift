import Foundation
import Imaging

/// The demo studies folder the README's first command serves: synthetic CT-like volumes (`SyntheticCase`)
/// written as NIfTI in upstream's layout, the first few with final labels. Generated, never downloaded.
public enum DemoStudies {
    public static let name = "synthetic_spleen"

    /// Writes `count` cases (`spleen_00.nii.gz`, ...) to `root`, the first `labeled` with a final label;
    /// existing cases are kept. Returns how many cases the folder holds afterwards.
    @discardableResult
    public static func write(
        to root: URL, count: Int, labeled: Int, shape: [Int] = [96, 96, 64], spacing: [Double] = [1.5, 1.5, 2.0]
    ) throws -> Int {
        guard count > 0, labeled >= 0, labeled <= count else {
            throw MONAILabelError.invalid("need count > 0 and 0 <= labeled <= count")
        }
        try FileOps.makeDirectory(root.appendingPathComponent("labels/final"))
        for i in 0..<count {
            let id = String(format: "spleen_%02d", i)
            let imageURL = root.appendingPathComponent(id + ".nii.gz")
            if FileManager.default.fileExists(atPath: imageURL.path) { continue }
            let c = SyntheticCase.generate(index: i, shape: shape, spacing: spacing)
            let affine = Affine(c.affine)
            let image = Volume(spatialShape: c.shape, data: .int16(c.image), affine: affine)
            if i < labeled {
                let label = Volume(spatialShape: c.shape, data: .uint8(c.label), affine: affine)
                try writeAtomically(label, to: root.appendingPathComponent("labels/final/\(id).nii.gz"))
            }
            try writeAtomically(image, to: imageURL)
        }
        return FileOps.listDirectory(root.path).filter { $0.hasSuffix(".nii.gz") }.count
    }

    private static func writeAtomically(_ v: Volume, to url: URL) throws {
        let tmp = url.deletingLastPathComponent().appendingPathComponent(FileOps.tempPrefix + UUID().uuidString + ".nii.gz")
        do {
            try NIfTI.write(v, to: tmp)
            try FileOps.atomicCopy(from: tmp, to: url)
            try? FileManager.default.removeItem(at: tmp)
        } catch {
            try? FileManager.default.removeItem(at: tmp)
            throw MONAILabelError.io("cannot write \(url.path): \(error)")
        }
    }
}
