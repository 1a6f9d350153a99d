import Foundation
import Imaging
import Testing
import TestSupport
@testable import DICOM

/// A label on `grid` with a few blobs of values 1, 3 and 6 (value 6 touching only some slices).
func syntheticLabel(on grid: Volume) -> Volume {
    let (a, b, c) = (grid.spatialShape[0], grid.spatialShape[1], grid.spatialShape[2])
    var v = [UInt8](repeating: 0, count: a * b * c)
    for i in 0..<a {
        for j in 0..<b {
            for k in 0..<c {
                let idx = (i * b + j) * c + k
                if i < a / 2 && j < b / 2 && k > 2 && k < c - 3 { v[idx] = 1 }
                if i >= a / 2 && (j + k) % 5 == 0 { v[idx] = 3 }
                if k >= 10 && k < 14 && i == 3 && j > 2 { v[idx] = 6 }
            }
        }
    }
    return Volume(spatialShape: grid.spatialShape, data: .uint8(v), affine: grid.affine)
}

@Test(.tags(.unit)) func seg_writeThenRead_givesLabelBackAsSegmentNumbers() throws {
    let tmp = try TempDir()
    let files = try DicomSeriesWriter.writeCT(volume: syntheticCT(shape: [16, 12, 40]), to: tmp.sub("ct"), patientID: "P7")
    let (grid, ctInfo) = try DicomSeries.load(files: files)
    let label = syntheticLabel(on: grid)
    let segURL = tmp.sub("seg.dcm")
    let info = try DicomSeg.write(
        label: label, sourceFiles: files,
        segments: [DicomSegment(value: 1, name: "spleen", color: [10, 200, 30]), DicomSegment(value: 6, name: "liver")],
        seriesDescription: "segmentation_spleen", to: segURL)
    #expect(info.modality == "SEG")
    #expect(info.sopClassUID == DicomInstanceInfo.segmentationStorageUID)
    #expect(info.referencedSeriesInstanceUID == ctInfo.seriesInstanceUID)
    #expect(info.studyInstanceUID == ctInfo.studyInstanceUID)
    #expect(info.patientID == "P7")
    #expect(info.seriesDescription == "segmentation_spleen")
    #expect(info.seriesInstanceUID != ctInfo.seriesInstanceUID)

    let (read, segments) = try DicomSeg.read(file: segURL, onto: grid)
    #expect(segments.map(\.value) == [1, 2, 3])
    #expect(segments.map(\.name) == ["spleen", "Segment_3", "liver"])
    #expect(segments[0].color.map { zip($0, [10, 200, 30]).allSatisfy { abs($0 - $1) <= 2 } } == true)
    #expect(read.spatialShape == grid.spatialShape)
    #expect(read.affine == grid.affine)
    let expected = label.data.asFloat().map { [0: 0, 1: 1, 3: 2, 6: 3][Int($0)] ?? -1 }
    #expect(read.data.asFloat().map { Int($0) } == expected)
}

@Test(.tags(.unit), .needsTools("dciodvfy", installedBy: "scripts/install-deps.sh installs dicom3tools"))
func seg_written_passesDciodvfyWithoutErrors() throws {
    let c = try SegCase()
    let report = try dciodvfy(c.seg)
    print("dciodvfy warnings on a SEG:\n" + report.warnings.joined(separator: "\n"))
    #expect(report.errors.isEmpty, "\(report.errors)")
    #expect(report.iod == ["Segmentation"], "dciodvfy did not recognise the IOD: \(report.iod)")
}

/// A series, its grid, a label on it and the SEG written from them.
private struct SegCase {
    let tmp: TempDir
    let files: [URL]
    let grid: Volume
    let label: Volume
    let seg: URL

    init() throws {
        tmp = try TempDir()
        files = try DicomSeriesWriter.writeCT(volume: syntheticCT(shape: [16, 12, 30]), to: tmp.sub("ct"), patientID: "P")
        grid = try DicomSeries.load(files: files).volume
        label = syntheticLabel(on: grid)
        seg = tmp.sub("seg.dcm")
        try DicomSeg.write(label: label, sourceFiles: files, segments: [], seriesDescription: "s", to: seg)
    }

    /// The label with values 1, 3, 6 renumbered to their segment numbers 1, 2, 3.
    var expected: [Int] { label.data.asFloat().map { [0: 0, 1: 1, 3: 2, 6: 3][Int($0)] ?? -1 } }
}

