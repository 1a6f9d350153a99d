import Foundation
import Imaging
import MONAILabel
import DICOM
import DICOMweb
import HTTPServer
import Testing
@testable import DICOMwebDatastore

@Suite(.tags(.unit))
struct DicomWebSettingsTests {
    @Test func defaults_followUpstream() throws {
        let s = try DicomWebSettings(studies: "http://127.0.0.1:8042/dicom-web", environment: ["HOME": "/home/u"])
        #expect(s.searchFilter.map { "\($0.0)=\($0.1)" } == ["Modality=CT"])
        #expect(s.cacheExpiry == 7200)
        // md5("http://127.0.0.1:8042/dicom-web"), as upstream names the folder.
        #expect(s.cacheDirectory.path == "/home/u/.cache/monailabel/dicom/488fca1f7f3f98331f6f7756beca0d35")
        #expect(s.username == nil)
        #expect(s.verifyTLS)
        #expect(s.qidoPageSize == 1000)
        #expect(!s.fetchByFrame)
        #expect(s.labelExpiry == 30)
        let short = try DicomWebSettings(studies: "http://h/dw", environment: ["MONAI_LABEL_DICOMWEB_CACHE_EXPIRY": "10"])
        #expect(short.labelExpiry == 10)
    }

    @Test func pagingAndFetchByFrame_fromEnvironment_andRangeChecked() throws {
        let s = try DicomWebSettings(studies: "http://h/dw", environment: [
            "MONAI_LABEL_DICOMWEB_QIDO_PAGE_SIZE": "50", "MONAI_LABEL_DICOMWEB_FETCH_BY_FRAME": "True",
        ])
        #expect(s.qidoPageSize == 50 && s.fetchByFrame)
        for bad in ["0", "2.5", "1000000", "many"] {
            #expect(throws: MONAILabelError.self) {
                try DicomWebSettings(studies: "http://h/dw", environment: ["MONAI_LABEL_DICOMWEB_QIDO_PAGE_SIZE": bad])
            }
        }
        #expect(throws: MONAILabelError.self) {
            try DicomWebSettings(studies: "http://h/dw", environment: ["MONAI_LABEL_DICOMWEB_FETCH_BY_FRAME": "sometimes"])
        }
        #expect(s.ignored.isEmpty)
        let dicomOnly = try DicomWebSettings(studies: "http://h/dw", environment: ["MONAI_LABEL_DICOMWEB_CONVERT_TO_NIFTI": "false"])
        #expect(dicomOnly.ignored.count == 1 && dicomOnly.ignored[0].contains("CONVERT_TO_NIFTI=false is not supported"))
    }

    @Test func environment_overridesFilterCacheAuthAndTimeouts() throws {
        let s = try DicomWebSettings(studies: "https://pacs.example/dicom-web", environment: [
            "MONAI_LABEL_DICOMWEB_SEARCH_FILTER": #"{"Modality": "MR", "StudyDate": "20240101"}"#,
            "MONAI_LABEL_DICOMWEB_CACHE_PATH": "/tmp/c", "MONAI_LABEL_DICOMWEB_CACHE_EXPIRY": "60",
            "MONAI_LABEL_DICOMWEB_USERNAME": "orthanc", "MONAI_LABEL_DICOMWEB_PASSWORD": "secret",
            "MONAI_LABEL_DICOMWEB_RETRIES": "1", "MONAI_LABEL_DICOMWEB_READ_TIMEOUT": "9",
            "MONAI_LABEL_DICOMWEB_VERIFY_TLS": "false",
        ])
        #expect(s.searchFilter.map { "\($0.0)=\($0.1)" } == ["Modality=MR", "StudyDate=20240101"])
        #expect(s.cacheDirectory.deletingLastPathComponent().path == "/tmp/c")
        #expect(s.cacheExpiry == 60)
        #expect(s.username == "orthanc" && s.password == "secret")
        #expect(s.attempts == 1 && s.readTimeout == 9 && !s.verifyTLS)
    }

    @Test func badSettings_areRefusedWithTheirName() {
        #expect(throws: MONAILabelError.self) {
            try DicomWebSettings(studies: "http://h/dw", environment: ["MONAI_LABEL_DICOMWEB_SEARCH_FILTER": "Modality=CT"])
        }
        #expect(throws: MONAILabelError.self) {
            try DicomWebSettings(studies: "http://h/dw", environment: ["MONAI_LABEL_DICOMWEB_CACHE_EXPIRY": "soon"])
        }
        #expect(throws: MONAILabelError.self) { try DicomWebSettings(studies: "http://", environment: [:]) }
        #expect(DicomWebSettings.isDicomWeb("HTTPS://pacs/dicom-web"))
        #expect(!DicomWebSettings.isDicomWeb("/data/studies"))
    }
}

