import CDicom
import Foundation
import Imaging

/// One segment of a label map: the label value it stands for, its name and display colour.
public struct DicomSegment: Sendable, Equatable {
    /// The label value (in a written label map) or the segment number (in a read SEG).
    public var value: Int
    public var name: String
    /// Recommended display colour, sRGB `[r, g, b]` in 0...255.
    public var color: [Int]?

    public init(value: Int, name: String, color: [Int]? = nil) {
        self.value = value
        self.name = name
        self.color = color
    }
}

/// DICOM Segmentation (SEG) objects: label maps to binary SEGs and back.
public enum DicomSeg {
    /// Colours of segments written without one, by segment number - 1 (cycled).
    static let palette: [[Int]] = [
        [255, 0, 0], [0, 200, 0], [0, 0, 255], [255, 200, 0], [0, 200, 200], [200, 0, 200], [255, 128, 0], [128, 0, 255],
    ]

    /// Writes `label` (on the grid of the series in `sourceFiles`: the shape and affine `DicomSeries.load` gives for
    /// them) as a binary DICOM SEG at `url`.
    ///
    /// One segment per non-zero label value present, in ascending value order, numbered 1...N (DICOM requires
    /// consecutive numbers, so values such as 1, 4, 6 become segments 1, 2, 3; the names carry the meaning). Each
    /// segment is named and coloured from the entry of `segments` with its value (default `Segment_<v>` and a
    /// palette colour), with category SCT 123037004 "Anatomical Structure", type SCT 85756007 "Tissue" and
    /// algorithm AUTOMATIC "MONAILabel". Only frames with content are stored, each with its plane position, a
    /// derivation reference to its source slice and a dimension index (segment, slice). The SEG joins the source's
    /// patient, study and frame of reference in a new series described by `seriesDescription`, and references the
    /// source series in ReferencedSeriesSequence. An all-zero label is refused (a SEG needs one frame).
    ///
    /// - Returns: the header of the written SEG.
    @discardableResult
    public static func write(
        label: Volume, sourceFiles: [URL], segments: [DicomSegment], seriesDescription: String, to url: URL
    ) throws -> DicomInstanceInfo {
        let layout = try SeriesLayout(sourceFiles.map { try SliceHeader(DicomDataset(contentsOf: $0)) })
        let (cols, rows, n) = (layout.columns, layout.rows, layout.slices.count)
        guard label.spatialShape == [cols, rows, n], label.channels == 1 else {
            throw DicomError("label shape \(label.shape) is not the source series' grid [1, \(cols), \(rows), \(n)]")
        }
        let drift = zip(label.affine.m, layout.affine.m).map { abs($0 - $1) }.max() ?? 0
        guard drift <= 1e-3 else {
            throw DicomError("label affine differs from the source series' by \(decimalString(drift)) mm: not on its grid")
        }
        let values = label.data.asFloat()
        var present = Set<Int>()
        var last: Float = 0
        for v in values where v != 0 && v != last {
            guard v.isFinite, v > -0.5, v < 65535.5 else {
                throw DicomError("label value \(v) is not a segment value (integers 0...65535)")
            }
            present.insert(Int(v.rounded()))
            last = v
        }
        present.remove(0)
        guard !present.isEmpty else { throw DicomError("the label is empty: a DICOM SEG needs at least one segment") }

        let hhmmss = Calendar(identifier: .gregorian).dateComponents(in: TimeZone(identifier: "UTC") ?? .current, from: Date())
        let seriesNumber = ((hhmmss.hour ?? 0) * 10000 + (hhmmss.minute ?? 0) * 100 + (hhmmss.second ?? 0)) % 10000
        let description = String(seriesDescription.prefix(64))
        var seg: OpaquePointer? = nil
        try withDescription(seriesDescription: description, seriesNumber: String(seriesNumber)) { d in
            var d = d
            let spacing = [layout.pixelSpacing.0, layout.pixelSpacing.1]
            try check("creating the SEG") { err in
                mld_seg_create(UInt16(rows), UInt16(cols), &d, layout.slices[0].dataset.handle, layout.iop, spacing,
                               layout.sliceSpacing, &seg, err)
            }
        }
        guard let seg else { throw DicomError("cannot create a DICOM SEG") }
        defer { mld_seg_free(seg) }

        let planes = try slicePlanes(values, cols: cols, rows: rows, slices: n)
        var mask = [UInt8](repeating: 0, count: rows * cols)
        for (index, value) in present.sorted().enumerated() {
            let meta = segments.first { $0.value == value }
            let name = meta.map(\.name).flatMap { $0.isEmpty ? nil : $0 } ?? "Segment_\(value)"
            let color = (meta?.color).flatMap { $0.count == 3 ? $0 : nil } ?? palette[index % palette.count]
            let rgb = color.map { UInt8(clamping: $0) }
            var number: UInt16 = 0
            try check("adding segment \(name)") { mld_seg_add_segment(seg, String(name.prefix(64)), rgb, "MONAILabel", &number, $0) }
            let target = UInt16(value)
            for k in 0..<n {
                var any = false
                let plane = k * rows * cols
                for p in 0..<(rows * cols) {
                    let inside = planes[plane + p] == target
                    mask[p] = inside ? 1 : 0
                    any = any || inside
                }
                guard any else { continue }
                let slice = layout.slices[k]
                let ipp = [slice.ipp.0, slice.ipp.1, slice.ipp.2]
                try check("adding a frame of segment \(name)") {
                    mld_seg_add_frame(seg, number, mask, ipp, UInt32(k + 1), slice.dataset.handle, $0)
                }
            }
        }
        try check { mld_seg_save(seg, url.path, $0) }
        return try DicomInstanceInfo.read(url)
    }

