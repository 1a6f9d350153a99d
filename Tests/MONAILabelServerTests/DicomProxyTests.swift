import DICOM
import DICOMweb
import DICOMwebDatastore
import Foundation
import HTTPClient
import HTTPServer
import MONAILabel
import Testing
@testable import MONAILabelServer

/// Upstream's relay rule (`proxy.py`), without sockets.
@Suite(.tags(.unit)) struct DicomRelayTargetTests {
    static func settings(_ env: [String: String] = [:], root: String = "http://pacs:8042/dicom-web/") throws -> DicomWebSettings {
        try DicomWebSettings(studies: root, environment: env)
    }

    @Test func relay_servicePrefixesGoFirst_queryKept() throws {
        let s = try Self.settings(["MONAI_LABEL_QIDO_PREFIX": "q", "MONAI_LABEL_WADO_PREFIX": "w", "MONAI_LABEL_STOW_PREFIX": "s"])
        #expect(s.relayTarget(service: .qido, path: "studies", query: "limit=101&offset=0")?.url.absoluteString
            == "http://pacs:8042/dicom-web/q/studies?limit=101&offset=0")
        #expect(s.relayTarget(service: .wado, path: "studies/1.2/series/3.4", query: nil)?.url.absoluteString
            == "http://pacs:8042/dicom-web/w/studies/1.2/series/3.4")
        #expect(s.relayTarget(service: .stow, path: "studies", query: nil)?.url.absoluteString
            == "http://pacs:8042/dicom-web/s/studies")
    }

    @Test func relay_qidoMetadata_takesTheWadoPrefix() throws {
        let s = try Self.settings(["MONAI_LABEL_QIDO_PREFIX": "q", "MONAI_LABEL_WADO_PREFIX": "w"])
        #expect(s.relayTarget(service: .qido, path: "studies/1.2/series/3.4/metadata", query: nil)?.url.absoluteString
            == "http://pacs:8042/dicom-web/w/studies/1.2/series/3.4/metadata")
        #expect(try Self.settings().relayTarget(service: .qido, path: "studies/1/metadata", query: nil)?.url.absoluteString
            == "http://pacs:8042/dicom-web/studies/1/metadata")
    }

    @Test func relay_dotSegments_areRefused_evenPercentEncoded() throws {
        let s = try Self.settings()
        for path in ["../tools/reset", "studies/..", "studies/%2e%2e/x", "studies/%2E/x", "a/%2F../b", "./studies"] {
            #expect(s.relayTarget(service: .wado, path: path, query: nil) == nil, "\(path)")
        }
    }

    @Test func relay_credentials_onlyWhenUserAndPasswordAreBothSet() throws {
        let both = try Self.settings(["MONAI_LABEL_DICOMWEB_USERNAME": "orthanc", "MONAI_LABEL_DICOMWEB_PASSWORD": "pw"])
            .relayTarget(service: .qido, path: "studies", query: nil)
        #expect(both?.username == "orthanc")
        #expect(both?.password == "pw")
        let userOnly = try Self.settings(["MONAI_LABEL_DICOMWEB_USERNAME": "orthanc"]).relayTarget(service: .qido, path: "studies", query: nil)
        #expect(userOnly?.username == nil)
        #expect(userOnly?.password == nil)
    }
}