@Test(.tags(.unit)) func seg_framesPhysicallyShuffled_readByPlanePositions() throws {
    let c = try SegCase()
    let ds = try DicomDataset(contentsOf: c.seg)
    let frames = try #require(try ds.int("NumberOfFrames"))
    let (rows, cols) = (c.grid.spatialShape[1], c.grid.spatialShape[0])
    let frameBits = rows * cols
    let bits: [Bool] = try ds.withPixelBytes { raw in
        let raw = try #require(raw)
        return (0..<(frames * frameBits)).map { (raw[$0 >> 3] >> UInt8($0 & 7)) & 1 == 1 }
    }
    let item = { (f: Int) in "PerFrameFunctionalGroupsSequence[\(f)]" }
    let attributes = try (0..<frames).map { f in
        (try #require(try ds.string("\(item(f)).SegmentIdentificationSequence[0].ReferencedSegmentNumber")),
         try #require(try ds.string("\(item(f)).PlanePositionSequence[0].ImagePositionPatient")))
    }
    var rng = SplitMix(seed: 99)
    let order = Array(0..<frames).shuffled(using: &rng)
    #expect(order != Array(0..<frames))
    var packed = [UInt8](repeating: 0, count: (frames * frameBits + 7) / 8)
    for (new, old) in order.enumerated() {
        try ds.set("\(item(new)).SegmentIdentificationSequence[0].ReferencedSegmentNumber", attributes[old].0)
        try ds.set("\(item(new)).PlanePositionSequence[0].ImagePositionPatient", attributes[old].1)
        for b in 0..<frameBits where bits[old * frameBits + b] {
            let at = new * frameBits + b
            packed[at >> 3] |= 1 << UInt8(at & 7)
        }
    }
    try ds.setPixelBytes(packed)
    let shuffled = c.tmp.sub("shuffled.dcm")
    try ds.save(to: shuffled)

    let (read, segments) = try DicomSeg.read(file: shuffled, onto: c.grid)
    #expect(segments.map(\.value) == [1, 2, 3])
    #expect(read.data.asFloat().map { Int($0) } == c.expected)
}

@Test(.tags(.unit)) func seg_framesWithoutPlanePositions_placedThroughReferenceFiles() throws {
    let c = try SegCase()
    let ds = try DicomDataset(contentsOf: c.seg)
    let frames = try #require(try ds.int("NumberOfFrames"))
    for f in 0..<frames {
        try ds.set("PerFrameFunctionalGroupsSequence[\(f)].PlanePositionSequence[0].ImagePositionPatient", "")
    }
    let stripped = c.tmp.sub("stripped.dcm")
    try ds.save(to: stripped)
    do {
        _ = try DicomSeg.read(file: stripped, onto: c.grid)
        Issue.record("a SEG without plane positions was read without reference files")
    } catch let e as DicomError {
        #expect(e.message.contains("pass the reference files"), "\(e.message)")
    }
    let (read, _) = try DicomSeg.read(file: stripped, onto: c.grid, referenceFiles: c.files)
    #expect(read.data.asFloat().map { Int($0) } == c.expected)
}

@Test(.tags(.unit)) func seg_onAnotherGrid_isRefused() throws {
    let c = try SegCase()
    var other = c.grid
    other.affine[0, 3] += 0.5 * other.spacing[0]
    do {
        _ = try DicomSeg.read(file: c.seg, onto: other)
        Issue.record("a SEG was read onto a grid half a voxel away")
    } catch let e as DicomError {
        #expect(e.message.contains("not a slice plane"), "\(e.message)")
    }
}

@Test(.tags(.unit)) func seg_overlappingSegments_higherNumberWins() throws {
    let c = try SegCase()
    let ds = try DicomDataset(contentsOf: c.seg)
    // Relabel every frame of segment 3 as segment 1 and vice versa is not overlap; instead point the first frame of
    // segment 1 at the slice of a segment-2 frame so both paint one slice.
    let frames = try #require(try ds.int("NumberOfFrames"))
    let item = { (f: Int) in "PerFrameFunctionalGroupsSequence[\(f)]" }
    let numbers = try (0..<frames).map { try #require(try ds.int("\(item($0)).SegmentIdentificationSequence[0].ReferencedSegmentNumber")) }
    let f1 = try #require(numbers.firstIndex(of: 1)), f2 = try #require(numbers.firstIndex(of: 2))
    let p2 = try #require(try ds.string("\(item(f2)).PlanePositionSequence[0].ImagePositionPatient"))
    try ds.set("\(item(f1)).PlanePositionSequence[0].ImagePositionPatient", p2)
    let moved = c.tmp.sub("moved.dcm")
    try ds.save(to: moved)
    let (read, _) = try DicomSeg.read(file: moved, onto: c.grid)
    let values = read.data.asFloat()
    // On that slice, every voxel of segment 2 in the original stays 2.
    let k2 = try slice(of: p2, on: c.grid)
    let (a, b, d) = (c.grid.spatialShape[0], c.grid.spatialShape[1], c.grid.spatialShape[2])
    let expected = c.expected
    var checked = 0
    for i in 0..<a {
        for j in 0..<b where expected[(i * b + j) * d + k2] == 2 {
            #expect(values[(i * b + j) * d + k2] == 2)
            checked += 1
        }
    }
    #expect(checked > 0)
}

private func slice(of ipp: String, on grid: Volume) throws -> Int {
    let p = ipp.split(separator: "\\").compactMap { Double($0) }
    let inverse = try #require(grid.affine.inverted())
    return Int(inverse.apply((-p[0], -p[1], p[2])).2.rounded())
}

@Test(.tags(.unit)) func seg_emptyLabel_isRefused() throws {
    let tmp = try TempDir()
    let files = try DicomSeriesWriter.writeCT(volume: syntheticCT(shape: [4, 4, 3]), to: tmp.sub("ct"), patientID: "P")
    let grid = try DicomSeries.load(files: files).volume
    let empty = Volume(spatialShape: grid.spatialShape, data: .uint8(Array(repeating: 0, count: grid.voxelCount)), affine: grid.affine)
    #expect(throws: DicomError.self) {
        try DicomSeg.write(label: empty, sourceFiles: files, segments: [], seriesDescription: "s", to: tmp.sub("seg.dcm"))
    }
}

@Test(.tags(.unit)) func seg_labelOffTheSourceGrid_isRefused() throws {
    let c = try SegCase()
    var shifted = c.label
    shifted.affine[2, 3] += 1
    #expect(throws: DicomError.self) {
        try DicomSeg.write(label: shifted, sourceFiles: c.files, segments: [], seriesDescription: "s", to: c.tmp.sub("x.dcm"))
    }
}