    /// The label's values (validated to lie in 0...65535) rearranged slice by slice as frames are laid out:
    /// `[k][row j][column i]`, transposed in cache-sized tiles.
    private static func slicePlanes(_ values: [Float], cols: Int, rows: Int, slices n: Int) throws -> [UInt16] {
        var planes = [UInt16](repeating: 0, count: values.count)
        try planes.withUnsafeMutableBufferPointer { dst in
            let box = UncheckedBox(dst)
            try concurrentSlices(rows) { j in
                let dst = box.value
                for k0 in stride(from: 0, to: n, by: 16) {
                    for i0 in stride(from: 0, to: cols, by: 64) {
                        for i in i0..<min(i0 + 64, cols) {
                            for k in k0..<min(k0 + 16, n) {
                                dst[(k * rows + j) * cols + i] = UInt16(values[(i * rows + j) * n + k].rounded())
                            }
                        }
                    }
                }
            }
        }
        return planes
    }

    private static func withDescription(
        seriesDescription: String, seriesNumber: String, _ body: (mld_seg_description) throws -> Void
    ) throws {
        try "MONAI Consortium".withCString { manufacturer in
            try "MONAILabel".withCString { model in
                try "0.8.5".withCString { software in
                    try "1".withCString { serial in
                        try seriesDescription.withCString { series in
                            try seriesNumber.withCString { number in
                                try "SEGMENTATION".withCString { contentLabel in
                                    try "".withCString { creator in
                                        try body(mld_seg_description(
                                            manufacturer: manufacturer, model_name: model, software_versions: software,
                                            device_serial_number: serial, series_description: series,
                                            series_number: number, content_label: contentLabel,
                                            content_description: series, content_creator: creator))
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Reads a SEG onto the grid of `reference` (the volume its source series loads as), placing each frame by its
    /// own plane position (PlanePositionSequence, per frame or shared) rather than by frame order; a frame without
    /// one is placed through its derivation reference (SourceImageSequence) to the slice with that SOP instance in
    /// `referenceFiles`. Frames must lie in the reference's slice planes with its orientation, size and pixel
    /// spacing (SEGs made on the source grid, as ours, dcmqi's and highdicom's are).
    ///
    /// Binary and fractional SEGs are read (a fractional pixel counts when above half MaximumFractionalValue).
    /// Label values are the segment numbers (1...N); where segments overlap the higher number wins.
    ///
    /// - Returns: a `uint8` label (`uint16` beyond 255 segments) with the reference's shape and affine, and the
    ///   segments (value = segment number, name = SegmentLabel, colour from RecommendedDisplayCIELabValue).
    public static func read(
        file: URL, onto reference: Volume, referenceFiles: [URL]? = nil
    ) throws -> (label: Volume, segments: [DicomSegment]) {
        let ds = try DicomDataset(contentsOf: file)
        let o = ds.origin
        guard try ds.string("SOPClassUID") == DicomInstanceInfo.segmentationStorageUID else {
            throw DicomError("\(o): not a DICOM SEG (SOPClassUID \(try ds.string("SOPClassUID") ?? "missing"))")
        }
        guard reference.spatialShape.count == 3, reference.voxelCount > 0 else {
            throw DicomError("the reference volume is not a non-empty 3D volume")
        }
        let (cols, rows, depth) = (reference.spatialShape[0], reference.spatialShape[1], reference.spatialShape[2])
        guard try ds.int("Rows") == rows, try ds.int("Columns") == cols else {
            throw DicomError("\(o): frames are \(try ds.string("Rows") ?? "?")x\(try ds.string("Columns") ?? "?"), "
                + "the reference slices \(rows)x\(cols) (rows x columns)")
        }
        let frames = try ds.int("NumberOfFrames") ?? 1
        let bits = try ds.int("BitsAllocated") ?? 1
        guard bits == 1 || bits == 8 else { throw DicomError("\(o): BitsAllocated \(bits) (a SEG has 1 or 8)") }
        let perFrame = rows * cols
        let pixelBytes = try ds.pixelBytes()?.count ?? 0
        guard frames >= 1, frames <= pixelBytes * 8 / (perFrame * bits) else {
            throw DicomError("\(o): NumberOfFrames \(frames) does not fit its \(pixelBytes) bytes of pixel data")
        }
        let threshold = bits == 8 ? Double(try ds.int("MaximumFractionalValue") ?? 255) / 2 : 0.5

        var segments: [DicomSegment] = []
        for s in 0..<(try ds.itemCount("SegmentSequence")) {
            let item = "SegmentSequence[\(s)]"
            guard let number = try ds.int("\(item).SegmentNumber"), (1...65535).contains(number) else {
                throw DicomError("\(o): a segment has no valid SegmentNumber (1...65535)")
            }
            var color: [Int]? = nil
            if let lab = try ds.numbers("\(item).RecommendedDisplayCIELabValue"), lab.count == 3 {
                let l = lab.map { UInt16(max(0, min(65535, $0.rounded()))) }
                var rgb: [UInt8] = [0, 0, 0]
                mld_dicom_lab_to_rgb(l, &rgb)
                color = rgb.map(Int.init)
            }
            segments.append(DicomSegment(value: number, name: try ds.string("\(item).SegmentLabel") ?? "Segment_\(number)", color: color))
        }
        guard !segments.isEmpty else { throw DicomError("\(o): no SegmentSequence") }

        // Geometry of the reference grid in LPS.
        let a = reference.affine
        guard let inverse = a.inverted() else { throw DicomError("the reference affine is singular") }
        let ci: Vec3 = (-a[0, 0], -a[1, 0], a[2, 0]), cj: Vec3 = (-a[0, 1], -a[1, 1], a[2, 1])
        let refIOP = [scale(ci, 1 / norm(ci)), scale(cj, 1 / norm(cj))].flatMap { [$0.0, $0.1, $0.2] }
        let refSpacing = [norm(cj), norm(ci)]

        var sopPositions: [String: [Double]] = [:]
        if let referenceFiles {
            for url in referenceFiles {
                let r = try DicomDataset(contentsOf: url)
                if let sop = try r.string("SOPInstanceUID"), let p = try r.numbers("ImagePositionPatient"), p.count == 3 {
                    sopPositions[sop] = p
                }
            }
        }

        /// A functional group's attribute, per frame or shared.
        func group(_ frame: Int, _ path: String) throws -> [Double]? {
            if let v = try ds.numbers("PerFrameFunctionalGroupsSequence[\(frame)].\(path)") { return v }
            return try ds.numbers("SharedFunctionalGroupsSequence[0].\(path)")
        }

        var placed: [(segment: Int, frame: Int, k: Int)] = []
        for f in 0..<frames {
            guard let number = try group(f, "SegmentIdentificationSequence[0].ReferencedSegmentNumber")?.first else {
                throw DicomError("\(o): frame \(f + 1) names no segment (ReferencedSegmentNumber)")
            }
            guard segments.contains(where: { Double($0.value) == number }) else {
                throw DicomError("\(o): frame \(f + 1) refers to segment \(decimalString(number)), which SegmentSequence lacks")
            }
            if let iop = try group(f, "PlaneOrientationSequence[0].ImageOrientationPatient") {
                guard iop.count == 6, zip(iop, refIOP).allSatisfy({ abs($0 - $1) < 1e-3 }) else {
                    throw DicomError("\(o): frame \(f + 1) orientation \(iop) differs from the reference's "
                        + "\(refIOP.map(decimalString)): not on its grid")
                }
            }
            if let spacing = try group(f, "PixelMeasuresSequence[0].PixelSpacing") {
                guard spacing.count == 2, zip(spacing, refSpacing).allSatisfy({ abs($0 - $1) < 1e-3 }) else {
                    throw DicomError("\(o): frame \(f + 1) pixel spacing \(spacing) differs from the reference's "
                        + "\(refSpacing.map(decimalString)): not on its grid")
                }
            }
            var ipp = try group(f, "PlanePositionSequence[0].ImagePositionPatient")
            if ipp == nil,
               let sop = try ds.string("PerFrameFunctionalGroupsSequence[\(f)].DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID") {
                ipp = sopPositions[sop]
            }
            guard let p = ipp, p.count == 3 else {
                throw DicomError("\(o): frame \(f + 1) has no plane position"
                    + (referenceFiles == nil ? " (pass the reference files to place it by its source image)" : " and no known source image"))
            }
            let (x, y, z) = inverse.apply((-p[0], -p[1], p[2]))
            let k = z.isFinite && abs(z) < 1e9 ? Int(z.rounded()) : -1
            guard abs(x) < 0.1, abs(y) < 0.1, abs(z - Double(k)) < 0.1, k >= 0, k < depth else {
                throw DicomError("\(o): frame \(f + 1) at \(p.map(decimalString)) is not a slice plane of the reference "
                    + "(voxel \(decimalString(x)), \(decimalString(y)), \(decimalString(z)))")
            }
            placed.append((Int(number), f, k))  // a SegmentSequence number, so 1...65535
        }

        let maxValue = segments.map(\.value).max() ?? 0
        var out = [UInt16](repeating: 0, count: perFrame * depth)
        try ds.withPixelBytes { raw in
            guard let raw else { throw DicomError("\(o): no pixel data") }
            let needed = bits == 1 ? (frames * perFrame + 7) / 8 : frames * perFrame
            guard raw.count >= needed else {
                throw DicomError("\(o): pixel data has \(raw.count) bytes, \(frames) frames need \(needed)")
            }
            // Stable by segment number so that the higher-numbered segment wins overlaps.
            for entry in placed.enumerated().sorted(by: { ($0.element.segment, $0.offset) < ($1.element.segment, $1.offset) }) {
                let (segment, f, k) = entry.element
                let base = f * perFrame
                for r in 0..<rows {
                    for c in 0..<cols {
                        let bit = base + r * cols + c
                        let inside = bits == 1
                            ? (raw[bit >> 3] >> UInt8(bit & 7)) & 1 == 1
                            : Double(raw[bit]) > threshold
                        if inside { out[(c * rows + r) * depth + k] = UInt16(segment) }
                    }
                }
            }
        }
        let data: VoxelData = maxValue <= 255 ? .uint8(out.map { UInt8($0) }) : .uint16(out)
        let label = try Volume(checkingShape: reference.spatialShape, data: data, affine: reference.affine)
        return (label, segments.sorted { $0.value < $1.value })
    }
}
