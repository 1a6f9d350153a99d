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

/// Our server on a real Orthanc's DICOMweb root: listing, inference, SEG round trip, restarts, PACS outages.
@Suite(.tags(.live), .serialized, .enabled(if: Orthanc.available, "needs /usr/sbin/Orthanc and the DICOMweb plugin (scripts/install-deps.sh)"))
struct DicomWebLiveTests {
    /// A 32x32x40 CT, oblique (rotated 20 degrees about z, tilted about x), 1.5 x 1.25 x 2.5 mm, with a bright box.
    static func makeCT() -> Volume {
        let (nx, ny, nz) = (32, 32, 40)
        var values = [Int16](repeating: -1000, count: nx * ny * nz)
        for x in 0..<nx {
            for y in 0..<ny {
                for z in 0..<nz {
                    let inBox = (8..<20).contains(x) && (10..<22).contains(y) && (12..<30).contains(z)
                    values[(x * ny + y) * nz + z] = inBox ? 120 : Int16(-1000 + (x + y + z) % 50)
                }
            }
        }
        let a = 20.0 * Double.pi / 180, t = 10.0 * Double.pi / 180
        // Direction columns: the unit axes rotated by a about z, then by t about x.
        let i = (cos(a), sin(a) * cos(t), sin(a) * sin(t))
        let j = (-sin(a), cos(a) * cos(t), cos(a) * sin(t))
        let k = (i.1 * j.2 - i.2 * j.1, i.2 * j.0 - i.0 * j.2, i.0 * j.1 - i.1 * j.0)
        let (si, sj, sk) = (1.5, 1.25, 2.5)
        let affine = Affine([
            i.0 * si, j.0 * sj, k.0 * sk, -20.5,
            i.1 * si, j.1 * sj, k.1 * sk, 14.25,
            i.2 * si, j.2 * sj, k.2 * sk, -60,
            0, 0, 0, 1,
        ])
        return Volume(spatialShape: [nx, ny, nz], data: .int16(values), affine: affine)
    }

    /// Writes a CT series with DicomSeriesWriter and stores it in Orthanc; returns its SeriesInstanceUID.
    static func upload(_ orthanc: Orthanc, into dir: URL, patient: String) throws -> (series: String, files: [URL]) {
        let files = try DicomSeriesWriter.writeCT(volume: makeCT(), to: dir, patientID: patient)
        let instances = try files.map { Array(try Data(contentsOf: $0)) }
        let stored = try orthanc.client().store(instances: instances)
        #expect(stored.storedSOPInstanceUIDs.count == files.count)
        return (try DicomInstanceInfo.read(files[0]).seriesInstanceUID, files)
    }

    static func startServer(_ tmp: TempDir, studies: String, cache: URL, extra: [String: String] = [:]) throws -> RunningServer {
        let appDir = tmp.url.appendingPathComponent("app")
        try FileManager.default.createDirectory(at: appDir, withIntermediateDirectories: true)
        try Data(TrainHarness.appJSON.utf8).write(to: appDir.appendingPathComponent("app.json"))
        return try startJobServer(appDir: appDir, studies: studies, conf: ["models": "segmentation_spleen"], environment: [
            "MONAI_LABEL_DICOMWEB_CACHE_PATH": cache.path, "MONAI_LABEL_DICOMWEB_RETRIES": "2",
            "MONAI_LABEL_DICOMWEB_CONNECT_TIMEOUT": "2",
            // These tests read the first listing at once: let it finish rather than answer from the cache.
            "MONAI_LABEL_DICOMWEB_LISTING_WAIT": "60",
        ].merging(extra) { $1 })
    }

    /// Requests to our server over a socket.
    struct Server {
        let port: Int
        let http = HTTPClient(configuration: HTTPClientConfiguration(connectTimeout: 5, readTimeout: 120))