@Suite(.tags(.unit))
struct DicomWebSegmentNamingTests {
    private func store() throws -> (DicomWebDatastore, TempDir) {
        let tmp = TempDir()
        let s = try DicomWebSettings(studies: "http://127.0.0.1:1/dicom-web", environment: [
            "MONAI_LABEL_DICOMWEB_CACHE_PATH": tmp.url.path, "MONAI_LABEL_DICOMWEB_LISTING_WAIT": "30", "MONAI_LABEL_DICOMWEB_RETRIES": "1",
        ])
        return (try DicomWebDatastore(settings: s), tmp)
    }

    private func label(_ values: [UInt8]) -> Volume {
        Volume(spatialShape: [values.count, 1, 1], data: .uint8(values), affine: .identity)
    }

    @Test func labelInfo_byIdx_thenAppNames_thenDefault() throws {
        let (ds, _) = try store()
        ds.setSegmentNames([2: "liver"])
        let info: [JSONValue] = [["name": "spleen", "idx": 1, "color": [0, 255, 0]]]
        let segs = ds.segmentsFor(label([0, 1, 2, 5, 1]), labelInfo: info)
        #expect(segs.map(\.value) == [1, 2, 5])
        #expect(segs.map(\.name) == ["spleen", "liver", "Segment_5"])
        #expect(segs[0].color == [0, 255, 0])
    }

    @Test func labelInfo_withoutIndices_isPositional() throws {
        let (ds, _) = try store()
        let segs = ds.segmentsFor(label([3, 0, 7]), labelInfo: [["name": "a"], ["name": "b"]])
        #expect(segs.map(\.name) == ["a", "b"])
    }

    @Test func unreachablePACS_listsFromCache_andStatusSaysWhy() throws {
        let (ds, _) = try store()
        #expect(ds.listImages().isEmpty)
        let st = ds.status()
        #expect(st.total == 0)
        #expect(st.error?.contains("PACS unreachable at http://127.0.0.1:1/dicom-web") == true)
        #expect(throws: MONAILabelError(.notEnabled, "images of a DICOMweb datastore come from the PACS: store the series there (STOW-RS)")) {
            try ds.addImage(id: "1.2", file: URL(fileURLWithPath: "/dev/null"), fileName: "x.nii.gz", info: JSONObject())
        }
        do {
            _ = try ds.fetchImage("1.2.3")
            Issue.record("expected an error")
        } catch let e as MONAILabelError {
            #expect(e.kind == .unavailable)
        }
        do {
            _ = try ds.fetchImage("../../etc/passwd")
            Issue.record("expected an error")
        } catch let e as MONAILabelError {
            #expect(e.kind == .notFound)
        }
    }
}

