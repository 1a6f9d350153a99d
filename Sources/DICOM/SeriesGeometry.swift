import Foundation
import Imaging

typealias Vec3 = (Double, Double, Double)

func dot(_ a: Vec3, _ b: Vec3) -> Double { a.0 * b.0 + a.1 * b.1 + a.2 * b.2 }
func cross(_ a: Vec3, _ b: Vec3) -> Vec3 { (a.1 * b.2 - a.2 * b.1, a.2 * b.0 - a.0 * b.2, a.0 * b.1 - a.1 * b.0) }
func norm(_ a: Vec3) -> Double { dot(a, a).squareRoot() }
func sub(_ a: Vec3, _ b: Vec3) -> Vec3 { (a.0 - b.0, a.1 - b.1, a.2 - b.2) }
func add(_ a: Vec3, _ b: Vec3) -> Vec3 { (a.0 + b.0, a.1 + b.1, a.2 + b.2) }
func scale(_ a: Vec3, _ s: Double) -> Vec3 { (a.0 * s, a.1 * s, a.2 * s) }
func vec(_ a: [Double], _ offset: Int = 0) -> Vec3 { (a[offset], a[offset + 1], a[offset + 2]) }

/// Formats a number as a DICOM Decimal String (at most 16 characters).
func decimalString(_ v: Double) -> String {
    if v == v.rounded(), abs(v) < 1e15 { return String(Int64(v)) }
    for precision in stride(from: 12, through: 1, by: -1) {
        let s = String(format: "%.\(precision)g", v)
        if s.count <= 16 { return s }
    }
    return "0"
}

/// The header facts of one single-frame image slice that the series geometry needs.
struct SliceHeader {
    let dataset: DicomDataset
    let seriesUID: String
    let rows: Int
    let columns: Int
    /// ImageOrientationPatient: row direction (along a row, i.e. increasing column index), then column direction.
    let iop: [Double]
    /// ImagePositionPatient (LPS) of the first transmitted pixel.
    let ipp: Vec3
    /// PixelSpacing: (spacing between rows, spacing between columns).
    let pixelSpacing: (Double, Double)
    let sliceSpacingHint: Double?
    /// False for an image without ImageOrientationPatient and ImagePositionPatient (identity orientation at 0).
    let hasGeometry: Bool

    init(_ ds: DicomDataset) throws {
        dataset = ds
        let o = ds.origin
        if try ds.string("SOPClassUID") == DicomInstanceInfo.segmentationStorageUID {
            throw DicomError("\(o): is a DICOM SEG, not an image slice")
        }
        guard let series = try ds.string("SeriesInstanceUID"), !series.isEmpty else {
            throw DicomError("\(o): not a DICOM image (no SeriesInstanceUID)")
        }
        seriesUID = series
        guard let r = try ds.int("Rows"), let c = try ds.int("Columns"), (1...65535).contains(r), (1...65535).contains(c) else {
            throw DicomError("\(o): no image (Rows / Columns missing or out of range)")
        }
        rows = r
        columns = c
        if let frames = try ds.int("NumberOfFrames"), frames > 1 {
            throw DicomError("\(o): multi-frame images (\(frames) frames) are not supported; only single-frame slices")
        }
        let orientation = try ds.numbers("ImageOrientationPatient")
        let position = try ds.numbers("ImagePositionPatient")
        if orientation == nil && position == nil {
            // Secondary captures and the like: placed as ITK / GDCM place them, if alone (checked by the layout).
            hasGeometry = false
            iop = [1, 0, 0, 0, 1, 0]
            ipp = (0, 0, 0)
        } else {
            guard let orientation, orientation.count == 6 else {
                throw DicomError("\(o): no ImageOrientationPatient (6 values) to place the slice")
            }
            guard let position, position.count == 3 else {
                throw DicomError("\(o): no ImagePositionPatient (3 values) to place the slice")
            }
            let rowDir = vec(orientation), colDir = vec(orientation, 3)
            guard abs(norm(rowDir) - 1) < 1e-2, abs(norm(colDir) - 1) < 1e-2, abs(dot(rowDir, colDir)) < 1e-2 else {
                throw DicomError("\(o): ImageOrientationPatient \(orientation) is not two orthogonal unit vectors")
            }
            hasGeometry = true
            iop = orientation
            ipp = vec(position)
        }
        // Images without PixelSpacing are read at 1 mm, as ITK / GDCM do.
        let spacing = try ds.numbers("PixelSpacing") ?? [1, 1]
        guard spacing.count == 2, spacing[0] > 0, spacing[1] > 0 else {
            throw DicomError("\(o): invalid PixelSpacing \(spacing)")
        }
        pixelSpacing = (spacing[0], spacing[1])
        sliceSpacingHint = try ds.numbers("SpacingBetweenSlices")?.first ?? ds.numbers("SliceThickness")?.first
    }
}

