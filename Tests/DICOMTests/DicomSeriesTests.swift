import Foundation
import Imaging
import Testing
@testable import DICOM

@Test func series_obliqueRoundTrip_shuffledFiles_givesSameAffineAndValues() throws {
    let tmp = try TempDir()
    let volume = syntheticCT(shape: [24, 20, 41])
    var files = try DicomSeriesWriter.writeCT(volume: volume, to: tmp.sub("ct"), patientID: "P1")
    var rng = SplitMix(state: 7)
    files.shuffle(using: &rng)
    let (loaded, info) = try DicomSeries.load(files: files)
    #expect(loaded.spatialShape == [24, 20, 41])
    #expect(maxAffineDifference(loaded.affine, volume.affine) < 1e-4)
    #expect(loaded.data.type == .float32)
    #expect(maxValueDifference(loaded, volume) == 0)
    #expect(info.patientID == "P1")
    #expect(info.modality == "CT")
}

@Test func writeCT_slice_passesDciodvfyWithoutErrors() throws {
    let tmp = try TempDir()
    let files = try DicomSeriesWriter.writeCT(volume: syntheticCT(shape: [8, 6, 3]), to: tmp.sub("ct"), patientID: "P1")
    guard let report = try dciodvfy(files[1]) else {
        print("dciodvfy not on PATH (scripts/install-deps.sh installs dicom3tools): check skipped")
        return
    }
    print("dciodvfy warnings on a CT slice:\n" + report.warnings.joined(separator: "\n"))
    #expect(report.errors.isEmpty, "\(report.errors)")
}
