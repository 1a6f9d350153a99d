import DICOM
import DICOMweb
import DICOMwebDatastore
import Foundation
import HTTPClient
import Imaging
import MONAILabel
import Testing
import TestSupport
@testable import MONAILabelServer

/// The client venv's Python with pydicom, numpy, nibabel and highdicom: the writer and reader independent of ours.
let highdicomAvailable: Bool = {
    guard FileManager.default.isExecutableFile(atPath: clientPython.path),
          let r = try? runProcess(clientPython, ["-c", "import highdicom, pydicom, nibabel, numpy"]) else { return false }
    return r.status == 0
}()

/// dicom3tools' IOD checker, which judges the SEGs these tests get back.
private let dciodvfyPath = "/usr/bin/dciodvfy"

/// scripts/dicomweb_realsize.py with the client venv's Python.
func realsizeScript(_ arguments: [String]) throws -> (status: Int32, output: String) {
    try runProcess(clientPython, [repoRoot.appendingPathComponent("scripts/dicomweb_realsize.py").path] + arguments)
}

/// The PACS workflow at a realistic size on a real Orthanc: a 256x256x200 oblique CT written by pydicom (signed
/// int16 with rescale), final labels saved as SEGs and `output=dicom_seg`, decoded back by highdicom onto the
/// source frames by SOP instance (no geometry of ours involved) and compared voxel for voxel.
@Suite(.tags(.live), .serialized, .enabled(if: Orthanc.available, "needs /usr/sbin/Orthanc and the DICOMweb plugin (scripts/install-deps.sh)"),
       .enabled(if: highdicomAvailable, "needs .venv-client with pydicom, numpy, highdicom (scripts/make-client-venv.sh)"),
       .enabled(if: FileManager.default.isExecutableFile(atPath: dciodvfyPath), "needs dciodvfy (scripts/install-deps.sh installs dicom3tools)"))
struct DicomWebRealSizeTests {
    typealias Server = DicomWebLiveTests.Server

    static func startServer(_ tmp: TempDir, studies: String, cache: URL, environment: [String: String] = [:]) throws
        -> RunningServer
    {
        try DicomWebLiveTests.startServer(tmp, studies: studies, cache: cache, extra: environment)
    }

    /// Writes a series with pydicom and stores it in Orthanc (STOW-RS in batches); returns its UID and folder.
    static func pydicomSeries(_ orthanc: Orthanc, into dir: URL, cols: Int, rows: Int, slices: Int, seed: Int = 7,
                              patient: String = "REALSIZE") throws -> (series: String, dir: URL)
    {
        let (status, out) = try realsizeScript(["write-series", dir.path, "--cols", "\(cols)", "--rows", "\(rows)",
                                                "--slices", "\(slices)", "--seed", "\(seed)", "--patient", patient])
        try #require(status == 0, "write-series failed: \(out.suffix(2000))")
        let report = try JSONValue.parse(Array((out.split(separator: "\n").last ?? "").utf8))
        let series = try #require(report["series"]?.stringValue)
        let files = try #require(report["files"]?.arrayValue).compactMap(\.stringValue)
        for batch in stride(from: 0, to: files.count, by: 50) {
            let instances = try files[batch..<min(batch + 50, files.count)].map { Array(try Data(contentsOf: URL(fileURLWithPath: $0))) }
            let stored = try orthanc.client().store(instances: instances)
            try #require(stored.storedSOPInstanceUIDs.count == instances.count)
        }
        return (series, dir)
    }

    /// highdicom's decoding of `seg` onto the source frames against `label`: Dice per label value, warnings.
    static func checkSEG(_ seg: URL, source: URL, label: URL) throws -> JSONValue {
        let (status, out) = try realsizeScript(["check-seg", seg.path, source.path, label.path])
        let report = try? JSONValue.parse(Array((out.split(separator: "\n").last ?? "").utf8))
        #expect(status == 0, "check-seg: \(out.suffix(3000))")
        return report ?? .null
    }

    /// dciodvfy's errors and warnings about `file`.
    static func dciodvfyComplaints(_ file: URL) throws -> [String] {
        let (_, out) = try runProcess(URL(fileURLWithPath: dciodvfyPath), [file.path])
        return out.split(separator: "\n").filter { $0.hasPrefix("Error") || $0.hasPrefix("Warning") }.map(String.init)
    }

    /// A two-segment label on the image's grid: the bright sphere (1) and a speckled slab of body voxels (2), so
    /// frames hold both large regions and single voxels.
    static func twoSegmentLabel(onto image: Volume) -> Volume {
        let values = image.data.asFloat()
        let (nx, ny, nz) = (image.spatialShape[0], image.spatialShape[1], image.spatialShape[2])
        var out = [UInt8](repeating: 0, count: values.count)
        for x in 0..<nx {
            for y in 0..<ny {
                for z in 0..<nz {
                    let at = (x * ny + y) * nz + z
                    if values[at] > 120 {
                        out[at] = 1
                    } else if values[at] > -500, (nz / 4..<nz / 4 + 60).contains(z), (x + 2 * y + 3 * z) % 5 == 0 {
                        out[at] = 2
                    }
                }
            }
        }
        return Volume(spatialShape: image.spatialShape, data: .uint8(out), affine: image.affine)
    }

