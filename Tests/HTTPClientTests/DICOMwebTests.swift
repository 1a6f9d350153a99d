import Foundation
import HTTPServer
import Testing
@testable import DICOMweb

@Suite(.tags(.unit))
struct MultipartRelatedTests {
    @Test func build_thenParse_roundTripsBinaryParts() throws {
        let a: [UInt8] = Array(repeating: 0, count: 128) + Array("DICM".utf8) + [13, 10, 45, 45, 0, 255]
        let b: [UInt8] = [1, 2, 3]
        let (ct, body) = MultipartRelated.build(dicomInstances: [a, b])
        #expect(MultipartRelated.parameter("type", in: ct) == "application/dicom")
        let boundary = try #require(MultipartRelated.parameter("boundary", in: ct))
        let parts = try MultipartRelated.parse(body, boundary: boundary)
        #expect(parts.map(\.body) == [a, b])
        #expect(parts[0].contentType == "application/dicom")
    }

    @Test func parse_toleratesPreambleLFLinesAndMissingCloseDelimiter() throws {
        let text = "preamble\n--b1\nContent-Type: application/dicom\n\nAAA\n--b1  \r\nContent-Type: application/dicom\r\n\r\nBB"
        let parts = try MultipartRelated.parse(Array(text.utf8), boundary: "b1")
        #expect(parts.map { String(decoding: $0.body, as: UTF8.self) } == ["AAA", "BB"])
    }

    @Test func parse_boundaryInsideContent_notAtLineStart_isData() throws {
        let text = "--b\r\n\r\nx--b y\r\n--b--\r\n"
        let parts = try MultipartRelated.parse(Array(text.utf8), boundary: "b")
        #expect(parts.count == 1)
        #expect(String(decoding: parts[0].body, as: UTF8.self) == "x--b y")
    }

    @Test func parse_withoutBoundary_isMalformed() {
        #expect(throws: DICOMwebError.self) { try MultipartRelated.parse(Array("no parts".utf8), boundary: "zz") }
    }

    @Test func parameter_quotedValueWithSemicolon() {
        let v = "multipart/related; type=\"application/dicom; x\"; boundary=\"abc def\""
        #expect(MultipartRelated.parameter("boundary", in: v) == "abc def")
        #expect(MultipartRelated.parameter("type", in: v) == "application/dicom; x")
    }
}

@Suite(.tags(.unit))
struct DicomJSONTests {
    @Test func parseArray_readsStringsNumbersPersonNamesAndSequences() throws {
        let json = """
            [{"0020000E": {"vr": "UI", "Value": ["1.2.3"]}, "00201209": {"vr": "IS", "Value": [42]},
              "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Doe^John"}]},
              "00081115": {"vr": "SQ", "Value": [{"0020000E": {"vr": "UI", "Value": ["9.8"]}}]},
              "00080020": {"vr": "DA"}}]
            """
        let ds = try DicomJSONDataset.parseArray(Array(json.utf8))
        #expect(ds.count == 1)
        #expect(ds[0].string(DicomTag.seriesInstanceUID) == "1.2.3")
        #expect(ds[0].string("00201209") == "42")
        #expect(ds[0].string("00100010") == "Doe^John")
        #expect(ds[0].sequence(DicomTag.referencedSeriesSequence).first?.string(DicomTag.seriesInstanceUID) == "9.8")
        #expect(ds[0].string(DicomTag.studyDate) == nil)
    }

    @Test func parseArray_emptyBody_isNoMatches() throws {
        #expect(try DicomJSONDataset.parseArray([]).isEmpty)
    }

    @Test func stowResult_seriesUIDFromInstanceURL() {
        let r = StowResult(retrieveURL: "http://h/dicom-web/studies/1.2", instanceURLs: ["http://h/dicom-web/studies/1.2/series/3.4/instances/5.6"],
                           storedSOPInstanceUIDs: ["5.6"])
        #expect(r.seriesInstanceUID == "3.4")
    }