/// Byte flips anywhere in a CT slice and a SEG give a DicomError or a result, never a crash.
@Test(.tags(.unit)) func corruptedFiles_neverCrash() throws {
    let c = try SegCase()
    var rng = SplitMix(seed: 2024)
    for source in [c.files[3], c.seg] {
        let original = [UInt8](try Data(contentsOf: source))
        for round in 0..<40 {
            var bytes = original
            for _ in 0..<(1 + round % 4) {
                let at = Int(rng.next() % UInt64(bytes.count))
                bytes[at] = round % 3 == 0 ? 0xFF : UInt8(truncatingIfNeeded: rng.next())
            }
            let url = c.tmp.sub("corrupt.dcm")
            try Data(bytes).write(to: url)
            if source == c.seg {
                _ = try? DicomSeg.read(file: url, onto: c.grid, referenceFiles: c.files)
                _ = try? DicomSeg.read(file: url)
            } else {
                var files = c.files
                files[3] = url
                _ = try? DicomSeries.load(files: files)
            }
            _ = try? DicomInstanceInfo.read(url)
        }
    }
}

@Test(.tags(.unit), arguments: [Float.nan, Float.infinity, -3, 70000])
func seg_labelValueOutsideSegmentRange_isRefused(bad: Float) throws {
    let c = try SegCase()
    var values = c.label.data.asFloat()
    values[values.count / 2] = bad
    let label = Volume(spatialShape: c.label.spatialShape, data: .float32(values), affine: c.label.affine)
    #expect(throws: DicomError.self) {
        try DicomSeg.write(label: label, sourceFiles: c.files, segments: [], seriesDescription: "s", to: c.tmp.sub("x.dcm"))
    }
}

/// The datastore path: image and label pass through .nii.gz files (float32 sform) before SEG conversion.
@Test(.tags(.unit)) func seg_imageAndLabelThroughNIfTIFiles_roundTrip() throws {
    let c = try SegCase()
    let imageFile = c.tmp.sub("image.nii.gz"), labelFile = c.tmp.sub("label.nii.gz")
    try ImageIO.write(c.grid, to: imageFile)
    try ImageIO.write(c.label, to: labelFile, dtype: .uint8)
    let image = try ImageIO.load(imageFile), label = try ImageIO.load(labelFile)
    let seg = c.tmp.sub("fromfiles.dcm")
    try DicomSeg.write(label: label, sourceFiles: c.files, segments: [], seriesDescription: "s", to: seg)
    let (read, _) = try DicomSeg.read(file: seg, onto: image)
    #expect(read.data.asFloat().map { Int($0) } == c.expected)
}

