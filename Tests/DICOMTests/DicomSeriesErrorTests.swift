import Foundation
import Imaging
import Testing
@testable import DICOM

/// Writes a small oblique series and returns its files in slice order.
private func series(_ tmp: TempDir, _ name: String, shape: [Int] = [6, 5, 8], seriesUID: String? = nil,
                    affine: Affine = obliqueAffine()) throws -> [URL] {
    try DicomSeriesWriter.writeCT(volume: syntheticCT(shape: shape, affine: affine), to: tmp.sub(name),
                                  patientID: "P", seriesInstanceUID: seriesUID)
}

/// The message of the DicomError that `body` throws, or nil when it throws nothing.
private func dicomError(_ body: () throws -> Void) -> String? {
    do {
        try body()
        return nil
    } catch let e as DicomError {
        return e.message
    } catch {
        return "not a DicomError: \(error)"
    }
}

@Test(.tags(.unit)) func series_missingSlice_isRefusedNamingTheGap() throws {
    let tmp = try TempDir()
    var files = try series(tmp, "ct")
    files.remove(at: 4)
    let message = try #require(dicomError { _ = try DicomSeries.load(files: files) })
    #expect(message.contains("missing slices"), "\(message)")
}

@Test(.tags(.unit)) func series_mixedOrientation_isRefused() throws {
    let tmp = try TempDir()
    let files = try series(tmp, "ct")
    let ds = try DicomDataset(contentsOf: files[3])
    try ds.set("ImageOrientationPatient", "1\\0\\0\\0\\1\\0")
    try ds.save(to: files[3])
    let message = try #require(dicomError { _ = try DicomSeries.load(files: files) })
    #expect(message.contains("different orientations"), "\(message)")
}

@Test(.tags(.unit)) func series_differentSliceSizes_isRefused() throws {
    let tmp = try TempDir()
    let uid = try makeDicomUID()
    let a = try series(tmp, "a", seriesUID: uid)
    let b = try series(tmp, "b", shape: [7, 5, 8], seriesUID: uid)
    let message = try #require(dicomError { _ = try DicomSeries.load(files: a + [b[0]]) })
    #expect(message.contains("differ in size"), "\(message)")
}

@Test(.tags(.unit)) func series_duplicatePosition_isRefused() throws {
    let tmp = try TempDir()
    var files = try series(tmp, "ct")
    let copy = tmp.sub("copy.dcm")
    try FileManager.default.copyItem(at: files[2], to: copy)
    files.append(copy)
    let message = try #require(dicomError { _ = try DicomSeries.load(files: files) })
    #expect(message.contains("duplicate slices"), "\(message)")
}

@Test(.tags(.unit)) func series_twoSeriesMixed_isRefusedNamingBoth() throws {
    let tmp = try TempDir()
    let a = try series(tmp, "a"), b = try series(tmp, "b")
    let message = try #require(dicomError { _ = try DicomSeries.load(files: a + b) })
    #expect(message.contains("2 different series"), "\(message)")
}

@Test(.tags(.unit)) func series_sliceOffTheStack_isRefused() throws {
    let tmp = try TempDir()
    let files = try series(tmp, "ct")
    let ds = try DicomDataset(contentsOf: files[5])
    let p = try #require(try ds.numbers("ImagePositionPatient"))
    let normal = try #require(try ds.numbers("ImageOrientationPatient"))
    // Shift in-plane along the row direction: same position along the normal, off the line of the others.
    try ds.set("ImagePositionPatient", "\(p[0] + 5 * normal[0])\\\(p[1] + 5 * normal[1])\\\(p[2] + 5 * normal[2])")
    try ds.save(to: files[5])
    let message = try #require(dicomError { _ = try DicomSeries.load(files: files) })
    #expect(message.contains("off the line"), "\(message)")
}

