import Foundation
import Imaging
import Testing
import TestSupport
@testable import DICOM

@Test(.tags(.unit)) func series_obliqueRoundTrip_shuffledFiles_givesSameAffineAndValues() throws {
    let tmp = try TempDir()
    let volume = syntheticCT(shape: [24, 20, 41])
    var files = try DicomSeriesWriter.writeCT(volume: volume, to: tmp.sub("ct"), patientID: "P1")
    var rng = SplitMix(seed: 7)
    files.shuffle(using: &rng)
    let (loaded, info) = try DicomSeries.load(files: files)
    #expect(loaded.spatialShape == [24, 20, 41])
    #expect(maxAffineDifference(loaded.affine, volume.affine) < 1e-4)
    #expect(loaded.data.type == .float32)
    #expect(maxValueDifference(loaded, volume) == 0)
    #expect(info.patientID == "P1")
    #expect(info.modality == "CT")
    // Slices are written in parallel: every one still gets its own SOP instance UID.
    let uids = try files.map { try DicomInstanceInfo.read($0) }
    #expect(Set(uids.map(\.sopInstanceUID)).count == files.count)
    #expect(Set(uids.map(\.seriesInstanceUID)).count == 1)
}

@Test(.tags(.unit), .needsTools("dciodvfy", installedBy: "scripts/install-deps.sh installs dicom3tools"))
func writeCT_slice_passesDciodvfyWithoutErrors() throws {
    let tmp = try TempDir()
    let files = try DicomSeriesWriter.writeCT(volume: syntheticCT(shape: [8, 6, 3]), to: tmp.sub("ct"), patientID: "P1")
    let report = try dciodvfy(files[1])
    print("dciodvfy warnings on a CT slice:\n" + report.warnings.joined(separator: "\n"))
    #expect(report.errors.isEmpty, "\(report.errors)")
    #expect(report.iod == ["CTImage"], "dciodvfy did not recognise the IOD: \(report.iod)")
}

@Test(.tags(.unit), arguments: [
    (DicomTransferSyntax.implicitLittle, "1.2.840.10008.1.2"),
    (DicomTransferSyntax.explicitLittle, "1.2.840.10008.1.2.1"),
    (DicomTransferSyntax.rle, "1.2.840.10008.1.2.5"),
    (DicomTransferSyntax.jpegLSLossless, "1.2.840.10008.1.2.4.80"),
    (DicomTransferSyntax.jpegLossless, "1.2.840.10008.1.2.4.70"),
])
func series_eachTransferSyntax_loadsSameValues(syntax: DicomTransferSyntax, uid: String) throws {
    let tmp = try TempDir()
    let volume = syntheticCT(shape: [12, 10, 5], seed: 3)
    let files = try DicomSeriesWriter.writeCT(volume: volume, to: tmp.sub("ct"), patientID: "P", transferSyntax: syntax)
    #expect(try DicomDataset(contentsOf: files[0]).transferSyntaxUID() == uid)
    let (loaded, _) = try DicomSeries.load(files: files)
    #expect(maxAffineDifference(loaded.affine, volume.affine) < 1e-4)
    #expect(maxValueDifference(loaded, volume) == 0)
}

/// dcmtk's command-line compressors (an encoder we do not drive) when they are on PATH.
@Test(.tags(.unit), .needsTools("dcmcrle", "dcmcjpls", installedBy: "scripts/install-deps.sh installs dcmtk"),
      arguments: [("dcmcrle", "1.2.840.10008.1.2.5"), ("dcmcjpls", "1.2.840.10008.1.2.4.80")])
func series_compressedByDcmtkTools_loadsSameValues(tool: String, uid: String) throws {
    let executable = try #require(which(tool))
    let tmp = try TempDir()
    let volume = syntheticCT(shape: [12, 10, 6], seed: 4)
    let files = try DicomSeriesWriter.writeCT(volume: volume, to: tmp.sub("ct"), patientID: "P")
    try FileManager.default.createDirectory(at: tmp.sub("packed"), withIntermediateDirectories: true)
    var packed: [URL] = []
    for f in files {
        let out = tmp.sub("packed").appendingPathComponent(f.lastPathComponent)
        let (status, output) = try runProcess(executable, [f.path, out.path])
        #expect(status == 0, "\(tool): \(output)")
        packed.append(out)
    }
    #expect(try DicomDataset(contentsOf: packed[0]).transferSyntaxUID() == uid)
    let (loaded, _) = try DicomSeries.load(files: packed)
    #expect(maxValueDifference(loaded, volume) == 0)
    #expect(maxAffineDifference(loaded.affine, volume.affine) < 1e-4)
}

@Test(.tags(.unit)) func series_loadDirectory_skipsHiddenFilesAndSubdirectories() throws {
    let tmp = try TempDir()
    let volume = syntheticCT(shape: [5, 4, 6])
    try DicomSeriesWriter.writeCT(volume: volume, to: tmp.sub("ct"), patientID: "P")
    try Data("not dicom".utf8).write(to: tmp.sub("ct").appendingPathComponent(".DS_Store"))
    try FileManager.default.createDirectory(at: tmp.sub("ct").appendingPathComponent("sub"), withIntermediateDirectories: true)
    #expect(try DicomSeries.files(in: tmp.sub("ct")).count == 6)
    let (loaded, _) = try DicomSeries.load(directory: tmp.sub("ct"))
    #expect(maxValueDifference(loaded, volume) == 0)
    #expect(throws: DicomError.self) { try DicomSeries.load(directory: tmp.sub("absent")) }
}