@Suite(.tags(.unit))
struct FrameFetchTests {
    static func metadata(rows: Int, cols: Int, bits: Int, frames: String? = nil) throws -> DicomJSONDataset {
        var json = """
            {"00080016": {"vr": "UI", "Value": ["1.2.840.10008.5.1.4.1.1.2"]}, "00080018": {"vr": "UI", "Value": ["1.2.3.4"]},
             "00280010": {"vr": "US", "Value": [\(rows)]}, "00280011": {"vr": "US", "Value": [\(cols)]},
             "00280100": {"vr": "US", "Value": [\(bits)]}, "00280030": {"vr": "DS", "Value": [0.30000000000000004, 0.5]},
             "00091001": {"vr": "LO", "Value": ["private"]}, "00081115": {"vr": "SQ", "Value": [{"0020000E": {"vr": "UI", "Value": ["9.8"]}}]}
            """
        if let frames { json += #", "00280008": {"vr": "IS", "Value": [\#(frames)]}"# }
        return try DicomJSONDataset.parseArray(Array((json + "}").utf8))[0]
    }

    @Test func instance_fromMetadataAndFrames_keepsValuesSequencesAndPixels() throws {
        let m = try Self.metadata(rows: 2, cols: 3, bits: 16)
        let ds = try FrameFetch.instance(metadata: m, frames: [[1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 255, 255]])
        #expect(try ds.string("SOPInstanceUID") == "1.2.3.4")
        #expect(try ds.numbers("PixelSpacing") == [0.3, 0.5])
        #expect(try ds.string("ReferencedSeriesSequence[0].SeriesInstanceUID") == "9.8")
        #expect(try ds.string("(0009,1001)") == nil)
    }

    @Test func instance_framesShorterThanTheirGeometry_isRefused() throws {
        let m = try Self.metadata(rows: 4, cols: 4, bits: 16)
        #expect(throws: DicomError.self) { try FrameFetch.instance(metadata: m, frames: [[0, 0, 0]]) }
        let wide = try Self.metadata(rows: 4, cols: 4, bits: 32)
        #expect(throws: DicomError.self) { try FrameFetch.instance(metadata: wide, frames: [[UInt8](repeating: 0, count: 64)]) }
    }

    @Test func frameNumbers_outOfRange_areRefused() throws {
        #expect(try FrameFetch.frameNumbers(Self.metadata(rows: 1, cols: 1, bits: 8)) == [1])
        #expect(try FrameFetch.frameNumbers(Self.metadata(rows: 1, cols: 1, bits: 8, frames: "3")) == [1, 2, 3])
        for bad in ["0", "-2", "99999999999"] {
            #expect(throws: DicomError.self) { try FrameFetch.frameNumbers(Self.metadata(rows: 1, cols: 1, bits: 8, frames: bad)) }
        }
    }

    @Test func format_dsFitsSixteenCharacters_integersHaveNoFraction() {
        #expect(FrameFetch.format(0.30000000000000004, vr: "DS") == "0.3")
        #expect(FrameFetch.format(-100.123456789012345, vr: "DS").count <= 16)
        #expect(FrameFetch.format(512, vr: "US") == "512")
        #expect(FrameFetch.format(.nan, vr: "DS") == "")
    }
}

/// `/info/` and `/datastore/` read the datastore's status and lists on every call: after the lists expire they
/// must still answer at once, from the last lists, while a refresh runs in the background.
@Suite(.tags(.live))
struct DicomWebListingFreshnessTests {
    final class SlowPACS: @unchecked Sendable {
        private let lock = NSLock()
        private var delay = 0.0
        private var searches = 0
        let server: HTTPServer
        let port: Int

        /// `withVanishedSEG`: the SEG search also finds a SEG whose metadata is gone (404), as when it is deleted
        /// between the search and the metadata request.
        init(withVanishedSEG: Bool = false) throws {
            var router = HTTPRouter()
            var config = HTTPServerConfiguration(host: "127.0.0.1", port: 0)
            config.workerCount = 2
            let box = Box()
            router.get("/dicom-web/series") { req in
                let pacs = box.pacs!
                let wait = pacs.lock.withLock { () -> Double in
                    pacs.searches += 1
                    return pacs.delay
                }
                Thread.sleep(forTimeInterval: wait)
                let modality = req.queryValue("Modality") ?? ""
                let seg = #"[{"0020000E": {"vr": "UI", "Value": ["1.2.9"]}, "0020000D": {"vr": "UI", "Value": ["1.2"]}}]"#
                let body = modality == "CT" ? #"[{"0020000E": {"vr": "UI", "Value": ["1.2.3"]}, "0020000D": {"vr": "UI", "Value": ["1.2"]}}]"#
                    : withVanishedSEG ? seg : "[]"
                return .bytes(Array(body.utf8), contentType: "application/dicom+json")
            }
            server = HTTPServer(configuration: config, router: router)
            try server.start()
            port = try #require(server.port)
            box.pacs = self
        }