/// A reference whose first axis is flipped and then swapped with the second (e.g. a reoriented copy of the image):
/// frames still land voxel for voxel.
@Test(.tags(.unit)) func seg_readOntoFlippedAndPermutedGrid_placesEveryVoxel() throws {
    let c = try SegCase()
    let (n0, n1, n2) = (c.grid.spatialShape[0], c.grid.spatialShape[1], c.grid.spatialShape[2])
    let a = c.grid.affine
    // New voxel (p, q, k) is old voxel (i = n0 - 1 - q, j = p, k).
    var m = a.m
    for r in 0..<3 {
        m[r * 4 + 0] = a[r, 1]
        m[r * 4 + 1] = -a[r, 0]
        m[r * 4 + 3] = a[r, 3] + Double(n0 - 1) * a[r, 0]
    }
    let reference = Volume(spatialShape: [n1, n0, n2], data: .uint8(Array(repeating: 0, count: c.grid.voxelCount)),
                           affine: Affine(m))
    let (read, _) = try DicomSeg.read(file: c.seg, onto: reference)
    let got = read.data.asFloat().map { Int($0) }, expected = c.expected
    var mismatches = 0
    for p in 0..<n1 {
        for q in 0..<n0 {
            for k in 0..<n2 where got[(p * n0 + q) * n2 + k] != expected[((n0 - 1 - q) * n1 + p) * n2 + k] {
                mismatches += 1
            }
        }
    }
    #expect(mismatches == 0)
    #expect(got.contains(3))
}

@Test(.tags(.unit)) func seg_readWithoutReference_buildsTheSourceGridFromTheFrames() throws {
    let c = try SegCase()
    let (label, segments) = try DicomSeg.read(file: c.seg)
    #expect(segments.count == 3)
    #expect(label.spatialShape == c.grid.spatialShape)
    #expect(maxAffineDifference(label.affine, c.grid.affine) < 1e-4)
    #expect(label.data.asFloat().map { Int($0) } == c.expected)
}

/// Hostile values in the attributes the SEG readers compute with give a DicomError or a result, never a trap.
@Test(.tags(.unit), arguments: [
    ("NumberOfFrames", "-5"), ("NumberOfFrames", "99999999999"), ("NumberOfFrames", "0"), ("Rows", "0"),
    ("Columns", "70000"), ("BitsAllocated", "16"),
    ("SegmentSequence[0].SegmentNumber", "-1"), ("SegmentSequence[1].SegmentNumber", "1"),
    ("SegmentSequence[0].RecommendedDisplayCIELabValue", "65535\\0\\65535"),
    ("PerFrameFunctionalGroupsSequence[0].SegmentIdentificationSequence[0].ReferencedSegmentNumber", "9"),
    ("PerFrameFunctionalGroupsSequence[0].PlanePositionSequence[0].ImagePositionPatient", "1e308\\-1e308\\1e308"),
    ("PerFrameFunctionalGroupsSequence[1].PlanePositionSequence[0].ImagePositionPatient", "0\\0"),
    ("SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing", "0\\0"),
    ("SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing", "1e-300\\1e300"),
    ("SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].SpacingBetweenSlices", "1e-300"),
    ("SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient", "0\\0\\0\\0\\0\\0"),
    ("SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient", "nan\\0\\0\\0\\1\\0"),
])
func seg_hostileAttribute_neverTraps(path: String, value: String) throws {
    let c = try SegCase()
    let ds = try DicomDataset(contentsOf: c.seg)
    try ds.set(path, value)
    let url = c.tmp.sub("hostile.dcm")
    try ds.save(to: url)
    _ = try? DicomSeg.read(file: url, onto: c.grid, referenceFiles: c.files)
    _ = try? DicomSeg.read(file: url)
    _ = try? DicomInstanceInfo.read(url)
}

/// What readers check before trusting a SEG's frames: segments never overlap (one label map), and each frame keeps
/// its source slice's spatial locations (so frames may be indexed by source instance).
@Test(.tags(.unit)) func seg_declaresNoOverlap_andSpatialLocationsPreservedInEveryDerivation() throws {
    let c = try SegCase()
    let ds = try DicomDataset(contentsOf: c.seg)
    #expect(try ds.string("SegmentsOverlap") == "NO")
    let frames = try ds.itemCount("PerFrameFunctionalGroupsSequence")
    #expect(frames > 0)
    for f in 0..<frames {
        let source = "PerFrameFunctionalGroupsSequence[\(f)].DerivationImageSequence[0].SourceImageSequence[0]"
        #expect(try ds.string("\(source).SpatialLocationsPreserved") == "YES", "frame \(f + 1)")
    }
}

