import Foundation
import Imaging
import Testing
import TestSupport
@testable import DICOM

private let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()
private let venvPython = repoRoot.appendingPathComponent(".venv-client/bin/python")
private let checkScript = repoRoot.appendingPathComponent("scripts/check_dicom_geometry.py")

/// Converts a generated oblique series (shuffled file names, anisotropic spacing, CT rescale) to NIfTI and has
/// scripts/check_dicom_geometry.py recompute affine and voxels from the DICOM files with pydicom + nibabel.
@Test(.tags(.unit), .enabled(if: FileManager.default.isExecutableFile(atPath: venvPython.path),
               "needs .venv-client with pydicom (scripts/make-client-venv.sh)"))
func geometry_convertedNIfTI_matchesPydicomArithmetic_andTheCheckCanFail() throws {
    let tmp = try TempDir()
    let source = syntheticCT(shape: [22, 18, 40], affine: obliqueAffine(spacing: [0.68, 0.93, 2.5]), seed: 11)
    let files = try DicomSeriesWriter.writeCT(volume: source, to: tmp.sub("ct"), patientID: "P")
    // File names in an order unrelated to slice positions.
    var rng = SplitMix(seed: 5)
    for (n, f) in files.shuffled(using: &rng).enumerated() {
        try FileManager.default.moveItem(at: f, to: tmp.sub("ct").appendingPathComponent(String(format: "IM%05d", n * 7919 % 10007)))
    }
    let shuffled = try FileManager.default.contentsOfDirectory(at: tmp.sub("ct"), includingPropertiesForKeys: nil)
    let (volume, _) = try DicomSeries.load(files: shuffled)
    let nifti = tmp.sub("image.nii.gz")
    try ImageIO.write(volume, to: nifti)

    let good = try runProcess(venvPython, [checkScript.path, tmp.sub("ct").path, nifti.path])
    #expect(good.status == 0, "\(good.output)")
    #expect(good.output.contains("\"ok\": true"), "\(good.output)")

    // The check must notice a 1e-3 mm affine error and a one-unit voxel error.
    var shifted = volume
    shifted.affine[1, 3] += 1e-3
    try ImageIO.write(shifted, to: tmp.sub("shifted.nii.gz"))
    let badAffine = try runProcess(venvPython, [checkScript.path, tmp.sub("ct").path, tmp.sub("shifted.nii.gz").path])
    #expect(badAffine.status == 1, "\(badAffine.output)")

    var values = volume.data.asFloat()
    values[values.count / 3] += 1
    var changed = volume
    changed.data = .float32(values)
    try ImageIO.write(changed, to: tmp.sub("changed.nii.gz"))
    let badVoxel = try runProcess(venvPython, [checkScript.path, tmp.sub("ct").path, tmp.sub("changed.nii.gz").path])
    #expect(badVoxel.status == 1, "\(badVoxel.output)")
}

/// pydicom decodes our SEG and places its frames by their own positions on the source grid: the same label. Frames of
/// 15 x 11 pixels are not byte-aligned, so the check also covers DICOM's continuous bit packing across frames.
@Test(.tags(.unit), .enabled(if: FileManager.default.isExecutableFile(atPath: venvPython.path),
               "needs .venv-client with pydicom (scripts/make-client-venv.sh)"))
func seg_decodedByPydicom_equalsTheLabel() throws {
    let tmp = try TempDir()
    let files = try DicomSeriesWriter.writeCT(volume: syntheticCT(shape: [15, 11, 30]), to: tmp.sub("ct"), patientID: "P")
    let grid = try DicomSeries.load(files: files).volume
    let label = syntheticLabel(on: grid)
    try DicomSeg.write(label: label, sourceFiles: files, segments: [DicomSegment(value: 6, name: "liver")],
                       seriesDescription: "s", to: tmp.sub("seg.dcm"))
    // Values 1, 3, 6 are segments 1, 2, 3.
    let numbered = label.data.asFloat().map { Float([0: 0, 1: 1, 3: 2, 6: 3][Int($0)] ?? -1) }
    let (ours, _) = try DicomSeg.read(file: tmp.sub("seg.dcm"), onto: grid)
    #expect(zip(ours.data.asFloat(), numbered).filter { $0 != $1 }.count == 0)
    let expected = Volume(spatialShape: label.spatialShape, data: .float32(numbered), affine: label.affine)
    try ImageIO.write(expected, to: tmp.sub("expected.nii.gz"), dtype: .uint8)
    let script = repoRoot.appendingPathComponent("scripts/check_dicom_seg.py")
    let good = try runProcess(venvPython, [script.path, tmp.sub("seg.dcm").path, tmp.sub("ct").path, tmp.sub("expected.nii.gz").path])
    #expect(good.status == 0, "\(good.output)")
    #expect(good.output.contains("\"segments\": [\"Segment_1\", \"Segment_3\", \"liver\"]"), "\(good.output)")

    // The check fails on a label that differs in one voxel.
    var wrong = numbered
    wrong[wrong.count / 2] = wrong[wrong.count / 2] == 0 ? 1 : 0
    try ImageIO.write(Volume(spatialShape: label.spatialShape, data: .float32(wrong), affine: label.affine),
                      to: tmp.sub("wrong.nii.gz"), dtype: .uint8)
    let bad = try runProcess(venvPython, [script.path, tmp.sub("seg.dcm").path, tmp.sub("ct").path, tmp.sub("wrong.nii.gz").path])
    #expect(bad.status == 1, "\(bad.output)")
}