@Test(.tags(.unit), arguments: [
    [UInt8](),
    Array("this is not a DICOM file at all, just some text\n".utf8),
    (0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 7) },
])
func series_garbageFile_isRefusedWithoutCrashing(bytes: [UInt8]) throws {
    let tmp = try TempDir()
    let url = tmp.sub("garbage.dcm")
    try Data(bytes).write(to: url)
    let message = try #require(dicomError { _ = try DicomSeries.load(files: [url]) })
    #expect(!message.isEmpty)
    #expect(dicomError { _ = try DicomInstanceInfo.read(data: bytes) } != nil)
    #expect(dicomError { _ = try DicomInstanceInfo.read(url) } != nil)
}

@Test(.tags(.unit)) func series_noFiles_isRefused() {
    #expect(dicomError { _ = try DicomSeries.load(files: []) } == "no DICOM files given")
}

@Test(.tags(.unit)) func series_withoutPixelData_isRefused() throws {
    let tmp = try TempDir()
    let ds = try DicomDataset()
    for (k, v) in [
        ("SOPClassUID", DicomInstanceInfo.ctImageStorageUID), ("SOPInstanceUID", try makeDicomUID()),
        ("SeriesInstanceUID", try makeDicomUID()), ("StudyInstanceUID", try makeDicomUID()),
        ("Rows", "4"), ("Columns", "4"), ("BitsAllocated", "16"), ("BitsStored", "16"), ("PixelRepresentation", "1"),
        ("ImageOrientationPatient", "1\\0\\0\\0\\1\\0"), ("ImagePositionPatient", "0\\0\\0"), ("PixelSpacing", "1\\1"),
    ] { try ds.set(k, v) }
    let url = tmp.sub("nopixels.dcm")
    try ds.save(to: url)
    let message = try #require(dicomError { _ = try DicomSeries.load(files: [url]) })
    #expect(message.contains("no pixel data"), "\(message)")
}

@Test(.tags(.unit)) func series_segFile_isRefusedAsNotAnImage() throws {
    let tmp = try TempDir()
    let files = try series(tmp, "ct")
    let (grid, _) = try DicomSeries.load(files: files)
    let seg = tmp.sub("seg.dcm")
    try DicomSeg.write(label: syntheticLabel(on: grid), sourceFiles: files, segments: [], seriesDescription: "s", to: seg)
    let message = try #require(dicomError { _ = try DicomSeries.load(files: [seg]) })
    #expect(message.contains("SEG"), "\(message)")
}

@Test(.tags(.unit)) func dataset_unknownKeyword_isAnErrorNotAbsent() throws {
    let tmp = try TempDir()
    let files = try series(tmp, "ct", shape: [2, 2, 1])
    let ds = try DicomDataset(contentsOf: files[0])
    #expect(try ds.string("PatientWeight") == nil)
    #expect(try ds.string("ReferencedSeriesSequence[0].SeriesInstanceUID") == nil)
    #expect(dicomError { _ = try ds.string("NoSuchKeywordAnywhere") } != nil)
}

@Test(.tags(.unit)) func series_truncatedFiles_failCleanlyOrLoad() throws {
    let tmp = try TempDir()
    let files = try series(tmp, "ct", shape: [6, 5, 2])
    let bytes = [UInt8](try Data(contentsOf: files[0]))
    for cut in stride(from: 1, to: bytes.count, by: max(1, bytes.count / 40)) {
        let url = tmp.sub("cut\(cut).dcm")
        try Data(bytes.prefix(cut)).write(to: url)
        do {
            _ = try DicomSeries.load(files: [url, files[1]])
        } catch let e as DicomError {
            #expect(!e.message.isEmpty)
        }
        do {
            _ = try DicomInstanceInfo.read(data: Array(bytes.prefix(cut)))
        } catch let e as DicomError {
            #expect(!e.message.isEmpty)
        }
    }
}