    static func retrieveSEG(_ orthanc: Orthanc, series seg: String, to url: URL) throws {
        let found = try orthanc.client().searchSeries(filters: [("SeriesInstanceUID", seg)])
        let study = try #require(found.first?.string(DicomTag.studyInstanceUID))
        let parts = try orthanc.client().retrieveSeries(study: study, series: seg)
        try #require(parts.count == 1)
        try Data(parts[0]).write(to: url)
    }

    @Test(.timeLimit(.minutes(15)))
    func realSizeObliqueSeries_finalLabelAndInferSEG_decodeWithHighdicomAtDice1() throws {
        let tmp = TempDir()
        let orthanc = try Orthanc(dir: tmp.url.appendingPathComponent("orthanc"))
        let (series, sourceDir) = try Self.pydicomSeries(orthanc, into: tmp.url.appendingPathComponent("ct"),
                                                         cols: 256, rows: 256, slices: 200)
        let server = try Self.startServer(tmp, studies: orthanc.root, cache: tmp.url.appendingPathComponent("cache"))
        defer { server.stop() }
        let api = Server(port: server.port)

        let image = try api.send("GET", "/datastore/image?image=\(series)")
        try #require(image.status == 200, "\(image.text.prefix(300))")
        let volume = try DicomWebLiveTests.readNIfTI(image.body, in: tmp.url)
        #expect(volume.spatialShape == [256, 256, 200])

        // A final label of 13 M voxels becomes a SEG in Orthanc (labels above ~92 KB used to be refused: their size
        // bound was taken from the cache's link to the upload, not from the upload).
        let label = Self.twoSegmentLabel(onto: volume)
        let labelFile = tmp.url.appendingPathComponent("label.nii.gz")
        try NIfTI.write(label, to: labelFile)
        let upload = Array(try Data(contentsOf: labelFile))
        #expect(upload.count > 100_000)
        let form = TestClient.multipart(
            fields: [("params", #"{"label_info": [{"name": "spleen", "idx": 1}, {"name": "speckle", "idx": 2}]}"#)],
            files: [("label", "label.nii.gz", upload)])
        let saved = try api.send("PUT", "/datastore/label?image=\(series)&tag=final", headers: form.headers, body: form.body)
        try #require(saved.status == 200, "\(saved.text.prefix(500))")
        let info = try api.json("GET", "/datastore/label/info?label=\(series)&tag=final")
        let segSeries = try #require(info.json?["SeriesInstanceUID"]?.stringValue)

        let segFile = tmp.url.appendingPathComponent("final-seg.dcm")
        try Self.retrieveSEG(orthanc, series: segSeries, to: segFile)
        let report = try Self.checkSEG(segFile, source: sourceDir, label: labelFile)
        #expect(report["dice"]?["1"]?.doubleValue == 1.0, "\(report.compactString())")
        #expect(report["dice"]?["2"]?.doubleValue == 1.0, "\(report.compactString())")
        #expect(report["segment_labels"] == ["spleen", "speckle"])
        #expect(report["segments_overlap"] == "NO")
        #expect(report["warnings"] == [], "\(report.compactString())")
        #expect(try Self.dciodvfyComplaints(segFile) == [])

        // Inference on the series as a SEG: highdicom decodes it to the label the same inference returns as NIfTI.
        let inferred = try api.send("POST", "/infer/segmentation_spleen?image=\(series)&output=image")
        try #require(inferred.status == 200, "\(inferred.text.prefix(300))")
        let inferredFile = tmp.url.appendingPathComponent("inferred.nii.gz")
        try Data(inferred.body).write(to: inferredFile)
        #expect(try NIfTI.read(inferredFile).spatialShape == [256, 256, 200])
        let segOut = try api.send("POST", "/infer/segmentation_spleen?image=\(series)&output=dicom_seg")
        try #require(segOut.status == 200, "\(segOut.text.prefix(500))")
        let inferSEG = tmp.url.appendingPathComponent("infer-seg.dcm")
        try Data(segOut.body).write(to: inferSEG)
        let inferReport = try Self.checkSEG(inferSEG, source: sourceDir, label: inferredFile)
        #expect(inferReport["ok"] == true, "\(inferReport.compactString())")

        // Labels of other tags as upstream takes them: an uncompressed .nii is kept and served back.
        let nii = tmp.url.appendingPathComponent("draft.nii")
        try NIfTI.write(label, to: nii)
        let draftForm = TestClient.multipart(files: [("label", "draft.nii", Array(try Data(contentsOf: nii)))])
        let draft = try api.send("PUT", "/datastore/label?image=\(series)&tag=draft", headers: draftForm.headers, body: draftForm.body)
        #expect(draft.status == 200, "\(draft.text.prefix(300))")
        let draftBack = try api.send("GET", "/datastore/label?label=\(series)&tag=draft")
        #expect(draftBack.status == 200)
        #expect(draftBack.body == Array(try Data(contentsOf: nii)))

        // A server with an empty cache decodes the PACS's SEG back to the uploaded label, voxel for voxel.
        let other = try Self.startServer(tmp, studies: orthanc.root, cache: tmp.url.appendingPathComponent("cache2"))
        defer { other.stop() }
        let fetched = try Server(port: other.port).send("GET", "/datastore/label?label=\(series)&tag=final")
        try #require(fetched.status == 200, "\(fetched.text.prefix(300))")
        let decoded = try DicomWebLiveTests.readNIfTI(fetched.body, in: tmp.url)
        #expect(decoded.spatialShape == label.spatialShape)
        #expect(decoded.data.asFloat() == label.data.asFloat())
    }
}
