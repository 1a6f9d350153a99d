import Foundation
import Imaging

/// Reading a series of single-frame DICOM image slices (CT, MR, ...) into a `Volume`.
public enum DicomSeries {
    /// Loads the slices in `files` (any order) into one volume.
    ///
    /// Voxel (i, j, k) is column i, row j of the k-th slice when slices are sorted by the projection of
    /// ImagePositionPatient onto the slice normal (row direction x column direction), so the spatial shape is
    /// `[Columns, Rows, slices]`. The affine maps voxels to RAS+ (DICOM's LPS with x and y negated): its columns are
    /// the row direction times the column spacing (`PixelSpacing[1]`), the column direction times the row spacing
    /// (`PixelSpacing[0]`), the step between the first and last slice positions divided by the slice count minus 1,
    /// and the first slice's position. Written as NIfTI, this is the affine and voxel order nibabel reports for
    /// dicom2nifti-style arithmetic on the same files.
    ///
    /// Voxel type: when every slice has RescaleSlope 1 and RescaleIntercept 0 (or none), the stored integer type
    /// (`uint8`, `int8`, `uint16`, `int16`, `uint32`, `int32` from BitsAllocated / PixelRepresentation); otherwise
    /// `float32` holding stored value * slope + intercept (the case of nearly every CT).
    ///
    /// Transfer syntaxes: implicit / explicit VR little and big endian, and JPEG (baseline, extended, lossless),
    /// JPEG-LS and RLE, decompressed by DCMTK one batch of slices at a time, each slice's declared size checked
    /// first against what its compressed data can hold (`EncapsulatedPixels`). Refused with a `DicomError`: files of several series, slices of
    /// different sizes, orientations or pixel spacings, two slices at one position, gaps between consecutive
    /// slices differing from the median gap by more than 10 % (missing slices), slices off the line of the others,
    /// multi-frame files, colour images, files without pixel data or that are not DICOM, and several files of which
    /// one lacks ImageOrientationPatient and ImagePositionPatient (a single such file is placed as ITK places it:
    /// identity orientation at the origin; PixelSpacing defaults to 1 mm likewise).
    ///
    /// - Returns: the volume and the header of its first slice.
    public static func load(files: [URL]) throws -> (volume: Volume, info: DicomInstanceInfo) {
        try load(datasets: files.map { try DicomDataset(contentsOf: $0) })
    }

    /// `load(files:)` on the regular files of `directory` (not recursing; hidden files and a DICOMDIR skipped).
    public static func load(directory: URL) throws -> (volume: Volume, info: DicomInstanceInfo) {
        try load(files: files(in: directory))
    }

    /// The regular files of `directory` that `load(directory:)` reads, sorted by name.
    public static func files(in directory: URL) throws -> [URL] {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory.path)
        } catch {
            throw DicomError("\(directory.path): cannot list the directory (\(error.localizedDescription))")
        }
        return names.sorted().filter { !$0.hasPrefix(".") && $0.uppercased() != "DICOMDIR" }
            .map { directory.appendingPathComponent($0) }
            .filter { (try? $0.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile) == true }
    }

    /// Like `load(files:)`, for datasets already read (e.g. from a WADO-RS response).
    public static func load(datasets: [DicomDataset]) throws -> (volume: Volume, info: DicomInstanceInfo) {
        let layout = try SeriesLayout(datasets.map(SliceHeader.init))
        let volume = try readVoxels(layout)
        return (volume, try DicomInstanceInfo.read(dataset: layout.slices[0].dataset))
    }

    static func readVoxels(_ layout: SeriesLayout) throws -> Volume {
        let formats = try layout.slices.map { try PixelFormat($0.dataset) }
        let f = formats[0]
        if let other = formats.first(where: { $0.bitsAllocated != f.bitsAllocated || $0.signed != f.signed }) {
            throw DicomError("slices differ in pixel format (\(f.bitsAllocated) bits \(f.signed ? "signed" : "unsigned") "
                + "vs \(other.bitsAllocated) bits \(other.signed ? "signed" : "unsigned"))")
        }
        let rescaled = formats.contains { $0.slope != 1 || $0.intercept != 0 }
        let shape = [layout.columns, layout.rows, layout.slices.count]
        do { try ImagingLimits.checkVoxels(shape, what: "DICOM series") } catch let e as ImagingError {
            throw DicomError(e.message)
        }
        let data: VoxelData
        if rescaled {
            data = .float32(try gather(layout, formats) { Float(Double($0) * $1.slope + $1.intercept) })
        } else {
            switch (f.bitsAllocated, f.signed) {
            case (8, false): data = .uint8(try gather(layout, formats) { v, _ in UInt8(truncatingIfNeeded: v) })
            case (8, true): data = .int8(try gather(layout, formats) { v, _ in Int8(truncatingIfNeeded: v) })
            case (16, false): data = .uint16(try gather(layout, formats) { v, _ in UInt16(truncatingIfNeeded: v) })
            case (16, true): data = .int16(try gather(layout, formats) { v, _ in Int16(truncatingIfNeeded: v) })
            case (32, false): data = .uint32(try gather(layout, formats) { v, _ in UInt32(truncatingIfNeeded: v) })
            default: data = .int32(try gather(layout, formats) { v, _ in Int32(truncatingIfNeeded: v) })
            }
        }
        return try Volume(checkingShape: shape, data: data, affine: layout.affine)
    }

    /// Slices decoded at once: decoded pixel data is freed after each batch is placed, so a series never holds
    /// more than this many decoded slices besides the volume (a compressed slice may decode to far more than it
    /// takes in the file).
    static let decodeBatch = 16

    /// Decodes the slices in batches of `decodeBatch` (in parallel, each dataset by one thread) and places their
    /// stored values, converted, at C-order index `(i * rows + j) * slices + k`, in cache-sized tiles of (slice,
    /// column); each batch's decoded pixel data is freed before the next is decoded.
    private static func gather<T>(
        _ layout: SeriesLayout, _ formats: [PixelFormat], _ convert: (Int64, PixelFormat) -> T
    ) throws -> [T] {
        let rows = layout.rows, cols = layout.columns, n = layout.slices.count
        let perSlice = rows * cols
        var out = [T](repeating: convert(0, formats[0]), count: perSlice * n)
        var pixels = [UnsafeRawBufferPointer](repeating: UnsafeRawBufferPointer(start: nil, count: 0), count: n)
        let (tileK, tileI) = (16, 64)
        for k0 in stride(from: 0, to: n, by: decodeBatch) {
            let batch = k0..<min(k0 + decodeBatch, n)
            defer { for k in batch { layout.slices[k].dataset.dropPixels() } }
            try pixels.withUnsafeMutableBufferPointer { slots in
                let box = UncheckedBox(slots)
                try concurrentSlices(batch.count) { b in
                    let k = batch.lowerBound + b
                    let ds = layout.slices[k].dataset, format = formats[k]
                    let needed = perSlice * format.bitsAllocated / 8
                    try EncapsulatedPixels.check(ds, samples: perSlice, decoded: needed)
                    guard let raw = try ds.pixelBytes() else { throw DicomError("\(ds.origin): no pixel data") }
                    guard raw.count >= needed else {
                        throw DicomError("\(ds.origin): pixel data has \(raw.count) bytes, "
                            + "\(rows)x\(cols) pixels of \(format.bitsAllocated) bits need \(needed)")
                    }
                    box.value[k] = raw
                }
            }
            try out.withUnsafeMutableBufferPointer { dst in
                let box = UncheckedBox(dst)
                // The datasets own the bytes behind `pixels` until the batch's pixels are dropped.
                try concurrentSlices(rows) { j in
                    let dst = box.value
                    for kt in stride(from: batch.lowerBound, to: batch.upperBound, by: tileK) {
                        for i0 in stride(from: 0, to: cols, by: tileI) {
                            for k in kt..<min(kt + tileK, batch.upperBound) {
                                let raw = pixels[k], format = formats[k]
                                for i in i0..<min(i0 + tileI, cols) {
                                    dst[(i * rows + j) * n + k] = convert(format.value(raw, j * cols + i), format)
                                }
                            }
                        }
                    }
                }
            }
        }
        return withExtendedLifetime(layout) { out }
    }
}

