import Foundation
import Imaging
import Testing
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

@Test func seg_writeThenRead_givesLabelBackAsSegmentNumbers_andPassesDciodvfy() throws {
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

    if let report = try dciodvfy(segURL) {
        print("dciodvfy warnings on a SEG:\n" + report.warnings.joined(separator: "\n"))
        #expect(report.errors.isEmpty, "\(report.errors)")
    } else {
        print("dciodvfy not on PATH (scripts/install-deps.sh installs dicom3tools): validation skipped")
    }

    let (read, segments) = try DicomSeg.read(file: segURL, onto: grid)
    #expect(segments.map(\.value) == [1, 2, 3])
    #expect(segments.map(\.name) == ["spleen", "Segment_3", "liver"])
    #expect(segments[0].color.map { zip($0, [10, 200, 30]).allSatisfy { abs($0 - $1) <= 2 } } == true)
    #expect(read.spatialShape == grid.spatialShape)
    #expect(read.affine == grid.affine)
    let expected = label.data.asFloat().map { [0: 0, 1: 1, 3: 2, 6: 3][Int($0)] ?? -1 }
    #expect(read.data.asFloat().map { Int($0) } == expected)
}