/// The relay through the real router and sockets.
@Suite(.tags(.router), .serialized) struct DicomProxyRoutesTests {
    @Test func proxy_onFolderDatastore_is404SayingItNeedsDICOMweb() throws {
        let client = try TestClient()
        for target in ["/proxy/dicom/qido/studies", "/proxy/dicom/wado/studies/1/series/2", "/proxy/dicom/stow/studies"] {
            let r = try client.get(target)
            #expect(r.status == 404, "\(target)")
            #expect(r.json?["detail"]?.stringValue?.contains("DICOMweb datastore") == true, "\(target)")
        }
        #expect(try client.send(.post, "/proxy/dicom/stow/studies", body: [1, 2]).status == 404)
    }

    /// A fake PACS that records what reaches it and answers `[]` (so the datastore's own listing is content).
    final class RecordingPACS: @unchecked Sendable {
        let lock = NSLock()
        var seen: [(method: String, target: String, headers: HTTPHeaders, body: [UInt8])] = []
        let server: HTTPServer

        init() throws {
            var router = HTTPRouter()
            let box = Box()
            let handler: HTTPHandler = { req in
                box.pacs?.record(req.method.rawValue, req.target, req.headers, try req.bodyBytes())
                var r = HTTPResponse.bytes(Array("[]".utf8), contentType: "application/dicom+json")
                r.headers.add("ETag", "\"v1\"")
                r.headers.add("X-Internal", "not relayed")
                return r
            }
            router.get("/{rest:path}", handler)
            router.post("/{rest:path}", handler)
            server = HTTPServer(configuration: HTTPServerConfiguration(host: "127.0.0.1", port: 0), router: router)
            try server.start()
            box.pacs = self
        }

        final class Box: @unchecked Sendable { weak var pacs: RecordingPACS? }

        func record(_ m: String, _ t: String, _ h: HTTPHeaders, _ b: [UInt8]) {
            lock.lock()
            seen.append((m, t, h, b))
            lock.unlock()
        }

        func requests(containing s: String) -> [(method: String, target: String, headers: HTTPHeaders, body: [UInt8])] {
            lock.lock()
            defer { lock.unlock() }
            return seen.filter { $0.target.contains(s) }
        }

        var port: Int { server.port ?? 0 }
    }

    @Test(.timeLimit(.minutes(6)))
    func proxy_relaysWithPrefixesAndBasicAuth_notTheCallersAuthorization() throws {
        let tmp = TempDir()
        let pacs = try RecordingPACS()
        defer { pacs.server.shutdown(gracePeriod: 0) }
        let server = try DicomWebLiveTests.startServer(tmp, studies: "http://127.0.0.1:\(pacs.port)/dicom-web",
                                                       cache: tmp.url.appendingPathComponent("cache"), extra: [
            "MONAI_LABEL_QIDO_PREFIX": "q", "MONAI_LABEL_WADO_PREFIX": "w", "MONAI_LABEL_STOW_PREFIX": "s",
            "MONAI_LABEL_DICOMWEB_USERNAME": "orthanc", "MONAI_LABEL_DICOMWEB_PASSWORD": "s3cret",
        ])
        defer { server.stop() }
        let api = DicomWebLiveTests.Server(port: server.port)

        let r = try api.send("GET", "/proxy/dicom/qido/studies/1.2/series/3.4/metadata?includefield=all",
                             headers: [("Authorization", "Bearer caller-token"), ("Accept", "application/dicom+json")])
        #expect(r.status == 200)
        #expect(r.text == "[]")
        #expect(r.headers["ETag"] == "\"v1\"")
        #expect(r.headers["X-Internal"] == nil)
        let got = try #require(pacs.requests(containing: "/metadata").first)
        #expect(got.target == "/dicom-web/w/studies/1.2/series/3.4/metadata?includefield=all")
        #expect(got.headers["Authorization"] == basicAuthorization(user: "orthanc", password: "s3cret"))
        #expect(got.headers["Accept"] == "application/dicom+json")

        let body = Array(repeating: UInt8(7), count: 300_000)
        let post = try api.send("POST", "/proxy/dicom/stow/studies", headers: [
            ("Content-Type", "multipart/related; type=\"application/dicom\"; boundary=xyz")], body: body)
        #expect(post.status == 200)
        let stow = try #require(pacs.requests(containing: "/dicom-web/s/studies").first { $0.method == "POST" })
        #expect(stow.body == body)
        #expect(stow.headers["Content-Type"] == "multipart/related; type=\"application/dicom\"; boundary=xyz")

        let escape = try api.send("GET", "/proxy/dicom/wado/studies/%2e%2e/%2e%2e/tools")
        #expect(escape.status == 400)
        #expect(pacs.requests(containing: "tools").isEmpty)
    }

    @Test(.timeLimit(.minutes(6)))
    func proxy_pacsDown_is502WithoutCredentialsInTheDetail() throws {
        let tmp = TempDir()
        let port = try freePort()
        let server = try DicomWebLiveTests.startServer(tmp, studies: "http://127.0.0.1:\(port)/dicom-web",
                                                       cache: tmp.url.appendingPathComponent("cache"), extra: [
            "MONAI_LABEL_DICOMWEB_USERNAME": "orthanc", "MONAI_LABEL_DICOMWEB_PASSWORD": "s3cret",
        ])
        defer { server.stop() }
        let r = try DicomWebLiveTests.Server(port: server.port).send("GET", "/proxy/dicom/qido/studies")
        #expect(r.status == 502)
        #expect(r.text.contains("DICOMweb server did not answer"))
        #expect(!r.text.contains("s3cret"))
    }
}