/// Lets a value into Dispatch's `@Sendable` work items; callers guarantee disjoint access.
struct UncheckedBox<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

/// Runs `body(k)` for k in 0..<count on the machine's cores; rethrows the first error.
func concurrentSlices(_ count: Int, _ body: (Int) throws -> Void) throws {
    let failure = Mutex()
    try withoutActuallyEscaping(body) { escapable in
        let box = UncheckedBox(escapable)
        DispatchQueue.concurrentPerform(iterations: count) { k in
            guard !failure.failed else { return }
            do { try box.value(k) } catch { failure.record(error) }
        }
        if let error = failure.first { throw error }
    }
}

/// The first error of a parallel loop.
private final class Mutex: @unchecked Sendable {
    private let lock = NSLock()
    private var error: Error?
    var failed: Bool { lock.withLock { error != nil } }
    var first: Error? { lock.withLock { error } }
    func record(_ e: Error) { lock.withLock { if error == nil { error = e } } }
}

/// How one slice stores its samples.
struct PixelFormat {
    let bitsAllocated: Int
    let bitsStored: Int
    let signed: Bool
    let slope: Double
    let intercept: Double

    init(_ ds: DicomDataset) throws {
        let o = ds.origin
        let samples = try ds.int("SamplesPerPixel") ?? 1
        guard samples == 1 else {
            throw DicomError("\(o): \(samples) samples per pixel (\(try ds.string("PhotometricInterpretation") ?? "colour")): only grayscale images are supported")
        }
        guard let allocated = try ds.int("BitsAllocated"), [8, 16, 32].contains(allocated) else {
            throw DicomError("\(o): BitsAllocated \(try ds.string("BitsAllocated") ?? "missing") is not 8, 16 or 32")
        }
        bitsAllocated = allocated
        let stored = try ds.int("BitsStored") ?? allocated
        guard stored >= 1, stored <= allocated else { throw DicomError("\(o): BitsStored \(stored) exceeds BitsAllocated \(allocated)") }
        bitsStored = stored
        signed = try ds.int("PixelRepresentation") == 1
        slope = try ds.numbers("RescaleSlope")?.first ?? 1
        intercept = try ds.numbers("RescaleIntercept")?.first ?? 0
        guard slope != 0 else { throw DicomError("\(o): RescaleSlope is 0") }
    }

    /// The stored value of sample `index` in the shim's native-order buffer (high bits beyond BitsStored masked, sign-extended when signed).
    @inline(__always)
    func value(_ raw: UnsafeRawBufferPointer, _ index: Int) -> Int64 {
        let bits: UInt64
        switch bitsAllocated {
        case 8: bits = UInt64(raw[index])
        case 16: bits = UInt64(raw.loadUnaligned(fromByteOffset: index * 2, as: UInt16.self))
        default: bits = UInt64(raw.loadUnaligned(fromByteOffset: index * 4, as: UInt32.self))
        }
        let mask: UInt64 = (1 << UInt64(bitsStored)) - 1
        let v = bits & mask
        if signed && v & (1 << UInt64(bitsStored - 1)) != 0 { return Int64(v) - Int64(1 << UInt64(bitsStored)) }
        return Int64(v)
    }
}
