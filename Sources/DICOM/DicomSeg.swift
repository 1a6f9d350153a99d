import CDicom
import Foundation
import Imaging

/// One segment of a label map: the label value it stands for, its name and display colour.
public struct DicomSegment: Sendable, Equatable {
    /// The label value (in a written label map) or the segment number (in a read SEG).
    public var value: Int
    /// SegmentLabel (at most 64 characters are written).
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
        let values = try gridValues(label, shape: [cols, rows, n], affine: layout.affine)
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

    /// The label's values on the source grid (`shape`, `affine`), in our C order. A label on the grid itself is
    /// taken as it is; one on a flip or permutation of its axes (the same voxels, e.g. reoriented to RAS by its
    /// writer) is rearranged onto it; anything needing resampling is refused, naming the difference.
    static func gridValues(_ label: Volume, shape: [Int], affine: Affine) throws -> [Float] {
        guard label.channels == 1, label.spatialShape.count == 3 else {
            throw DicomError("label shape \(label.shape) is not the source series' grid [1, \(shape.map(String.init).joined(separator: ", "))]")
        }
        let drift = zip(label.affine.m, affine.m).map { abs($0 - $1) }.max() ?? 0
        if label.spatialShape == shape && drift <= 1e-3 { return label.data.asFloat() }
        // Label voxel -> source voxel: each label axis must map onto one source axis, forwards or backwards, with
        // its first voxel on the first or last source voxel of that axis.
        guard let inverse = affine.inverted() else { throw DicomError("the source series' affine is singular") }
        let m = inverse * label.affine
        var axis = [Int](repeating: -1, count: 3), forward = [Bool](repeating: true, count: 3)
        for a in 0..<3 {
            let column = (0..<3).map { m[$0, a] }
            guard let r = column.indices.first(where: { abs(abs(column[$0]) - 1) < 1e-3 }),
                  column.indices.allSatisfy({ $0 == r || abs(column[$0]) < 1e-3 }), !axis.contains(r),
                  label.spatialShape[a] == shape[r]
            else {
                throw DicomError("label grid \(label.spatialShape) (affine \(label.affine.m.map(decimalString))) is not the source "
                    + "series' grid \(shape) or a flip or permutation of its axes: it would need resampling")
            }
            axis[a] = r
            forward[a] = column[r] > 0
            let start = m[r, 3], expected = forward[a] ? 0.0 : Double(shape[r] - 1)
            guard abs(start - expected) < 1e-3 else {
                throw DicomError("label grid is offset from the source series' by \(decimalString(start - expected)) voxels "
                    + "along its axis \(r): not on its grid")
            }
        }
        let source = label.data.asFloat()
        var out = [Float](repeating: 0, count: source.count)
        let (n0, n1, n2) = (label.spatialShape[0], label.spatialShape[1], label.spatialShape[2])
        let strides = [shape[1] * shape[2], shape[2], 1]
        var step = [0, 0, 0], origin = 0
        for a in 0..<3 {
            step[a] = forward[a] ? strides[axis[a]] : -strides[axis[a]]
            if !forward[a] { origin += (shape[axis[a]] - 1) * strides[axis[a]] }
        }
        var at = 0
        for i in 0..<n0 {
            for j in 0..<n1 {
                var target = origin + i * step[0] + j * step[1]
                for _ in 0..<n2 {
                    out[target] = source[at]
                    at += 1
                    target += step[2]
                }
            }
        }
        return out
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

    /// Reads a SEG onto a grid of its own, as highdicom does when no image is at hand: columns along the row
    /// direction, rows along the column direction (PixelSpacing and ImageOrientationPatient of the first frame),
    /// slices along their normal from the lowest to the highest frame position, spaced by SpacingBetweenSlices
    /// (else the smallest gap between frame positions). Values and segments as `read(file:onto:)`.
    public static func read(file: URL) throws -> (label: Volume, segments: [DicomSegment]) {
        let ds = try DicomDataset(contentsOf: file)
        let o = ds.origin
        func group(_ frame: Int, _ path: String) throws -> [Double]? {
            if let v = try ds.numbers("PerFrameFunctionalGroupsSequence[\(frame)].\(path)") { return v }
            return try ds.numbers("SharedFunctionalGroupsSequence[0].\(path)")
        }
        guard let rows = try ds.int("Rows"), let cols = try ds.int("Columns"), (1...65535).contains(rows),
              (1...65535).contains(cols) else {
            throw DicomError("\(o): Rows / Columns missing or out of range")
        }
        // NumberOfFrames, not the item count: a damaged or trimmed SEG may carry more groups than frames.
        let frames = try ds.int("NumberOfFrames") ?? 1
        guard (1...1_000_000).contains(frames), frames <= max(1, try ds.itemCount("PerFrameFunctionalGroupsSequence")),
              let iop = try group(0, "PlaneOrientationSequence[0].ImageOrientationPatient"), iop.count == 6,
              let spacing = try group(0, "PixelMeasuresSequence[0].PixelSpacing"), spacing.count == 2,
              spacing.allSatisfy({ $0 > 0 })
        else {
            throw DicomError("\(o): no per-frame groups with orientation and pixel spacing to build a grid from")
        }
        let rowDir = vec(iop), colDir = vec(iop, 3), normal = cross(rowDir, colDir)
        // One pass over the per-frame groups: looking up item f by index costs f steps in DCMTK.
        let perFramePositions = try ds.itemNumbers("PerFrameFunctionalGroupsSequence", "PlanePositionSequence[0].ImagePositionPatient")
        let sharedPosition = try ds.numbers("SharedFunctionalGroupsSequence[0].PlanePositionSequence[0].ImagePositionPatient")
        var positions: [(along: Double, ipp: Vec3)] = []
        for f in 0..<frames {
            guard let p = (f < perFramePositions.count ? perFramePositions[f] : nil) ?? sharedPosition, p.count == 3 else {
                throw DicomError("\(o): frame \(f + 1) has no plane position to build a grid from")
            }
            positions.append((dot(vec(p), normal), vec(p)))
        }
        positions.sort { $0.along < $1.along }
        let lo = positions[0], hi = positions[positions.count - 1]
        let gaps = zip(positions.dropFirst(), positions).map { $0.along - $1.along }.filter { $0 > 1e-4 }
        let step = try group(0, "PixelMeasuresSequence[0].SpacingBetweenSlices")?.first.flatMap { $0 > 0 ? $0 : nil }
            ?? gaps.min() ?? 1
        let count = (hi.along - lo.along) / step
        guard count.isFinite, count < 100_000 else { throw DicomError("\(o): frame positions span no usable grid") }
        let depth = Int(count.rounded()) + 1
        let ci = scale(rowDir, spacing[1]), cj = scale(colDir, spacing[0]), ck = scale(normal, step), t = lo.ipp
        let affine = Affine([
            -ci.0, -cj.0, -ck.0, -t.0,
            -ci.1, -cj.1, -ck.1, -t.1,
            ci.2, cj.2, ck.2, t.2,
            0, 0, 0, 1,
        ])
        // Rows, columns and the frame span come from the file: bounded before the grid is allocated.
        do { try ImagingLimits.checkVoxels([cols, rows, depth], what: "DICOM SEG grid") } catch let e as ImagingError {
            throw DicomError(e.message)
        }
        let grid = try Volume(checkingShape: [cols, rows, depth], data: .uint8([UInt8](repeating: 0, count: cols * rows * depth)),
                              affine: affine)
        return try read(file: file, onto: grid)
    }

    /// Reads a SEG onto the grid of `reference` (the volume its source series loads as, or any flip or permutation of
    /// its axes), placing each frame by its own plane position, orientation and pixel spacing (functional groups,
    /// per frame or shared) rather than by frame order; a frame without a plane position is placed through its
    /// derivation reference (SourceImageSequence) at the position of the file with that SOP instance in
    /// `referenceFiles`. Every frame pixel must land on a voxel, one voxel per pixel, inside the grid (SEGs made on
    /// the source grid, as ours, dcmqi's and highdicom's are); anything needing resampling is refused.
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
        let shape = reference.spatialShape
        guard let rows = try ds.int("Rows"), let cols = try ds.int("Columns"), (1...65535).contains(rows),
              (1...65535).contains(cols) else {
            throw DicomError("\(o): Rows / Columns missing or out of range")
        }
        let frames = try ds.int("NumberOfFrames") ?? 1
        let bits = try ds.int("BitsAllocated") ?? 1
        guard bits == 1 || bits == 8 else { throw DicomError("\(o): BitsAllocated \(bits) (a SEG has 1 or 8)") }
        let perFrame = rows * cols
        // What the header declares is bounded before anything is decoded: every frame's pixels against
        // MONAI_LABEL_MAX_VOXELS, and against what compressed pixel data can hold.
        let samples: Int
        do { samples = try ImagingLimits.checkVoxels([cols, rows, frames], what: "DICOM SEG frames") } catch let e as ImagingError {
            throw DicomError("\(o): \(e.message)")
        }
        try EncapsulatedPixels.check(ds, samples: samples, decoded: bits == 1 ? (samples + 7) / 8 : samples)
        let pixelBytes = try ds.pixelBytes()?.count ?? 0
        guard frames >= 1, frames <= pixelBytes * 8 / (perFrame * bits) else {
            throw DicomError("\(o): NumberOfFrames \(frames) does not fit its \(pixelBytes) bytes of pixel data")
        }
        let threshold = bits == 8 ? Double(try ds.int("MaximumFractionalValue") ?? 255) / 2 : 0.5

        var segments: [DicomSegment] = []
        let segmentItems = try ds.itemCount("SegmentSequence")
        guard segmentItems <= 65535 else { throw DicomError("\(o): \(segmentItems) segments (at most 65535 segment numbers)") }
        // Each attribute of every segment in one pass (item s by index costs s steps in DCMTK: quadratic over up
        // to 65535 segments).
        let numbers = try ds.itemNumbers("SegmentSequence", "SegmentNumber")
        let labs = try ds.itemNumbers("SegmentSequence", "RecommendedDisplayCIELabValue")
        let names = try ds.itemStrings("SegmentSequence", "SegmentLabel")
        for s in 0..<segmentItems {
            guard let v = s < numbers.count ? numbers[s]?.first : nil, v == v.rounded(), (1...65535).contains(v) else {
                throw DicomError("\(o): a segment has no valid SegmentNumber (1...65535)")
            }
            let number = Int(v)
            var color: [Int]? = nil
            if s < labs.count, let lab = labs[s], lab.count == 3 {
                let l = lab.map { UInt16(max(0, min(65535, $0.rounded()))) }
                var rgb: [UInt8] = [0, 0, 0]
                mld_dicom_lab_to_rgb(l, &rgb)
                color = rgb.map(Int.init)
            }
            let name = s < names.count ? names[s] : nil
            segments.append(DicomSegment(value: number, name: name ?? "Segment_\(number)", color: color))
        }
        guard !segments.isEmpty else { throw DicomError("\(o): no SegmentSequence") }
        // Each frame is a plane of the reference grid: a SEG needs at most one frame per segment and plane.
        let planes = shape.reduce(0, +)
        guard frames <= segments.count * planes else {
            throw DicomError("\(o): NumberOfFrames \(frames) exceeds one frame per segment and plane of the reference "
                + "grid \(shape) (\(segments.count) segments x \(planes) planes)")
        }

        guard let inverse = reference.affine.inverted() else { throw DicomError("the reference affine is singular") }
        /// The reference voxel (continuous) of an LPS point.
        func voxel(_ p: Vec3) -> Vec3 { inverse.apply((-p.0, -p.1, p.2)) }

        var sopPositions: [String: [Double]] = [:]
        if let referenceFiles {
            for url in referenceFiles {
                let r = try DicomDataset(contentsOf: url)
                if let sop = try r.string("SOPInstanceUID"), let p = try r.numbers("ImagePositionPatient"), p.count == 3 {
                    sopPositions[sop] = p
                }
            }
        }

        /// A functional group's attribute for every frame (per frame, else shared), each sequence read in one
        /// pass: looking up item f by index costs f steps in DCMTK, quadratic over the frames.
        func groups(_ path: String) throws -> [[Double]?] {
            let perFrame = try ds.itemNumbers("PerFrameFunctionalGroupsSequence", path)
            let shared = try ds.numbers("SharedFunctionalGroupsSequence[0].\(path)")
            return (0..<frames).map { f in (f < perFrame.count ? perFrame[f] : nil) ?? shared }
        }
        let segmentNumbers = try groups("SegmentIdentificationSequence[0].ReferencedSegmentNumber")
        let orientations = try groups("PlaneOrientationSequence[0].ImageOrientationPatient")
        let spacings = try groups("PixelMeasuresSequence[0].PixelSpacing")
        let positions = try groups("PlanePositionSequence[0].ImagePositionPatient")
        let sources = try ds.itemStrings("PerFrameFunctionalGroupsSequence",
                                         "DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID")
        let segmentValues = Set(segments.map { Double($0.value) })

        /// Where a frame's pixels go: voxel of pixel (row r, column c) = origin + c * alongRow + r * alongColumn, each
        /// an exact voxel step (any flip or permutation of the reference axes is fine, resampling is not).
        struct Placement { let segment: Int, frame: Int, origin: [Int], alongRow: [Int], alongColumn: [Int] }
        var placed: [Placement] = []
        for f in 0..<frames {
            guard let number = segmentNumbers[f]?.first else {
                throw DicomError("\(o): frame \(f + 1) names no segment (ReferencedSegmentNumber)")
            }
            guard segmentValues.contains(number) else {
                throw DicomError("\(o): frame \(f + 1) refers to segment \(decimalString(number)), which SegmentSequence lacks")
            }
            guard let iop = orientations[f], iop.count == 6 else {
                throw DicomError("\(o): frame \(f + 1) has no ImageOrientationPatient")
            }
            guard let spacing = spacings[f], spacing.count == 2 else {
                throw DicomError("\(o): frame \(f + 1) has no PixelSpacing")
            }
            var ipp = positions[f]
            if ipp == nil, f < sources.count, let sop = sources[f] {
                ipp = sopPositions[sop]
            }
            guard let p = ipp, p.count == 3 else {
                throw DicomError("\(o): frame \(f + 1) has no plane position"
                    + (referenceFiles == nil ? " (pass the reference files to place it by its source image)" : " and no known source image"))
            }
            let origin = voxel(vec(p))
            let next = voxel(add(vec(p), scale(vec(iop), spacing[1])))
            let below = voxel(add(vec(p), scale(vec(iop, 3), spacing[0])))
            let steps = [sub(next, origin), sub(below, origin)]
            func exact(_ v: Vec3, over n: Int) -> [Int]? {
                let parts = [v.0, v.1, v.2]
                guard parts.allSatisfy({ $0.isFinite && abs($0) < 1e6 }) else { return nil }
                let rounded = parts.map { Int($0.rounded()) }
                return zip(parts, rounded).allSatisfy({ abs($0 - Double($1)) * Double(max(n, 1)) < 0.1 }) ? rounded : nil
            }
            let o3 = [origin.0, origin.1, origin.2]
            guard o3.allSatisfy({ $0.isFinite && abs($0) < 1e9 }),
                  let start = exact(origin, over: 1), let alongRow = exact(steps[0], over: cols),
                  let alongColumn = exact(steps[1], over: rows),
                  alongRow.map(abs).reduce(0, +) == 1, alongColumn.map(abs).reduce(0, +) == 1,
                  zip(alongRow, alongColumn).allSatisfy({ $0 == 0 || $1 == 0 })
            else {
                throw DicomError("\(o): frame \(f + 1) at \(p.map(decimalString)) is not a slice plane of the reference "
                    + "grid (voxel \(o3.map(decimalString)); its pixels must fall on voxels, one voxel per pixel)")
            }
            // The mapping is linear: the frame fits when its corners do.
            for (r, c) in [(0, 0), (rows - 1, 0), (0, cols - 1), (rows - 1, cols - 1)] {
                let v = (0..<3).map { start[$0] + c * alongRow[$0] + r * alongColumn[$0] }
                guard (0..<3).allSatisfy({ v[$0] >= 0 && v[$0] < shape[$0] }) else {
                    throw DicomError("\(o): frame \(f + 1) (\(rows)x\(cols)) extends beyond the reference grid \(shape)")
                }
            }
            placed.append(Placement(segment: Int(number), frame: f, origin: start, alongRow: alongRow, alongColumn: alongColumn))
        }

        let maxValue = segments.map(\.value).max() ?? 0
        var out = [UInt16](repeating: 0, count: reference.voxelCount)
        let (s0, s1) = (shape[1] * shape[2], shape[2])
        try ds.withPixelBytes { raw in
            guard let raw else { throw DicomError("\(o): no pixel data") }
            let needed = bits == 1 ? (frames * perFrame + 7) / 8 : frames * perFrame
            guard raw.count >= needed else {
                throw DicomError("\(o): pixel data has \(raw.count) bytes, \(frames) frames need \(needed)")
            }
            // Stable by segment number so that the higher-numbered segment wins overlaps.
            for (_, p) in placed.enumerated().sorted(by: { ($0.element.segment, $0.offset) < ($1.element.segment, $1.offset) }) {
                let base = p.frame * perFrame
                let start = p.origin[0] * s0 + p.origin[1] * s1 + p.origin[2]
                let dc = p.alongRow[0] * s0 + p.alongRow[1] * s1 + p.alongRow[2]
                let dr = p.alongColumn[0] * s0 + p.alongColumn[1] * s1 + p.alongColumn[2]
                let value = UInt16(p.segment)
                for r in 0..<rows {
                    for c in 0..<cols {
                        let bit = base + r * cols + c
                        let inside = bits == 1
                            ? (raw[bit >> 3] >> UInt8(bit & 7)) & 1 == 1
                            : Double(raw[bit]) > threshold
                        if inside { out[start + c * dc + r * dr] = value }
                    }
                }
            }
        }
        let data: VoxelData = maxValue <= 255 ? .uint8(out.map { UInt8($0) }) : .uint16(out)
        let label = try Volume(checkingShape: reference.spatialShape, data: data, affine: reference.affine)
        return (label, segments.sorted { $0.value < $1.value })
    }
}
