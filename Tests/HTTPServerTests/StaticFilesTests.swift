import Foundation
import Testing
@testable import HTTPServer

@Suite(.tags(.unit)) struct StaticFilesTests {
    @Test func mediaType_followsPythonMimetypes() {
        #expect(MediaType.guess(filename: "a/b/ct.nii.gz") == "application/octet-stream")
        #expect(MediaType.guess(filename: "ct.nii") == "application/octet-stream")
        #expect(MediaType.guess(filename: "model.pt") == "application/octet-stream")
        #expect(MediaType.guess(filename: "seg.dcm") == "application/dicom")
        #expect(MediaType.guess(filename: "x.json") == "application/json")
        #expect(MediaType.guess(filename: "app.JS") == "text/javascript")
        #expect(MediaType.guess(filename: "dataset.zip") == "application/zip")
        #expect(MediaType.guess(filename: "noext") == "application/octet-stream")
    }

    @Test func staticFiles_servesIndexAndFiles_refusesEscapes() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/www/sub", withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: dir + "/www/index.html", contents: Data("<html>".utf8))
        _ = FileManager.default.createFile(atPath: dir + "/www/sub/app.css", contents: Data("a{}".utf8))
        _ = FileManager.default.createFile(atPath: dir + "/secret.txt", contents: Data("no".utf8))
        try FileManager.default.createSymbolicLink(atPath: dir + "/www/link", withDestinationPath: dir + "/secret.txt")
        let files = try StaticFiles(root: dir + "/www", html: true)
        let css = try files.response(for: "sub/app.css")
        #expect(css.headers["Content-Type"] == "text/css")
        guard case .file(let path, false) = try files.response(for: "").body else {
            Issue.record("expected index.html")
            return
        }
        #expect(path.hasSuffix("/www/index.html"))
        for bad in ["../secret.txt", "sub/../../secret.txt", "link", "missing.js"] {
            #expect(throws: HTTPError.self, "\(bad)") { _ = try files.response(for: bad) }
        }
        #expect(throws: HTTPError.self) { _ = try StaticFiles(root: dir + "/www", html: false).response(for: "sub") }
    }

    @Test func customErrorResponse_isUsed() throws {
        struct Validation: HTTPResponseError {
            var status: HTTPStatus { .unprocessableEntity }
            var detail: String { "invalid" }
            func response() -> HTTPResponse { .json(Array(#"{"detail":[{"type":"missing","loc":["query","image"]}]}"#.utf8), status: status) }
        }
        var router = HTTPRouter()
        router.get("/v") { _ in throw Validation() }
        let r = router.respond(to: try HTTPRequest(method: .get, target: "/v", headers: HTTPHeaders([("Host", "h")])))
        #expect(r.status.code == 422)
        guard case .bytes(let b) = r.body else {
            Issue.record("expected bytes")
            return
        }
        #expect(String(decoding: b, as: UTF8.self) == #"{"detail":[{"type":"missing","loc":["query","image"]}]}"#)
    }
}
