import DICOM
import DICOMweb
import DICOMwebDatastore
import Foundation
import Imaging
import MONAILabel
import Testing
import TestSupport
@testable import MONAILabelServer

/// Several of our servers on one Orthanc (the first step of scaling inference out), and listings longer than one
/// QIDO page.
@Suite(.tags(.live), .serialized, .enabled(if: Orthanc.available, "needs /usr/sbin/Orthanc and the DICOMweb plugin (scripts/install-deps.sh)"))
struct DicomWebSharedPACSTests {
    typealias Server = DicomWebLiveTests.Server

    static func label(_ server: Server, _ series: String, in dir: URL) throws -> Volume {
        let r = try server.send("GET", "/datastore/label?label=\(series)&tag=final")
        try #require(r.status == 200, "\(r.text.prefix(300))")
        return try DicomWebLiveTests.readNIfTI(r.body, in: dir)
    }

    static func saveFinal(_ server: Server, _ series: String, _ label: Volume, in dir: URL) throws {
        let file = dir.appendingPathComponent(UUID().uuidString + ".nii.gz")
        try NIfTI.write(label, to: file)
        let form = TestClient.multipart(fields: [("params", #"{"label_info": [{"name": "spleen", "idx": 1}]}"#)],
                                        files: [("label", "label.nii.gz", Array(try Data(contentsOf: file)))])
        let saved = try server.send("PUT", "/datastore/label?image=\(series)&tag=final", headers: form.headers, body: form.body)
        try #require(saved.status == 200, "\(saved.text.prefix(300))")
    }

    @Test(.timeLimit(.minutes(13)))
    func twoServers_onePACS_labelSavedByOne_isServedByTheOtherAtOnce_andListedWithinTheLabelExpiry() throws {
        let tmp = TempDir()
        let orthanc = try Orthanc(dir: tmp.url.appendingPathComponent("orthanc"))
        let (s1, _) = try DicomWebLiveTests.upload(orthanc, into: tmp.url.appendingPathComponent("ct1"), patient: "P1")
        let (s2, _) = try DicomWebLiveTests.upload(orthanc, into: tmp.url.appendingPathComponent("ct2"), patient: "P2")
        let expiry = 1.0
        let env = ["MONAI_LABEL_DICOMWEB_LABEL_EXPIRY": "\(expiry)"]
        let serverA = try DicomWebRealSizeTests.startServer(tmp, studies: orthanc.root, cache: tmp.url.appendingPathComponent("cacheA"), environment: env)
        defer { serverA.stop() }
        let serverB = try DicomWebRealSizeTests.startServer(tmp, studies: orthanc.root, cache: tmp.url.appendingPathComponent("cacheB"), environment: env)
        defer { serverB.stop() }
        let (a, b) = (Server(port: serverA.port), Server(port: serverB.port))

        // Both have listed the PACS (and hold that listing) before A saves.
        for s in [a, b] {
            let stats = try s.json("GET", "/datastore/?output=stats")
            #expect(stats.json?["total"] == 2)
            #expect(stats.json?["completed"] == 0)
        }
        let image = try DicomWebLiveTests.readNIfTI(try a.send("GET", "/datastore/image?image=\(s1)").body, in: tmp.url)
        let box = DicomWebLiveTests.boxLabel(onto: image)
        try Self.saveFinal(a, s1, box, in: tmp.url)
        let savedAt = Date()

        // B serves A's label at once: fetching a final label asks the PACS.
        #expect(try Self.label(b, s1, in: tmp.url).data.asFloat() == box.data.asFloat())

        // B's listings show it within the label expiry.
        var listed = false
        while Date().timeIntervalSince(savedAt) < expiry + 5 {
            let stats = try b.json("GET", "/datastore/?output=stats")
            if stats.json?["completed"] == 1 {
                listed = true
                break
            }
            Thread.sleep(forTimeInterval: 0.2)
        }
        #expect(listed)
        #expect(Date().timeIntervalSince(savedAt) < expiry + 3)
        let unlabeled = try b.json("POST", "/activelearning/random", body: "{}")
        #expect(unlabeled.json?["id"]?.stringValue == s2)

        // A newer label saved by B replaces A's on both: the newest SEG of an image wins wherever it came from.
        var smaller = box
        smaller.data = .uint8(box.data.asFloat().enumerated().map { $0.element > 0 && $0.offset % 2 == 0 ? 1 : 0 })
        try Self.saveFinal(b, s1, smaller, in: tmp.url)
        #expect(try Self.label(a, s1, in: tmp.url).data.asFloat() == smaller.data.asFloat())
        #expect(try Self.label(b, s1, in: tmp.url).data.asFloat() == smaller.data.asFloat())
    }

    @Test(.timeLimit(.minutes(6)))
    func listing_longerThanOneQIDOPage_isComplete() throws {
        let tmp = TempDir()
        let orthanc = try Orthanc(dir: tmp.url.appendingPathComponent("orthanc"))
        var uploaded = Set<String>()
        for p in 1...5 {
            uploaded.insert(try DicomWebLiveTests.upload(orthanc, into: tmp.url.appendingPathComponent("ct\(p)"), patient: "P\(p)").series)
        }
        let server = try DicomWebRealSizeTests.startServer(tmp, studies: orthanc.root, cache: tmp.url.appendingPathComponent("cache"),
                                                           environment: ["MONAI_LABEL_DICOMWEB_QIDO_PAGE_SIZE": "2"])
        defer { server.stop() }
        let stats = try Server(port: server.port).json("GET", "/datastore/?output=stats")
        #expect(stats.json?["total"] == 5)
        #expect(Set(try DicomWebLiveTests.datastore(server).listImages()) == uploaded)
    }

    @Test(.timeLimit(.minutes(6)))
    func fetchByFrame_seriesRebuiltFromMetadataAndFrames_convertsLikeWholeInstances_andTakesAFinalSEG() throws {
        let tmp = TempDir()
        let orthanc = try Orthanc(dir: tmp.url.appendingPathComponent("orthanc"))
        let (series, files) = try DicomWebLiveTests.upload(orthanc, into: tmp.url.appendingPathComponent("ct"), patient: "P1")
        let expected = try DicomSeries.load(files: files).volume
        let server = try DicomWebRealSizeTests.startServer(tmp, studies: orthanc.root, cache: tmp.url.appendingPathComponent("cache"),
                                                           environment: ["MONAI_LABEL_DICOMWEB_FETCH_BY_FRAME": "true"])
        defer { server.stop() }
        let api = Server(port: server.port)
        let r = try api.send("GET", "/datastore/image?image=\(series)")
        try #require(r.status == 200, "\(r.text.prefix(300))")
        let image = try DicomWebLiveTests.readNIfTI(r.body, in: tmp.url)
        #expect(image.spatialShape == expected.spatialShape)
        #expect(DicomWebLiveTests.maxDifference(image.affine, expected.affine) < 1e-4)
        #expect(image.data.asFloat() == expected.data.asFloat())
        // One request per instance's frames (whole-instance retrieval is a single WADO-RS request).
        #expect(try DicomWebLiveTests.datastore(server).client.requestCount > files.count)

        // The rebuilt instances carry what a SEG needs (patient, study, frame of reference, SOP references).
        let box = DicomWebLiveTests.boxLabel(onto: image)
        try Self.saveFinal(api, series, box, in: tmp.url)
        let other = try DicomWebRealSizeTests.startServer(tmp, studies: orthanc.root, cache: tmp.url.appendingPathComponent("cache2"))
        defer { other.stop() }
        #expect(try Self.label(Server(port: other.port), series, in: tmp.url).data.asFloat() == box.data.asFloat())
    }

    @Test(.timeLimit(.minutes(6)))
    func unreadableFinalLabel_is422_namingTheClientsFile_neverAServerPath() throws {
        let tmp = TempDir()
        let orthanc = try Orthanc(dir: tmp.url.appendingPathComponent("orthanc"))
        let (series, _) = try DicomWebLiveTests.upload(orthanc, into: tmp.url.appendingPathComponent("ct"), patient: "P1")
        let server = try DicomWebRealSizeTests.startServer(tmp, studies: orthanc.root, cache: tmp.url.appendingPathComponent("cache"))
        defer { server.stop() }
        let api = Server(port: server.port)
        // A gzip header whose NIfTI header is cut short, and a NIfTI whose voxels are missing.
        var truncated = Array(try Data(contentsOf: {
            let u = tmp.url.appendingPathComponent("x.nii")
            try NIfTI.write(DicomWebLiveTests.makeCT(), to: u)
            return u
        }()))
        truncated.removeLast(truncated.count - 600)
        for (name, bytes) in [("broken.nii.gz", [0x1f, 0x8b, 8, 0, 0, 0, 0, 0] as [UInt8]), ("short.nii", truncated)] {
            let form = TestClient.multipart(files: [("label", name, bytes)])
            let r = try api.send("PUT", "/datastore/label?image=\(series)&tag=final", headers: form.headers, body: form.body)
            #expect(r.status == 422, "\(name): \(r.text.prefix(300))")
            let detail = (try? JSONValue.parse(r.body))?["detail"]?.stringValue ?? ""
            #expect(detail.contains(name), "\(detail)")
            #expect(!detail.contains(tmp.url.path) && !detail.contains(NSTemporaryDirectory()) && !detail.contains("/tmp/"), "\(detail)")
        }
    }

    @Test(.timeLimit(.minutes(6)))
    func binaryLabelBuffer_asOHIFSendsIt_isSavedAsASEG_andReadBackOnTheGrid() throws {
        let tmp = TempDir()
        let orthanc = try Orthanc(dir: tmp.url.appendingPathComponent("orthanc"))
        let (series, _) = try DicomWebLiveTests.upload(orthanc, into: tmp.url.appendingPathComponent("ct"), patient: "P1")
        let server = try DicomWebRealSizeTests.startServer(tmp, studies: orthanc.root, cache: tmp.url.appendingPathComponent("cache"))
        defer { server.stop() }
        let api = Server(port: server.port)
        let image = try DicomWebLiveTests.readNIfTI(try api.send("GET", "/datastore/image?image=\(series)").body, in: tmp.url)
        let box = DicomWebLiveTests.boxLabel(onto: image)
        // uint8 voxels, first axis fastest (upstream reshapes with order="F").
        let (nx, ny, nz) = (image.spatialShape[0], image.spatialShape[1], image.spatialShape[2])
        let values = box.data.asFloat()
        var buffer = [UInt8](repeating: 0, count: values.count)
        for i in 0..<nx {
            for j in 0..<ny {
                for k in 0..<nz { buffer[i + nx * (j + ny * k)] = UInt8(values[(i * ny + j) * nz + k]) }
            }
        }
        let form = TestClient.multipart(fields: [("params", #"{"label_info": [{"name": "spleen", "idx": 1}]}"#)],
                                        files: [("label", "label.bin", buffer)])
        let saved = try api.send("PUT", "/datastore/label?image=\(series)&tag=final", headers: form.headers, body: form.body)
        try #require(saved.status == 200, "\(saved.text.prefix(300))")
        let other = try DicomWebRealSizeTests.startServer(tmp, studies: orthanc.root, cache: tmp.url.appendingPathComponent("cache2"))
        defer { other.stop() }
        #expect(try Self.label(Server(port: other.port), series, in: tmp.url).data.asFloat() == values)

        // A buffer that is not one byte per voxel is refused, naming the sizes.
        let short = TestClient.multipart(files: [("label", "label.bin", Array(buffer.dropLast()))])
        let refused = try api.send("PUT", "/datastore/label?image=\(series)&tag=final", headers: short.headers, body: short.body)
        #expect(refused.status == 422)
        #expect(refused.text.contains("\(buffer.count - 1) bytes"), "\(refused.text.prefix(300))")
    }
}