/// The relay against a real Orthanc: OHIF's study list query, a whole series streamed through, a STOW.
@Suite(.tags(.live), .serialized, .enabled(if: Orthanc.available, "needs /usr/sbin/Orthanc and the DICOMweb plugin (scripts/install-deps.sh)"))
struct DicomProxyOrthancTests {
    @Test(.timeLimit(.minutes(13)))
    func proxy_orthanc_studyList_seriesRetrieveStreamed_andStow() throws {
        let tmp = TempDir()
        let orthanc = try Orthanc(dir: tmp.url.appendingPathComponent("orthanc"))
        let (series, files) = try DicomWebLiveTests.upload(orthanc, into: tmp.url.appendingPathComponent("ct1"), patient: "P1")
        let study = try DicomInstanceInfo.read(files[0]).studyInstanceUID
        let server = try DicomWebLiveTests.startServer(tmp, studies: orthanc.root, cache: tmp.url.appendingPathComponent("cache"))
        defer { server.stop() }
        let api = DicomWebLiveTests.Server(port: server.port)

        // The study list query OHIF sends.
        let list = try api.send("GET", "/proxy/dicom/qido/studies?limit=101&offset=0&fuzzymatching=false&includefield=00081030%2C00080060",
                                headers: [("Accept", "application/dicom+json")])
        #expect(list.status == 200)
        #expect(list.text.contains(study))

        // Series metadata through QIDO (the metadata-via-WADO rule) names every instance.
        let meta = try api.send("GET", "/proxy/dicom/qido/studies/\(study)/series/\(series)/metadata")
        #expect(meta.status == 200)
        #expect((try JSONValue.parse(meta.body)).arrayValue?.count == files.count)

        // The whole series as multipart: chunked (relayed as it arrives), every instance's bytes inside.
        let all = try api.send("GET", "/proxy/dicom/wado/studies/\(study)/series/\(series)",
                               headers: [("Accept", "multipart/related; type=\"application/dicom\"")])
        #expect(all.status == 200)
        #expect(all.headers["Transfer-Encoding"]?.lowercased() == "chunked")
        let contentType = try #require(all.headers["Content-Type"])
        #expect(contentType.hasPrefix("multipart/related"))
        let boundary = try #require(MultipartRelated.parameter("boundary", in: contentType))
        let parts = try MultipartRelated.parse(all.body, boundary: boundary)
        #expect(parts.count == files.count)

        // STOW through the relay: a second series, then QIDO through the relay finds it.
        let more = try DicomSeriesWriter.writeCT(volume: DicomWebLiveTests.makeCT(), to: tmp.url.appendingPathComponent("ct2"), patientID: "P2")
        let (ct, body) = MultipartRelated.build(dicomInstances: try more.map { Array(try Data(contentsOf: $0)) })
        let stored = try api.send("POST", "/proxy/dicom/stow/studies", headers: [("Content-Type", ct), ("Accept", "application/dicom+json")], body: body)
        #expect(stored.status == 200, "\(stored.text.prefix(300))")
        let newStudy = try DicomInstanceInfo.read(more[0]).studyInstanceUID
        #expect(try api.send("GET", "/proxy/dicom/qido/studies?PatientID=P2").text.contains(newStudy))
    }
}