    @Test func uidPathComponent_refusesPathTricks() throws {
        #expect(throws: DICOMwebError.self) { try DICOMwebClient.uidPathComponent("../../etc") }
        #expect(throws: DICOMwebError.self) { try DICOMwebClient.uidPathComponent("") }
        #expect(try DICOMwebClient.uidPathComponent("1.2.840.1") == "1.2.840.1")
    }
}

/// A scripted PACS on our own HTTPServer.
final class Attempts: @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0
    func next() -> Int {
        lock.lock()
        defer { lock.unlock() }
        n += 1
        return n
    }
}

@Suite(.tags(.live))
struct DICOMwebClientTests {
    private func client(_ port: Int, attempts: Int = 3) -> DICOMwebClient {
        DICOMwebClient(DICOMwebConfiguration(baseURL: URL(string: "http://127.0.0.1:\(port)/dicom-web/")!,
                                             username: "user", password: "pw", maxAttempts: attempts, initialBackoff: 0.01))
    }

    @Test func search_retriesOn503_thenSucceeds_withQueryAndAuth() throws {
        let attempts = Attempts()
        let s = try TestServer { r in
            r.get("/dicom-web/series") { req in
                if attempts.next() < 3 { return .text("busy", status: .serviceUnavailable) }
                let q = req.query.map { "\($0.name)=\($0.value)" }.joined(separator: "&")
                let auth = req.headers["Authorization"] ?? ""
                return .bytes(Array("[{\"0020000E\": {\"vr\": \"UI\", \"Value\": [\"\(q)|\(auth)\"]}}]".utf8), contentType: "application/dicom+json")
            }
        }
        let c = client(s.port)
        let found = try c.searchSeries(filters: [("Modality", "CT")], includeFields: ["00100020"])
        #expect(found.first?.string(DicomTag.seriesInstanceUID) == "Modality=CT&includefield=00100020&limit=1000&offset=0|Basic dXNlcjpwdw==")
        #expect(c.requestCount == 3)
    }

    @Test func search_persistent5xx_isUnavailable_afterBoundedAttempts() throws {
        let s = try TestServer { r in r.get("/dicom-web/series") { _ in .text("down", status: HTTPStatus(502)) } }
        let c = client(s.port, attempts: 2)
        do {
            _ = try c.searchSeries()
            Issue.record("expected an error")
        } catch let e as DICOMwebError {
            #expect(e.kind == .unavailable)
            #expect(c.requestCount == 2)
        }
    }

    @Test func refusedPACS_isUnavailable_withClearMessage() throws {
        let port = try closedPort()
        let c = client(port, attempts: 2)
        do {
            _ = try c.searchSeries()
            Issue.record("expected an error")
        } catch let e as DICOMwebError {
            #expect(e.kind == .unavailable)
            #expect(e.message.contains("PACS unreachable"))
            #expect(e.message.contains("refused"))
        }
    }

    @Test func missingSeries_isNotFound_andNotRetried() throws {
        let s = try TestServer { _ in }
        let c = client(s.port)
        do {
            _ = try c.seriesMetadata(study: "1.2", series: "3.4")
            Issue.record("expected an error")
        } catch let e as DICOMwebError {
            #expect(e.kind == .notFound)
            #expect(c.requestCount == 1)
        }
    }

    @Test func retrieve_fallsBackWhenTranscodingRefused_andSplitsParts() throws {
        let s = try TestServer { r in
            r.get("/dicom-web/studies/{study}/series/{series}") { req in
                if (req.headers["Accept"] ?? "").contains("transfer-syntax") { return .text("no", status: .notAcceptable) }
                let (ct, body) = MultipartRelated.build(dicomInstances: [[1, 2], [3]])
                return .bytes(body, contentType: ct)
            }
        }
        let got = try client(s.port).retrieveSeries(study: "1.2", series: "3.4")
        #expect(got == [[1, 2], [3]])
    }

