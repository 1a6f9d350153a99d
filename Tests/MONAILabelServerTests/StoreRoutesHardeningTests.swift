import Foundation
import HTTPServer
import Imaging
import Testing
import TestSupport
import MONAILabel
@testable import MONAILabelServer

// Issue 14 through the router: the 422s of the hardened datastore and sessions, symlinks that leave the
// studies folder, and error details without server paths.

/// `{"a": {"a": ... 1}}` as JSON text, `depth` objects deep.
private func nestedJSON(_ depth: Int) -> String {
    String(repeating: #"{"a":"#, count: depth) + "1" + String(repeating: "}", count: depth)
}

/// A router over an app whose datastore reads uploads through (as `start_server` builds it) and whose sessions
/// hold at most `sessionMaxBytes`.
private final class ValidatingClient {
    let tmp = TempDir()
    let app: MONAILabelApp
    let router: HTTPRouter

    init(sessionMaxBytes: Int = 4 << 20) throws {
        let appDir = tmp.url.appendingPathComponent("app")
        try FileManager.default.createDirectory(at: appDir, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: repoRoot.appendingPathComponent("sample-apps/radiology/app.json"),
                                         to: appDir.appendingPathComponent("app.json"))
        let studies = tmp.url.appendingPathComponent("studies")
        try FileManager.default.createDirectory(at: studies, withIntermediateDirectories: true)
        var settings = Settings(appDir: appDir, studies: studies.path, conf: ["models": "segmentation_spleen"])
        settings.sessionPath = tmp.url.appendingPathComponent("sessions").path
        settings.sessionMaxBytes = sessionMaxBytes
        let ds = try LocalDatastore(root: studies, validator: ImageValidation.validator)
        app = try MONAILabelApp(settings: settings, datastore: ds)
        router = makeRouter(app: app, log: .silent)
    }

    func sendForm(_ method: HTTPMethod, _ target: String, fields: [(String, String)] = [],
                  files: [(field: String, filename: String, bytes: [UInt8])] = []) throws -> (status: Int, detail: String) {
        let m = TestClient.multipart(fields: fields, files: files)
        let req = try HTTPRequest(method: method, target: target, headers: HTTPHeaders(m.headers + [("Host", "test")]),
                                  body: .bytes(m.body))
        defer { req.context.cleanUp() }
        let resp = router.respond(to: req)
        let body = try bodyBytes(resp)
        return (resp.status.code, (try? JSONValue.parse(body))?["detail"]?.stringValue ?? String(decoding: body, as: UTF8.self))
    }
}

/// The bytes of a small real `.nii.gz` volume.
private func niftiGz() throws -> [UInt8] {
    let tmp = TempDir()
    let url = tmp.url.appendingPathComponent("v.nii.gz")
    let data = (0..<(16 * 16 * 16)).map { Float($0 % 31) }
    try ImageIO.write(Volume(spatialShape: [16, 16, 16], data: .float32(data), affine: .identity), to: url)
    return Array(try Data(contentsOf: url))
}

@Test(.tags(.router)) func putImage_paramsNestedPastTheLimit_returns422NamingParams() throws {
    let c = try TestClient()
    for depth in [510, 600] {
        let r = try c.sendForm(.put, "/datastore/image?image=deep", fields: [("params", nestedJSON(depth))],
                               files: [("file", "deep.nii.gz", [1])])
        #expect(r.status == 422, "\(depth): \(r.text)")
        #expect(r.json?["detail"]?.stringValue?.contains("params") == true, "\(r.text)")
    }
    let ok = try c.sendForm(.put, "/datastore/image?image=ok", fields: [("params", nestedJSON(InfoLimits.maxDepth))],
                            files: [("file", "ok.nii.gz", [1])])
    #expect(ok.status == 200, "\(ok.text)")
    #expect(c.app.datastore.listImages().contains("ok") && !c.app.datastore.listImages().contains("deep"))
}

@Test(.tags(.router)) func putInfo_nestedPastTheLimit_returns422NamingTheField() throws {
    let c = try TestClient()
    let image = try c.sendForm(.put, "/datastore/image/info?image=spleen_00", fields: [("info", nestedJSON(100))])
    #expect(image.status == 422)
    #expect(image.json?["detail"]?.stringValue?.contains("'info'") == true, "\(image.text)")
    let label = try c.sendForm(.put, "/datastore/updatelabelinfo?label=spleen_00&tag=final",
                               fields: [("params", nestedJSON(100))])
    #expect(label.status == 422)
    #expect(label.json?["detail"]?.stringValue?.contains("'params'") == true, "\(label.text)")
    let big = try c.sendForm(.put, "/datastore/image/info?image=spleen_00",
                             fields: [("info", #"{"x":""# + String(repeating: "y", count: InfoLimits.maxBytes) + #""}"#)])
    #expect(big.status == 422, "\(big.text.prefix(200))")
}

@Test(.tags(.router)) func putImage_idTooLongForTheFileSystem_returns422WithoutServerPath() throws {
    let c = try TestClient()
    let id = String(repeating: "a", count: 255)
    let r = try c.sendForm(.put, "/datastore/image?image=\(id)", files: [("file", "x.nii.gz", [1])])
    #expect(r.status == 422, "\(r.text)")
    #expect(!r.text.contains(c.tmp.url.path))
    #expect(r.json?["detail"]?.stringValue?.contains("too long") == true, "\(r.text)")
}

@Test(.tags(.router)) func putImageAndLabel_truncatedNiftiGz_returns422_completeOneIsStored() throws {
    let c = try ValidatingClient()
    let good = try niftiGz()
    let cut = Array(good.prefix(good.count * 2 / 3))
    let bad = try c.sendForm(.put, "/datastore/image?image=cut", files: [("file", "cut.nii.gz", cut)])
    #expect(bad.status == 422, "\(bad.detail)")
    #expect(!bad.detail.contains("/"), "no server path: \(bad.detail)")
    #expect(c.app.datastore.listImages().isEmpty)
    let ok = try c.sendForm(.put, "/datastore/image?image=whole", files: [("file", "whole.nii.gz", good)])
    #expect(ok.status == 200, "\(ok.detail)")
    let badLabel = try c.sendForm(.put, "/datastore/label?image=whole&tag=final", files: [("label", "l.nii.gz", cut)])
    #expect(badLabel.status == 422, "\(badLabel.detail)")
    let okLabel = try c.sendForm(.put, "/datastore/label?image=whole&tag=final", files: [("label", "l.nii.gz", good)])
    #expect(okLabel.status == 200, "\(okLabel.detail)")
}

@Test(.tags(.router)) func putSession_archiveExpandingPastMaxBytes_returns422AndKeepsNothing() throws {
    let c = try ValidatingClient(sessionMaxBytes: 2 << 20)
    let src = TempDir()
    let zeros = src.url.appendingPathComponent("zeros.bin")
    try Data(count: 24 << 20).write(to: zeros)
    let archive = src.url.appendingPathComponent("bomb.tar.gz")
    let tar = try runProcess(URL(fileURLWithPath: "/usr/bin/tar"), ["-czf", archive.path, "-C", src.url.path, "zeros.bin"])
    try #require(tar.status == 0, "\(tar.output)")
    let r = try c.sendForm(.put, "/session/?uncompress=true",
                           files: [("files", "bomb.tar.gz", Array(try Data(contentsOf: archive)))])
    #expect(r.status == 422, "\(r.detail)")
    #expect(r.detail.contains("MONAI_LABEL_SESSION_MAX_BYTES"))
    #expect(FileOps.listDirectory(c.tmp.url.appendingPathComponent("sessions").path).isEmpty)
}

@Test(.tags(.router)) func putSession_fileNamedMetaInfo_returns422() throws {
    let c = try TestClient()
    let r = try c.sendForm(.put, "/session/", files: [("files", "meta.info", Array(#"{"name":"x"}"#.utf8))])
    #expect(r.status == 422)
    #expect(r.json?["detail"]?.stringValue?.contains("meta.info") == true, "\(r.text)")
}

@Test(.tags(.router)) func symlinksLeavingTheStudiesFolder_areNeitherListedServedNorZipped() throws {
    let c = try TestClient(labeled: 2)
    let outside = TempDir()
    let secret = outside.write("secret.nii.gz", Array("TOP-SECRET-BYTES".utf8))
    try FileManager.default.createSymbolicLink(atPath: c.studies.appendingPathComponent("evil.nii.gz").path,
                                               withDestinationPath: secret.path)
    let label = c.studies.appendingPathComponent("labels/final/spleen_01.nii.gz")
    try FileManager.default.removeItem(at: label)
    try FileManager.default.createSymbolicLink(atPath: label.path, withDestinationPath: secret.path)
    c.app.datastore.refresh()
    #expect(!c.app.datastore.listImages().contains("evil"))
    #expect(try c.get("/datastore/image?image=evil").status == 404)
    #expect(try c.get("/datastore/label?label=spleen_01&tag=final").status == 404)
    #expect(try c.send(.head, "/datastore/label?label=spleen_01&tag=final").status != 200)
    #expect(!(try c.get("/datastore/?output=all").text.contains("evil")))
    let zip = try c.get("/datastore/dataset")
    #expect(zip.status == 200)
    #expect(!String(decoding: zip.body, as: UTF8.self).contains("TOP-SECRET-BYTES"))
    #expect(String(decoding: zip.body, as: UTF8.self).contains("spleen_00"))
}

@Test(.tags(.router)) func errorDetail_namingAServerFile_showsItRelativeToItsRoot() throws {
    let c = try TestClient()
    let r = try c.get("/logs/?text=true")
    #expect(r.status == 404)
    let d = r.json?["detail"]?.stringValue ?? ""
    #expect(!d.contains(c.tmp.url.path), "\(d)")
    #expect(d.contains("app/logs/app.log"), "\(d)")
}

@Test(.tags(.router)) func wirePaths_replaceRegisteredRootsOnlyAtPathBoundaries() {
    WirePaths.register("/srv/wirepaths-test/studies", as: "studies")
    WirePaths.register("/srv/wirepaths-test", as: "app")
    #expect(WirePaths.scrub("cannot store /srv/wirepaths-test/studies/labels/a.nii.gz: EIO")
            == "cannot store studies/labels/a.nii.gz: EIO")
    #expect(WirePaths.scrub("see /srv/wirepaths-test/model.pt and /srv/wirepaths-test") == "see app/model.pt and app")
    #expect(WirePaths.scrub("/srv/wirepaths-test2/x") == "/srv/wirepaths-test2/x", "another folder that shares a prefix")
}