        final class Box: @unchecked Sendable { var pacs: SlowPACS? }

        func setDelay(_ d: Double) { lock.withLock { delay = d } }
        var searchCount: Int { lock.withLock { searches } }

        deinit {
            server.shutdown(gracePeriod: 0)
            server.wait()
        }
    }

    @Test func segDeletedBetweenSearchAndMetadata_isSkipped_listingSucceeds() throws {
        let pacs = try SlowPACS(withVanishedSEG: true)
        let tmp = TempDir()
        let settings = try DicomWebSettings(studies: "http://127.0.0.1:\(pacs.port)/dicom-web", environment: [
            "MONAI_LABEL_DICOMWEB_CACHE_PATH": tmp.url.path, "MONAI_LABEL_DICOMWEB_LISTING_WAIT": "30", "MONAI_LABEL_DICOMWEB_RETRIES": "1",
        ])
        let ds = try DicomWebDatastore(settings: settings)
        let status = ds.status()
        #expect(status.error == nil)
        #expect(status.total == 1 && status.completed == 0)
    }

    @Test(.timeLimit(.minutes(13)))
    func expiredLists_answeredAtOnce_andRefreshedInTheBackground() throws {
        let pacs = try SlowPACS()
        let tmp = TempDir()
        let settings = try DicomWebSettings(studies: "http://127.0.0.1:\(pacs.port)/dicom-web", environment: [
            "MONAI_LABEL_DICOMWEB_CACHE_PATH": tmp.url.path, "MONAI_LABEL_DICOMWEB_LISTING_WAIT": "30", "MONAI_LABEL_DICOMWEB_LABEL_EXPIRY": "0.2",
            "MONAI_LABEL_DICOMWEB_RETRIES": "1",
        ])
        let ds = try DicomWebDatastore(settings: settings)
        #expect(ds.listImages() == ["1.2.3"])
        let before = pacs.searchCount
        pacs.setDelay(2)
        Thread.sleep(forTimeInterval: 0.3)
        let started = Date()
        #expect(ds.status().total == 1)
        #expect(ds.listImages() == ["1.2.3"])
        // Far less than the PACS's 2 s: nothing waited for it (a generous bound for a loaded machine).
        #expect(Date().timeIntervalSince(started) < 1.5)
        // The refresh did ask the PACS (once, however many listings came meanwhile).
        let deadline = Date().addingTimeInterval(10)
        while pacs.searchCount == before && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        #expect(pacs.searchCount == before + 1)
    }
}

extension FrameFetchTests {
    @Test func instance_attributeDCMTKRefuses_isLeftOut_restIsKept() throws {
        let json = """
            [{"00080018": {"vr": "UI", "Value": ["1.2.3.4"]}, "00280010": {"vr": "US", "Value": [1]},
              "00280011": {"vr": "US", "Value": [1]}, "00280100": {"vr": "US", "Value": [8]},
              "00280030": {"vr": "DS", "Value": ["not a number"]}, "00211234": {"vr": "LO", "Value": ["odd group"]},
              "00280006": {"vr": "US", "Value": ["many"]}, "00200013": {"vr": "IS", "Value": [7]}}]
            """
        let m = try DicomJSONDataset.parseArray(Array(json.utf8))[0]
        let ds = try FrameFetch.instance(metadata: m, frames: [[42]])
        #expect(try ds.string("InstanceNumber") == "7")
        #expect(try ds.string("SOPInstanceUID") == "1.2.3.4")
        #expect(try ds.string("PlanarConfiguration") == nil)
    }
}