        func send(_ method: String, _ path: String, headers: [(String, String)] = [], body: [UInt8] = []) throws
            -> HTTPClientResponse
        {
            var h = HTTPHeaders()
            for (n, v) in headers { h.add(n, v) }
            return try http.send(method: method, url: URL(string: "http://127.0.0.1:\(port)\(path)")!, headers: h, body: body)
        }

        func json(_ method: String, _ path: String, body: String = "") throws -> (status: Int, json: JSONValue?) {
            let r = try send(method, path, headers: body.isEmpty ? [] : [("Content-Type", "application/json")], body: Array(body.utf8))
            return (r.status, try? JSONValue.parse(r.body))
        }
    }

    static func datastore(_ s: RunningServer) throws -> DicomWebDatastore {
        try #require(s.app.datastore as? DicomWebDatastore)
    }

    /// A label on the image's grid: the CT's bright box as spleen (1).
    static func boxLabel(onto image: Volume) -> Volume {
        let ct = makeCT().data.asFloat()
        return Volume(spatialShape: image.spatialShape, data: .uint8(ct.map { $0 > 0 ? 1 : 0 }), affine: image.affine)
    }

    static func readNIfTI(_ bytes: [UInt8], in dir: URL) throws -> Volume {
        let u = dir.appendingPathComponent(UUID().uuidString + ".nii.gz")
        try Data(bytes).write(to: u)
        return try NIfTI.read(u)
    }

    static func maxDifference(_ a: Affine, _ b: Affine) -> Double { zip(a.m, b.m).map { abs($0 - $1) }.max() ?? .infinity }