/// Hostile values in the attributes the series reader computes with give a DicomError or a volume, never a trap.
@Test(.tags(.unit), arguments: [
    ("Rows", "0"), ("Rows", "65535"), ("Columns", "-3"), ("BitsAllocated", "12"), ("BitsStored", "40"),
    ("BitsStored", "0"), ("PixelRepresentation", "7"), ("SamplesPerPixel", "3"), ("NumberOfFrames", "2"),
    ("PixelSpacing", "0\\1"), ("PixelSpacing", "1e308\\1e308"), ("ImagePositionPatient", "1e308\\0\\-1e308"),
    ("ImageOrientationPatient", "1\\0\\0\\1\\0\\0"), ("ImageOrientationPatient", "1e308\\0\\0\\0\\1\\0"),
    ("RescaleSlope", "1e308"), ("RescaleSlope", "0"), ("RescaleIntercept", "-1e308"),
])
func series_hostileAttribute_neverTraps(path: String, value: String) throws {
    let tmp = try TempDir()
    let files = try series(tmp, "ct", shape: [6, 5, 4])
    let ds = try DicomDataset(contentsOf: files[1])
    try ds.set(path, value)
    try ds.save(to: files[1])
    _ = try? DicomSeries.load(files: files)
    _ = try? DicomSeries.load(files: [files[1]])
}

/// Issue 23: an RLE slice declaring far more pixels than its data can hold (DCMTK would pad it with zeros to
/// the declared size) is refused before decoding, naming the file.
@Test(.tags(.unit)) func series_rleSliceDeclaringMorePixelsThanItsDataHolds_isRefusedBeforeDecoding() throws {
    let tmp = try TempDir()
    let volume = Volume(spatialShape: [8, 8, 2], data: .int16([Int16](repeating: 5, count: 128)), affine: .identity)
    let files = try DicomSeriesWriter.writeCT(volume: volume, to: tmp.sub("ct"), patientID: "P", transferSyntax: .rle)
    for file in files {
        var bytes = [UInt8](try Data(contentsOf: file))
        // Rows and Columns (US, explicit VR little endian): 8 -> 4096.
        for tag: [UInt8] in [[0x28, 0x00, 0x10, 0x00, 0x55, 0x53, 0x02, 0x00], [0x28, 0x00, 0x11, 0x00, 0x55, 0x53, 0x02, 0x00]] {
            let at = try #require((0...(bytes.count - tag.count)).first { Array(bytes[$0..<($0 + tag.count)]) == tag })
            bytes[at + 8] = 0x00
            bytes[at + 9] = 0x10
        }
        try Data(bytes).write(to: file)
    }
    do {
        _ = try DicomSeries.load(files: files)
        Issue.record("expected a refusal")
    } catch let e as DicomError {
        #expect(e.message.contains("cannot hold 33554432 bytes of pixels"), "\(e.message)")
    }
}

/// `bytes` with every occurrence of `from` replaced by `to` (same length).
private func patched(_ bytes: [UInt8], _ from: [UInt8], _ to: [UInt8]) -> [UInt8] {
    var out = bytes
    var at = 0
    while at + from.count <= out.count {
        if Array(out[at..<(at + from.count)]) == from {
            out.replaceSubrange(at..<(at + from.count), with: to)
            at += from.count
        } else {
            at += 1
        }
    }
    return out
}

/// A 2-slice 8x8 series in `syntax` whose Rows and Columns are rewritten to `size` (US, explicit VR little endian)
/// and, when `uid` is given, whose JPEG lossless transfer syntax UID is replaced by `uid` (of the same length).
private func compressedSeries(_ tmp: TempDir, _ name: String, _ syntax: DicomTransferSyntax, size: UInt16,
                              uid: String = "") throws -> [URL] {
    let volume = Volume(spatialShape: [8, 8, 2], data: .int16((0..<128).map { Int16($0) }), affine: .identity)
    let files = try DicomSeriesWriter.writeCT(volume: volume, to: tmp.sub(name), patientID: "P", transferSyntax: syntax)
    for file in files {
        var bytes = [UInt8](try Data(contentsOf: file))
        for tag: [UInt8] in [[0x28, 0x00, 0x10, 0x00, 0x55, 0x53, 0x02, 0x00], [0x28, 0x00, 0x11, 0x00, 0x55, 0x53, 0x02, 0x00]] {
            bytes = patched(bytes, tag + [8, 0], tag + [UInt8(size & 0xFF), UInt8(size >> 8)])
        }
        if !uid.isEmpty { bytes = patched(bytes, Array("1.2.840.10008.1.2.4.70".utf8), Array(uid.utf8)) }
        try Data(bytes).write(to: file)
    }
    return files
}