    @Test func store_reportsFailedInstancesAsRejected() throws {
        let s = try TestServer { r in
            r.post("/dicom-web/studies") { req in
                #expect(req.headers["Content-Type"]?.hasPrefix("multipart/related; type=\"application/dicom\"") == true)
                let json = "{\"00081198\": {\"vr\": \"SQ\", \"Value\": [{\"00081155\": {\"vr\": \"UI\", \"Value\": [\"1.9\"]}, \"00081197\": {\"vr\": \"US\", \"Value\": [272]}}]}}"
                return .bytes(Array(json.utf8), contentType: "application/dicom+json")
            }
        }
        do {
            _ = try client(s.port).store(instances: [[0]])
            Issue.record("expected an error")
        } catch let e as DICOMwebError {
            #expect(e.kind == .rejected)
            #expect(e.message.contains("1.9"))
            #expect(e.message.contains("272"))
        }
    }
}

/// QIDO-RS listings longer than one answer: `limit`/`offset` paging, the server's truncation warning, and servers
/// that ignore paging.
@Suite(.tags(.live))
struct DICOMwebPagingTests {
    static let uids = (1...7).map { "1.2.\($0)" }

    /// A PACS holding `uids` that answers at most `serverMax` per request (with the PS3.18 warning when it cut the
    /// answer short), honouring `limit` and `offset` unless `ignoresPaging`.
    static func pacs(serverMax: Int, ignoresPaging: Bool = false, requests: Attempts) throws -> TestServer {
        try TestServer { r in
            r.get("/dicom-web/series") { req in
                _ = requests.next()
                let offset = ignoresPaging ? 0 : Int(req.queryValue("offset") ?? "0") ?? 0
                let limit = ignoresPaging ? Int.max : Int(req.queryValue("limit") ?? "") ?? Int.max
                let rest = Array(uids.dropFirst(offset))
                let page = Array(rest.prefix(min(limit, serverMax)))
                let json = "[" + page.map { "{\"0020000E\": {\"vr\": \"UI\", \"Value\": [\"\($0)\"]}}" }.joined(separator: ",") + "]"
                var response = HTTPResponse.bytes(Array(json.utf8), contentType: "application/dicom+json")
                if rest.count > page.count && page.count < limit {
                    response.headers.add("Warning", #"299 pacs: "The number of results exceeded the maximum supported by the server. Additional results can be requested.""#)
                }
                return response
            }
        }
    }

    static func client(_ port: Int, pageSize: Int) -> DICOMwebClient {
        var c = DICOMwebConfiguration(baseURL: URL(string: "http://127.0.0.1:\(port)/dicom-web")!, maxAttempts: 1)
        c.pageSize = pageSize
        return DICOMwebClient(c)
    }

    @Test func search_pagesWithLimitAndOffset_untilAShortPage() throws {
        let requests = Attempts()
        let s = try Self.pacs(serverMax: 100, requests: requests)
        let found = try Self.client(s.port, pageSize: 3).searchSeries()
        #expect(found.compactMap { $0.string(DicomTag.seriesInstanceUID) } == Self.uids)
        #expect(requests.next() == 4)  // pages of 3, 3, 1
    }

    @Test func search_serverCapBelowOurPage_followsItsWarning() throws {
        let requests = Attempts()
        let s = try Self.pacs(serverMax: 2, requests: requests)
        let found = try Self.client(s.port, pageSize: 1000).searchSeries()
        #expect(found.compactMap { $0.string(DicomTag.seriesInstanceUID) } == Self.uids)
        #expect(requests.next() == 5)  // 2, 2, 2, 1 (no warning on the last)
    }

    @Test func search_serverIgnoringOffset_stopsWithoutDuplicates() throws {
        let requests = Attempts()
        let s = try Self.pacs(serverMax: 100, ignoresPaging: true, requests: requests)
        let found = try Self.client(s.port, pageSize: 3).searchSeries()
        #expect(found.compactMap { $0.string(DicomTag.seriesInstanceUID) } == Self.uids)
        #expect(requests.next() == 3)  // everything, then the same again: nothing new ends it
    }

    @Test func truncationWarning_recognisedByItsStandardText() {
        #expect(DICOMwebClient.isTruncationWarning(#"299 {host}: "The number of results exceeded the maximum supported by the server. Additional results can be requested.""#))
        #expect(!DICOMwebClient.isTruncationWarning(#"299 {host}: "The fuzzymatching parameter is not supported.""#))
    }
}