    @Test(.timeLimit(.minutes(13)))
    func orthanc_listInferSaveSEG_restart_outageAndRecovery() throws {
        let tmp = TempDir()
        let orthanc = try Orthanc(dir: tmp.url.appendingPathComponent("orthanc"))
        let (s1, files1) = try Self.upload(orthanc, into: tmp.url.appendingPathComponent("ct1"), patient: "P1")
        let (s2, _) = try Self.upload(orthanc, into: tmp.url.appendingPathComponent("ct2"), patient: "P2")
        let (s3, _) = try Self.upload(orthanc, into: tmp.url.appendingPathComponent("ct3"), patient: "P3")
        let expected = try DicomSeries.load(files: files1).volume

        var server = try Self.startServer(tmp, studies: orthanc.root, cache: tmp.url.appendingPathComponent("cache"))
        defer { server.stop() }
        var api = Server(port: server.port)

        // Listing: both series, none labelled.
        let stats = try api.json("GET", "/datastore/?output=stats")
        #expect(stats.status == 200)
        #expect(stats.json?["total"] == 3)
        #expect(stats.json?["completed"] == 0)
        #expect(Set(try Self.datastore(server).listImages()) == [s1, s2, s3])

        // Inference on the series returns a label on its grid; a second one downloads nothing.
        let infer1 = try api.send("POST", "/infer/segmentation_spleen?image=\(s1)&output=image")
        #expect(infer1.status == 200, "\(infer1.text.prefix(300))")
        let label = try Self.readNIfTI(infer1.body, in: tmp.url)
        #expect(label.spatialShape == [32, 32, 40])
        #expect(Self.maxDifference(label.affine, expected.affine) < 1e-3)
        let pacs = try Self.datastore(server)
        let requestsAfterFirst = pacs.client.requestCount
        let infer2 = try api.send("POST", "/infer/segmentation_spleen?image=\(s1)&output=image")
        #expect(infer2.status == 200)
        #expect(pacs.client.requestCount == requestsAfterFirst)

        // output=dicom_seg: the label as a SEG referencing the series (a random-weights model labels some voxels).
        let segOut = try api.send("POST", "/infer/segmentation_spleen?image=\(s1)&output=dicom_seg")
        #expect(segOut.status == 200, "\(segOut.text.prefix(300))")
        #expect(segOut.headers["Content-Type"] == "application/dicom")
        let segInfo = try DicomInstanceInfo.read(data: segOut.body)
        #expect(segInfo.sopClassUID == DicomInstanceInfo.segmentationStorageUID)
        #expect(segInfo.referencedSeriesInstanceUID == s1)

        // The cached NIfTI matches the series: same grid, same values.
        let image = try api.send("GET", "/datastore/image?image=\(s1)")
        #expect(image.status == 200)
        let cachedImage = try Self.readNIfTI(image.body, in: tmp.url)
        #expect(Self.maxDifference(cachedImage.affine, expected.affine) < 1e-4)
        #expect(cachedImage.data.asFloat() == expected.data.asFloat())

        // Saving a final label stores a SEG in Orthanc that QIDO finds, referencing the image series.
        let box = Self.boxLabel(onto: cachedImage)
        let boxFile = tmp.url.appendingPathComponent("box.nii.gz")
        try NIfTI.write(box, to: boxFile)
        let form = TestClient.multipart(
            fields: [("params", #"{"label_info": [{"name": "spleen", "idx": 1}]}"#)],
            files: [("label", "box.nii.gz", Array(try Data(contentsOf: boxFile)))])
        let saved = try api.send("PUT", "/datastore/label?image=\(s1)&tag=final", headers: form.headers, body: form.body)
        #expect(saved.status == 200, "\(saved.text.prefix(500))")
        let segs = try orthanc.client().searchSeries(filters: [("Modality", "SEG")])
        #expect(segs.count == 1)
        let segUID = try #require(segs.first?.string(DicomTag.seriesInstanceUID))
        let info = try api.json("GET", "/datastore/label/info?label=\(s1)&tag=final")
        #expect(info.json?["SeriesInstanceUID"] == .string(segUID))
        let segStudy = try #require(segs.first?.string(DicomTag.studyInstanceUID))
        let meta = try orthanc.client().seriesMetadata(study: segStudy, series: segUID)
        #expect(meta.first?.sequence(DicomTag.referencedSeriesSequence).first?.string(DicomTag.seriesInstanceUID) == s1)

        // The SEG Orthanc holds passes dciodvfy (when dicom3tools is installed).
        let segBytes = try orthanc.client().retrieveSeries(study: segStudy, series: segUID)
        #expect(segBytes.count == 1)
        let segFile = tmp.url.appendingPathComponent("seg.dcm")
        try Data(segBytes[0]).write(to: segFile)
        if FileManager.default.isExecutableFile(atPath: "/usr/bin/dciodvfy") {
            let (status, out) = try runProcess(URL(fileURLWithPath: "/usr/bin/dciodvfy"), [segFile.path])
            let errors = out.split(separator: "\n").filter { $0.hasPrefix("Error") }
            #expect(errors.isEmpty, "dciodvfy (exit \(status)): \(errors.joined(separator: "\n"))")
        }

        // A restarted server with an empty cache finds the label in the PACS and decodes it onto the grid.
        server.stop()
        server = try Self.startServer(tmp, studies: orthanc.root, cache: tmp.url.appendingPathComponent("cache2"))
        api = Server(port: server.port)
        let again = try api.json("GET", "/datastore/")
        #expect(again.json?["total"] == 3)
        #expect(again.json?["completed"] == 1)
        let fetched = try api.send("GET", "/datastore/label?label=\(s1)&tag=final")
        #expect(fetched.status == 200, "\(fetched.text.prefix(300))")
        let decoded = try Self.readNIfTI(fetched.body, in: tmp.url)
        #expect(decoded.spatialShape == box.spatialShape)
        #expect(Self.maxDifference(decoded.affine, expected.affine) < 1e-3)
        #expect(decoded.data.asFloat() == box.data.asFloat())

        // Active learning and training read the PACS's lists.
        let next = try api.json("POST", "/activelearning/random", body: "{}")
        #expect(next.status == 200)
        let picked = try #require(next.json?["id"]?.stringValue)
        #expect([s2, s3].contains(picked))
        // Active learning fetched the picked series; the other one is first needed during the outage.
        let neverFetched = picked == s2 ? s3 : s2
        let train = try api.json("GET", "/datastore/?output=train")
        let cacheRoot = try Self.datastore(server).settings.cacheDirectory.path
        let items = train.json?.arrayValue ?? []
        #expect(items.count == 1)
        #expect(items.first?["image"]?.stringValue == "\(cacheRoot)/\(s1).nii.gz")
        #expect(items.first?["label"]?.stringValue == "\(cacheRoot)/labels/final/\(s1).nii.gz")

        // A training job (a child process reading the cache folder as its studies) trains on that pair.
        let submitted = try api.json("POST", "/train/segmentation_spleen", body: #"{"max_epochs": 1, "val_split": 0}"#)
        #expect(submitted.status == 200, "\(String(describing: submitted.json))")
        var job: JSONValue = .null
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            job = try api.json("GET", "/train/").json ?? .null
            if let st = job["status"]?.stringValue, st != "SUBMITTED" && st != "RUNNING" { break }
            Thread.sleep(forTimeInterval: 0.25)
        }
        #expect(job["status"] == "DONE", "\(job.compactString().suffix(600))")

        // PACS down: what needs it answers 503 with a clear detail; the rest keeps serving.
        orthanc.stop()
        let down = try api.json("GET", "/datastore/image?image=\(neverFetched)")
        #expect(down.status == 503)
        #expect(down.json?["detail"]?.stringValue?.contains("PACS unreachable") == true)
        let saveDown = try api.send("PUT", "/datastore/label?image=\(s1)&tag=final", headers: form.headers, body: form.body)
        #expect(saveDown.status == 503)
        #expect(try api.json("GET", "/info/").status == 200)
        let statsDown = try api.json("GET", "/datastore/")
        #expect(statsDown.status == 200)
        #expect(statsDown.json?["error"]?.stringValue?.contains("PACS unreachable") == true)
        // The cached series still serves inference.
        #expect(try api.send("POST", "/infer/segmentation_spleen?image=\(s1)&output=json").status == 200)

        // PACS back on the same storage: works again without restarting our server.
        try orthanc.start()
        let up = try api.send("GET", "/datastore/image?image=\(neverFetched)")
        #expect(up.status == 200, "\(up.text.prefix(300))")
        // Listings keep answering from the last lists and refresh them in the background once the retry delay
        // has passed: the error clears within moments.
        Thread.sleep(forTimeInterval: DicomWebDatastore.retryAfterFailure)
        var statsUp = try api.json("GET", "/datastore/")
        let recovered = Date().addingTimeInterval(10)
        while statsUp.json?["error"] != nil && Date() < recovered {
            Thread.sleep(forTimeInterval: 0.1)
            statsUp = try api.json("GET", "/datastore/")
        }
        #expect(statsUp.json?["error"] == nil)
        #expect(statsUp.json?["total"] == 3)
    }

    @Test(.timeLimit(.minutes(6)))
    func unreachablePACS_atStart_serverAnswers_andPACSRequestsAre503() throws {
        let tmp = TempDir()
        let port = try freePort()
        let server = try Self.startServer(tmp, studies: "http://127.0.0.1:\(port)/dicom-web", cache: tmp.url.appendingPathComponent("cache"))
        defer { server.stop() }
        let api = Server(port: server.port)
        #expect(try api.json("GET", "/info/").status == 200)
        let stats = try api.json("GET", "/datastore/")
        #expect(stats.status == 200)
        #expect(stats.json?["total"] == 0)
        #expect(stats.json?["error"]?.stringValue?.contains("refused") == true)
        let infer = try api.json("POST", "/infer/segmentation_spleen?image=1.2.3.4&output=json")
        #expect(infer.status == 503)
        #expect(infer.json?["detail"]?.stringValue?.contains("PACS unreachable at http://127.0.0.1:\(port)/dicom-web") == true)
    }
}