/// Issue 23: JPEG slices declaring more pixels than their data can possibly code (JPEG lossless: a bit per
/// sample; JPEG DCT: a bit per 8x8 block) are refused before DCMTK decodes them, naming the syntax.
@Test(.tags(.unit), arguments: [("", "JPEG lossless data of"), ("1.2.840.10008.1.2.4.50", "JPEG data of")])
func series_jpegSliceDeclaringMorePixelsThanItsDataCodes_isRefusedBeforeDecoding(uid: String, expected: String) throws {
    let tmp = try TempDir()
    let files = try compressedSeries(tmp, "ct", .jpegLossless, size: 4096, uid: uid)
    let message = dicomError { _ = try DicomSeries.load(files: files) }
    #expect(message?.contains(expected) == true && message?.contains("cannot hold 33554432 bytes of pixels") == true,
            "\(message ?? "loaded")")
}

/// JPEG 2000 has no decoder in DCMTK's free edition: refused by name before DCMTK is asked.
@Test(.tags(.unit)) func series_jpeg2000Slices_areRefusedByNameBeforeDecoding() throws {
    let tmp = try TempDir()
    let files = try compressedSeries(tmp, "ct", .jpegLossless, size: 8, uid: "1.2.840.10008.1.2.4.90")
    let message = dicomError { _ = try DicomSeries.load(files: files) }
    #expect(message?.contains("pixel data in JPEG 2000 cannot be decoded here") == true, "\(message ?? "loaded")")
}

/// The bounds themselves, per syntax: what the densest coding can hold passes, one sample more is refused (JPEG-LS
/// is checked here directly: the slice sizes its bound refuses also reach MONAI_LABEL_MAX_VOXELS).
@Test(.tags(.unit), arguments: [
    (DicomTransferSyntax.rle, 64, true),
    (DicomTransferSyntax.jpegLossless, 8, false),
    (DicomTransferSyntax.jpegLSLossless, 262_144, false),
])
func encapsulatedBound_admitsTheDensestCoding_refusesMore(syntax: DicomTransferSyntax, ratio: Int, inBytes: Bool) throws {
    let tmp = try TempDir()
    let files = try compressedSeries(tmp, "ct", syntax, size: 8)
    let ds = try DicomDataset(contentsOf: files[0])
    let size = try #require(ds.encodedSize)
    // 16-bit samples: the RLE bound counts decoded bytes, the JPEG ones samples.
    let most = (size * ratio + EncapsulatedPixels.headerSlack) / (inBytes ? 2 : 1)
    try EncapsulatedPixels.check(ds, samples: most, decoded: most * 2)
    #expect(throws: DicomError.self) { try EncapsulatedPixels.check(ds, samples: most + 1, decoded: (most + 1) * 2) }
    // Uncompressed data is never refused by this check (its size is the header's, checked as it is read).
    let native = try DicomDataset(contentsOf: try compressedSeries(tmp, "native", .explicitLittle, size: 8)[0])
    try EncapsulatedPixels.check(native, samples: 1 << 30, decoded: 1 << 31)
}

/// The same series compressed within its bound still loads (the check admits every real image).
@Test(.tags(.unit), arguments: [DicomTransferSyntax.rle, .jpegLossless, .jpegLSLossless])
func series_compressedWithinItsBound_loads(syntax: DicomTransferSyntax) throws {
    let tmp = try TempDir()
    let loaded = try DicomSeries.load(files: try compressedSeries(tmp, "ct", syntax, size: 8)).volume
    let plain = try DicomSeries.load(files: try compressedSeries(tmp, "plain", .explicitLittle, size: 8)).volume
    #expect(loaded.data.asFloat() == plain.data.asFloat())
}
