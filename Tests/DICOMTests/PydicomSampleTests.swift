import Foundation
import Imaging
import Testing
import TestSupport
@testable import DICOM

private let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()
private let venvPython = repoRoot.appendingPathComponent(".venv-client/bin/python")

/// pydicom's sample files (encoded by GDCM, dcmtk and others) in the client venv, when it exists.
private let samples: URL? = {
    let lib = repoRoot.appendingPathComponent(".venv-client/lib")
    guard let versions = try? FileManager.default.contentsOfDirectory(atPath: lib.path) else { return nil }
    for v in versions where v.hasPrefix("python3") {
        let dir = lib.appendingPathComponent("\(v)/site-packages/pydicom/data/test_files")
        if FileManager.default.fileExists(atPath: dir.appendingPathComponent("MR_small.dcm").path) { return dir }
    }
    return nil
}()

@Test(.tags(.unit), .enabled(if: samples != nil, "needs .venv-client with pydicom (scripts/make-client-venv.sh)"),
      arguments: ["MR_small_implicit.dcm", "MR_small_bigendian.dcm", "MR_small_expb.dcm", "MR_small_RLE.dcm",
                  "MR_small_jpeg_ls_lossless.dcm", "MR_small_padded.dcm"])
func pydicomSample_encodingVariant_decodesLikeTheUncompressedOriginal(name: String) throws {
    let dir = try #require(samples)
    let (reference, _) = try DicomSeries.load(files: [dir.appendingPathComponent("MR_small.dcm")])
    let (variant, info) = try DicomSeries.load(files: [dir.appendingPathComponent(name)])
    #expect(variant.spatialShape == [64, 64, 1])
    #expect(variant.data == reference.data)
    #expect(maxAffineDifference(variant.affine, reference.affine) < 1e-6)
    #expect(info.modality == "MR")
}

@Test(.tags(.unit), .enabled(if: samples != nil, "needs .venv-client with pydicom (scripts/make-client-venv.sh)"))
func pydicomSample_jpeg2000_isRefusedNamingTheTransferSyntax() throws {
    let dir = try #require(samples)
    do {
        _ = try DicomSeries.load(files: [dir.appendingPathComponent("MR_small_jp2klossless.dcm")])
        Issue.record("JPEG 2000 decoded, but DCMTK has no JPEG 2000 codec")
    } catch let e as DicomError {
        #expect(e.message.contains("JPEG 2000"), "\(e.message)")
    }
}

@Test(.tags(.unit), .enabled(if: samples != nil, "needs .venv-client with pydicom (scripts/make-client-venv.sh)"))
func pydicomSample_lossyJPEG12Bit_loads() throws {
    let dir = try #require(samples)
    let (volume, _) = try DicomSeries.load(files: [dir.appendingPathComponent("JPGExtended.dcm")])
    #expect(volume.spatialShape == [256, 1024, 1])
    let values = volume.data.asFloat()
    // 12-bit samples, decoded into a real image rather than zeros.
    #expect((values.max() ?? 0) > 0 && (values.max() ?? 0) <= 4095)
    #expect(Set(values).count > 10)
}

@Test(.tags(.unit), .enabled(if: samples != nil, "needs .venv-client with pydicom (scripts/make-client-venv.sh)"))
func pydicomSample_severalFilesWithoutPositions_areRefused() throws {
    let dir = try #require(samples)
    let tmp = try TempDir()
    let copy = tmp.sub("copy.dcm")
    try FileManager.default.copyItem(at: dir.appendingPathComponent("JPGExtended.dcm"), to: copy)
    do {
        _ = try DicomSeries.load(files: [dir.appendingPathComponent("JPGExtended.dcm"), copy])
        Issue.record("two files without positions were ordered")
    } catch let e as DicomError {
        #expect(e.message.contains("cannot be ordered"), "\(e.message)")
    }
}

/// pydicom + nibabel recompute geometry and values of real-world samples (CT with rescale, MR) from our NIfTI.
@Test(.tags(.unit), .enabled(if: samples != nil && FileManager.default.isExecutableFile(atPath: venvPython.path),
               "needs .venv-client with pydicom (scripts/make-client-venv.sh)"),
      arguments: ["CT_small.dcm", "MR_small.dcm"])
func pydicomSample_convertedNIfTI_matchesPydicomArithmetic(name: String) throws {
    let dir = try #require(samples)
    let tmp = try TempDir()
    let series = tmp.sub("series")
    try FileManager.default.createDirectory(at: series, withIntermediateDirectories: true)
    try FileManager.default.copyItem(at: dir.appendingPathComponent(name), to: series.appendingPathComponent(name))
    let (volume, _) = try DicomSeries.load(files: [series.appendingPathComponent(name)])
    let nifti = tmp.sub("image.nii")
    try ImageIO.write(volume, to: nifti)
    let script = repoRoot.appendingPathComponent("scripts/check_dicom_geometry.py")
    let result = try runProcess(venvPython, [script.path, series.path, nifti.path])
    #expect(result.status == 0, "\(result.output)")
}

/// dcmqi's liver SEG (pydicom's liver_1frame.dcm: one frame, shared orientation and pixel measures) read onto the
/// grid of its frame, compared with the bits pydicom unpacks.
@Test(.tags(.unit), .enabled(if: samples != nil && FileManager.default.isExecutableFile(atPath: venvPython.path),
               "needs .venv-client with pydicom (scripts/make-client-venv.sh)"))
func pydicomSample_dcmqiSEG_decodesLikePydicom() throws {
    let dir = try #require(samples)
    let seg = dir.appendingPathComponent("liver_1frame.dcm")
    let tmp = try TempDir()
    let npy = tmp.sub("mask.npy")
    let dump = try runProcess(venvPython, ["-c", """
        import sys, numpy as np, pydicom
        ds = pydicom.dcmread(sys.argv[1])
        np.save(sys.argv[2], ds.pixel_array.astype(np.uint8).reshape(ds.Rows, ds.Columns))
        """, seg.path, npy.path])
    #expect(dump.status == 0, "\(dump.output)")
    let mask = try NPYArray.read(npy)
    #expect(mask.shape == [512, 512])
    // The frame's own grid: identity orientation, 0.810547 mm pixels, its ImagePositionPatient (LPS -> RAS).
    let s = 0.810547
    let grid = Volume(
        spatialShape: [512, 512, 1], data: .uint8(Array(repeating: 0, count: 512 * 512)),
        affine: Affine([-s, 0, 0, 235.2, 0, -s, 0, 226.8, 0, 0, 1, -128.69, 0, 0, 0, 1]))
    let (label, segments) = try DicomSeg.read(file: seg, onto: grid)
    #expect(segments.map(\.name) == ["Liver"])
    let expected = mask.data.asFloat()
    let got = label.data.asFloat()
    var mismatches = 0
    for r in 0..<512 {
        for c in 0..<512 where got[c * 512 + r] != expected[r * 512 + c] { mismatches += 1 }
    }
    #expect(mismatches == 0)
    #expect(expected.reduce(0, +) > 1000)
    // Without a reference, the grid comes from the frame itself.
    let (own, _) = try DicomSeg.read(file: seg)
    #expect(own.spatialShape == [512, 512, 1])
    #expect(maxAffineDifference(own.affine, grid.affine) < 1e-4)
    #expect(own.data == label.data)
}