/// A series' slices in order along the slice normal and the voxel-to-RAS affine of the volume they form:
/// voxel (i, j, k) = column i, row j of slice k.
struct SeriesLayout {
    /// Slices sorted by their position along the normal (row direction x column direction).
    let slices: [SliceHeader]
    let rows: Int
    let columns: Int
    let affine: Affine
    let iop: [Double]
    let pixelSpacing: (Double, Double)
    /// Distance between consecutive slices along their step.
    let sliceSpacing: Double

    /// Relative tolerance on slice gaps (fraction of the median gap) before a series counts as missing slices.
    static let gapTolerance = 0.1

    init(_ headers: [SliceHeader]) throws {
        guard let first = headers.first else { throw DicomError("no DICOM files given") }
        if headers.count > 1, let lost = headers.first(where: { !$0.hasGeometry }) {
            throw DicomError("\(lost.dataset.origin): no ImageOrientationPatient / ImagePositionPatient, so its slice "
                + "cannot be ordered among \(headers.count) files")
        }
        let series = Set(headers.map(\.seriesUID))
        if series.count > 1 {
            throw DicomError("files of \(series.count) different series are mixed: \(series.sorted().joined(separator: ", "))")
        }
        for h in headers {
            if h.rows != first.rows || h.columns != first.columns {
                throw DicomError("slices differ in size: \(first.dataset.origin) is \(first.rows)x\(first.columns), "
                    + "\(h.dataset.origin) is \(h.rows)x\(h.columns) (rows x columns)")
            }
            if zip(h.iop, first.iop).contains(where: { abs($0 - $1) > 1e-3 }) {
                throw DicomError("slices have different orientations (ImageOrientationPatient \(first.iop) in "
                    + "\(first.dataset.origin), \(h.iop) in \(h.dataset.origin)): not one volume")
            }
            if abs(h.pixelSpacing.0 - first.pixelSpacing.0) > 1e-3 || abs(h.pixelSpacing.1 - first.pixelSpacing.1) > 1e-3 {
                throw DicomError("slices have different PixelSpacing: \(first.dataset.origin) and \(h.dataset.origin)")
            }
        }
        let rowDir = vec(first.iop), colDir = vec(first.iop, 3)
        let normal = cross(rowDir, colDir)
        let sorted = headers.map { (dot($0.ipp, normal), $0) }.sorted { $0.0 < $1.0 }
        var step: Vec3
        if sorted.count == 1 {
            step = scale(normal, first.sliceSpacingHint.flatMap { $0 > 0 ? $0 : nil } ?? 1)
        } else {
            let gaps = zip(sorted.dropFirst(), sorted).map { $0.0 - $1.0 }
            for (n, g) in gaps.enumerated() where g < 1e-4 {
                throw DicomError("two slices share the position \(decimalString(sorted[n].0)) mm along the normal "
                    + "(\(sorted[n].1.dataset.origin), \(sorted[n + 1].1.dataset.origin)): duplicate slices")
            }
            let median = gaps.sorted()[gaps.count / 2]
            for (n, g) in gaps.enumerated() where abs(g - median) > SeriesLayout.gapTolerance * median {
                throw DicomError("slice gap of \(decimalString(g)) mm between slices \(n) and \(n + 1) (sorted), "
                    + "expected \(decimalString(median)) mm: missing slices or non-uniform spacing")
            }
            let origin = sorted[0].1.ipp
            step = scale(sub(sorted[sorted.count - 1].1.ipp, origin), 1 / Double(sorted.count - 1))
            // Every slice must lie on the line first + k * step (a gantry tilt shears it, which the affine keeps).
            let tolerance = SeriesLayout.gapTolerance * norm(step)
            for (k, s) in sorted.enumerated() {
                let expected = add(origin, scale(step, Double(k)))
                if norm(sub(s.1.ipp, expected)) > tolerance {
                    throw DicomError("slice \(s.1.dataset.origin) is off the line of the other slices' positions: "
                        + "not one evenly spaced stack")
                }
            }
        }
        slices = sorted.map(\.1)
        rows = first.rows
        columns = first.columns
        iop = first.iop
        pixelSpacing = first.pixelSpacing
        sliceSpacing = norm(step)
        let o = slices[0].ipp
        let ci = scale(rowDir, pixelSpacing.1), cj = scale(colDir, pixelSpacing.0)
        // LPS to RAS: negate the x and y rows.
        affine = Affine([
            -ci.0, -cj.0, -step.0, -o.0,
            -ci.1, -cj.1, -step.1, -o.1,
            ci.2, cj.2, step.2, o.2,
            0, 0, 0, 1,
        ])
    }
}