/// A label written on a flip and permutation of the series' axes (the same voxels, as a writer that reorients to
/// RAS leaves it) becomes the same SEG as on the series' own grid.
@Test(.tags(.unit)) func seg_labelOnFlippedAndPermutedAxes_isWrittenOntoTheSourceGrid() throws {
    let c = try SegCase()
    let (nx, ny, nz) = (c.grid.spatialShape[0], c.grid.spatialShape[1], c.grid.spatialShape[2])
    // New voxel (i', j', k) = old voxel (nx - 1 - j', i', k): axes 0 and 1 swapped, the first one reversed.
    let toOld = Affine([0, -1, 0, Double(nx - 1), 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1])
    let old = c.label.data.asFloat()
    var moved = [UInt8](repeating: 0, count: old.count)
    for i2 in 0..<ny {
        for j2 in 0..<nx {
            for k in 0..<nz { moved[(i2 * nx + j2) * nz + k] = UInt8(old[((nx - 1 - j2) * ny + i2) * nz + k]) }
        }
    }
    let reoriented = Volume(spatialShape: [ny, nx, nz], data: .uint8(moved), affine: c.grid.affine * toOld)
    let seg = c.tmp.sub("reoriented.dcm")
    try DicomSeg.write(label: reoriented, sourceFiles: c.files, segments: [], seriesDescription: "s", to: seg)
    let (read, _) = try DicomSeg.read(file: seg, onto: c.grid)
    #expect(read.data.asFloat().map { Int($0) } == c.expected)

    // Half a voxel off is not the same voxels.
    var shifted = reoriented
    shifted.affine = reoriented.affine * Affine([1, 0, 0, 0.5, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1])
    #expect(throws: DicomError.self) {
        try DicomSeg.write(label: shifted, sourceFiles: c.files, segments: [], seriesDescription: "s", to: c.tmp.sub("x.dcm"))
    }
}

/// Saves `ds` (a hostile variant of `c`'s SEG) and expects reading it onto `c`'s grid to be refused with a message
/// holding every one of `words`.
private func expectRefusal(_ ds: DicomDataset, _ c: SegCase, saying words: [String]) throws {
    let bomb = c.tmp.sub("bomb.dcm")
    try ds.save(to: bomb)
    do {
        _ = try DicomSeg.read(file: bomb, onto: c.grid)
        Issue.record("expected a refusal")
    } catch let e as DicomError {
        #expect(words.allSatisfy(e.message.contains), "\(e.message)")
    }
}

/// Issue 23: a SEG of millions of tiny frames is refused on its frame count before any frame is placed: a frame
/// is a plane of the reference, so a SEG needs at most one per segment and plane.
@Test(.tags(.unit)) func seg_moreFramesThanSegmentsTimesPlanes_isRefusedBeforeReadingThem() throws {
    let c = try SegCase()
    let ds = try DicomDataset(contentsOf: c.seg)
    let frames = 10_000
    try ds.set("NumberOfFrames", String(frames))
    try ds.setPixelData(littleEndian: [UInt8](repeating: 0, count: frames * 16 * 12), bitsAllocated: 8)
    try expectRefusal(ds, c, saying: ["NumberOfFrames 10000 exceeds one frame per segment and plane"])
}

/// Issue 23: 4 million 1x1 frames (a 488 KB SEG that once took 111 s and 1 GB to read) are refused on their count
/// at once, before any functional group or frame is read.
@Test(.tags(.unit)) func seg_fourMillionOneByOneFrames_isRefusedOnItsFrameCount() throws {
    let c = try SegCase()
    let ds = try DicomDataset(contentsOf: c.seg)
    let frames = 4_000_000
    try ds.set("NumberOfFrames", String(frames))
    try ds.set("Rows", "1")
    try ds.set("Columns", "1")
    try ds.setPixelData(littleEndian: [UInt8](repeating: 0xFF, count: frames / 8), bitsAllocated: 8)
    try ds.set("BitsAllocated", "1")
    try expectRefusal(ds, c, saying: ["NumberOfFrames 4000000 exceeds one frame per segment and plane"])
}

/// Issue 23: frames whose declared pixels reach MONAI_LABEL_MAX_VOXELS are refused before the pixel data is
/// decoded or the frames are placed.
@Test(.tags(.unit)) func seg_framesDeclaringMorePixelsThanTheVoxelLimit_areRefusedBeforeDecoding() throws {
    let c = try SegCase()
    let ds = try DicomDataset(contentsOf: c.seg)
    try ds.set("Rows", "65535")
    try ds.set("Columns", "65535")
    try expectRefusal(ds, c, saying: ["DICOM SEG frames", "MONAI_LABEL_MAX_VOXELS"])
}
