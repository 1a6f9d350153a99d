import DICOM
import DICOMweb
import Foundation

/// Rebuilds an instance from its WADO-RS metadata (DICOM JSON) and its frames, for
/// `MONAI_LABEL_DICOMWEB_FETCH_BY_FRAME` (upstream merges the two the same way with pydicom).
enum FrameFetch {
    /// Deepest sequence nesting copied from metadata; deeper items (none that geometry or SEG writing needs) are
    /// left out rather than recursed into without bound.
    static let maxDepth = 8
    /// Frames per instance we ask for; a multi-frame instance beyond this is refused.
    static let maxFrames = 10_000

    /// The frame numbers to ask for: 1...NumberOfFrames (1 when absent). Throws for counts out of range.
    static func frameNumbers(_ metadata: DicomJSONDataset) throws -> [Int] {
        let text = metadata.string("00280008") ?? "1"
        guard let n = Int(text), (1...maxFrames).contains(n) else {
            throw DicomError("NumberOfFrames \(text.prefix(20)) is not in 1...\(maxFrames)")
        }
        return Array(1...n)
    }

    /// The instance as a dataset: every public attribute of `metadata` with a value we can write as text
    /// (sequences item by item), and `frames` concatenated as its uncompressed pixel data, whose size must be
    /// what Rows x Columns x SamplesPerPixel x BitsAllocated x frames needs.
    static func instance(metadata: DicomJSONDataset, frames: [[UInt8]]) throws -> DicomDataset {
        let ds = try DicomDataset()
        copy(metadata, into: ds, prefix: "", depth: 0)
        func int(_ tag: String, _ name: String, default d: Int? = nil) throws -> Int {
            guard let v = metadata.string(tag).flatMap({ Int($0) }) ?? d, (0...65535).contains(v) else {
                throw DicomError("metadata has no usable \(name)")
            }
            return v
        }
        let rows = try int("00280010", "Rows"), cols = try int("00280011", "Columns")
        let samples = try int("00280002", "SamplesPerPixel", default: 1), bits = try int("00280100", "BitsAllocated")
        let pixels = Array(frames.joined())
        let perFrame = rows.multipliedReportingOverflow(by: cols).partialValue * samples * (bits / 8)
        let needed = perFrame.multipliedReportingOverflow(by: frames.count)
        guard bits == 8 || bits == 16, !needed.overflow, needed.partialValue > 0, pixels.count >= needed.partialValue else {
            throw DicomError("frames of \(pixels.count) bytes do not hold \(frames.count) frame(s) of \(rows)x\(cols)x\(samples) \(bits)-bit samples")
        }
        try ds.setPixelData(littleEndian: Array(pixels.prefix(needed.partialValue)), bitsAllocated: bits)
        return ds
    }

    private static func copy(_ metadata: DicomJSONDataset, into ds: DicomDataset, prefix: String, depth: Int) {
        for (tag, attribute) in metadata.attributes.sorted(by: { $0.key < $1.key }) {
            guard tag.count == 8, let group = UInt16(tag.prefix(4), radix: 16) else { continue }
            // File meta (rewritten on save), private groups (VR unknown to the dictionary), pixel data (from
            // frames) and binary values (bulk data, not in the JSON) are not copied.
            if group == 0x0002 || group % 2 == 1 || tag == "7FE00010" { continue }
            if ["OB", "OW", "OF", "OD", "OL", "OV", "UN", "AT", ""].contains(attribute.vr) { continue }
            let path = prefix + "(\(tag.prefix(4)),\(tag.suffix(4)))"
            if attribute.vr == "SQ" {
                guard depth < maxDepth else { continue }
                for (i, value) in attribute.values.enumerated() {
                    if case .dataset(let item) = value {
                        copy(item, into: ds, prefix: "\(path)[\(i)].", depth: depth + 1)
                    }
                }
                continue
            }
            let text = attribute.values.map { value -> String in
                switch value {
                case .string(let s): return s
                case .number(let n): return format(n, vr: attribute.vr)
                case .dataset: return ""
                }
            }.joined(separator: "\\")
            // An attribute DCMTK refuses (a tag its dictionary lacks, a value its VR cannot hold) is left out
            // rather than failing the series: what conversion and SEGs need is checked when the series loads.
            try? ds.set(path, text)
        }
    }

    /// A JSON number in the text form its VR takes: integers without a fraction, DS within its 16 characters.
    static func format(_ n: Double, vr: String) -> String {
        guard n.isFinite else { return "" }
        if ["IS", "US", "SS", "UL", "SL", "UV", "SV"].contains(vr), n == n.rounded(), abs(n) < 1e18 { return String(Int64(n)) }
        if vr == "DS" {
            for digits in stride(from: 15, through: 6, by: -1) {
                let s = String(format: "%.\(digits)g", n)
                if s.count <= 16 { return s }
            }
        }
        return String(n)
    }
}