@Test(.tags(.unit)) func series_singleSlice_usesSliceThicknessAlongNormal() throws {
    let tmp = try TempDir()
    let volume = syntheticCT(shape: [6, 5, 1], affine: obliqueAffine(spacing: [0.5, 0.8, 3]))
    let files = try DicomSeriesWriter.writeCT(volume: volume, to: tmp.sub("ct"), patientID: "P")
    let (loaded, _) = try DicomSeries.load(files: files)
    #expect(loaded.spatialShape == [6, 5, 1])
    #expect(maxAffineDifference(loaded.affine, volume.affine) < 1e-4)
}

@Test(.tags(.unit)) func series_nonIntegralValues_roundTripWithinRescaleStep() throws {
    let tmp = try TempDir()
    let shape = [5, 4, 3]
    let values = (0..<60).map { Float($0) * 0.37 - 5.1 }
    let volume = Volume(spatialShape: shape, data: .float32(values), affine: obliqueAffine())
    let files = try DicomSeriesWriter.writeCT(volume: volume, to: tmp.sub("ct"), patientID: "P")
    let (loaded, _) = try DicomSeries.load(files: files)
    let step = Double(values.max()! - values.min()!) / 65535
    #expect(maxValueDifference(loaded, volume) <= step)
    #expect(loaded.data.type == .float32)
}

/// Also saves edited datasets over their own (lazily read) files, with pixel data beyond DCMTK's 4 KB read limit.
@Test(.tags(.unit)) func series_noRescale_keepsStoredIntegerType() throws {
    let tmp = try TempDir()
    let volume = syntheticCT(shape: [48, 40, 3])
    let files = try DicomSeriesWriter.writeCT(volume: volume, to: tmp.sub("ct"), patientID: "P")
    for f in files {
        let ds = try DicomDataset(contentsOf: f)
        try ds.set("RescaleIntercept", "0")
        try ds.save(to: f)
    }
    let (loaded, _) = try DicomSeries.load(files: files)
    #expect(loaded.data.type == .int16)
    // Stored values were written with intercept -1024.
    #expect(zip(loaded.data.asFloat(), volume.data.asFloat()).allSatisfy { $0 == $1 + 1024 })
}

@Test(.tags(.unit)) func instanceInfo_fromBytes_equalsFromFile() throws {
    let tmp = try TempDir()
    let files = try DicomSeriesWriter.writeCT(
        volume: syntheticCT(shape: [4, 4, 2]), to: tmp.sub("ct"), patientID: "PX", seriesDescription: "abdomen")
    let fromFile = try DicomInstanceInfo.read(files[0])
    let fromBytes = try DicomInstanceInfo.read(data: [UInt8](try Data(contentsOf: files[0])))
    #expect(fromFile == fromBytes)
    #expect(fromFile.patientID == "PX")
    #expect(fromFile.seriesDescription == "abdomen")
    #expect(fromFile.sopClassUID == DicomInstanceInfo.ctImageStorageUID)
    #expect(fromFile.studyDate == "20240101")
    #expect(fromFile.referencedSeriesInstanceUID == nil)
}

/// Several series decoded at once (the server converts what clients ask for concurrently) give the same volumes.
@Test(.tags(.unit)) func series_concurrentLoadsOfCompressedSeries_agree() async throws {
    let tmp = try TempDir()
    let volume = syntheticCT(shape: [20, 16, 12], seed: 8)
    let syntaxes: [DicomTransferSyntax] = [.rle, .jpegLSLossless, .jpegLossless, .explicitLittle]
    var dirs: [[URL]] = []
    for (n, syntax) in syntaxes.enumerated() {
        dirs.append(try DicomSeriesWriter.writeCT(volume: volume, to: tmp.sub("ct\(n)"), patientID: "P", transferSyntax: syntax))
    }
    let expected = volume.data.asFloat()
    let all = dirs
    try await withThrowingTaskGroup(of: Bool.self) { group in
        for round in 0..<8 {
            let files = all[round % all.count]
            group.addTask { try DicomSeries.load(files: files).volume.data.asFloat() == expected }
        }
        for try await same in group { #expect(same) }
    }
}

/// A gantry tilt: slice positions advance off the normal, and the affine keeps the shear rather than resampling.
@Test(.tags(.unit)) func series_gantryTilt_roundTripsTheShearedAffine() throws {
    let tmp = try TempDir()
    var affine = obliqueAffine(spacing: [0.8, 0.8, 2])
    // Add 0.5 mm of in-plane drift (along the first axis) per slice.
    for r in 0..<3 { affine[r, 2] += 0.5 * affine[r, 0] / 0.8 }
    let volume = syntheticCT(shape: [10, 9, 12], affine: affine, seed: 12)
    let files = try DicomSeriesWriter.writeCT(volume: volume, to: tmp.sub("ct"), patientID: "P")
    let (loaded, _) = try DicomSeries.load(files: files.reversed())
    #expect(maxAffineDifference(loaded.affine, affine) < 1e-4)
    #expect(maxValueDifference(loaded, volume) == 0)
}
