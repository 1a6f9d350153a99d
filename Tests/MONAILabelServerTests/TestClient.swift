import Foundation
import HTTPServer
import MONAILabel
@testable import MONAILabelServer

/// An in-process client over the real router (no sockets), with a fresh app, studies folder and sessions.
final class TestClient {
    let tmp = TempDir()
    let app: MONAILabelApp
    let router: HTTPRouter
    var studies: URL { tmp.url.appendingPathComponent("studies") }

    init(ids: [String] = ["spleen_00", "spleen_01", "spleen_02"], labeled: Int = 1, conf: [String: String] = ["models": "segmentation_spleen"],
         sessions: Bool = true, workers: Int = 0) throws {
        let appDir = tmp.url.appendingPathComponent("app")
        try FileManager.default.createDirectory(at: appDir, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: repoRoot.appendingPathComponent("sample-apps/radiology/app.json"),
                                         to: appDir.appendingPathComponent("app.json"))
        for (n, id) in ids.enumerated() {
            _ = tmp.write("studies/\(id).nii.gz", [UInt8(n), 1, 2, 3])
            if n < labeled { _ = tmp.write("studies/labels/final/\(id).nii.gz", [9, UInt8(n)]) }
        }
        var settings = Settings(appDir: appDir, studies: tmp.url.appendingPathComponent("studies").path, conf: conf)
        settings.sessionPath = tmp.url.appendingPathComponent("sessions").path
        settings.sessions = sessions
        // Router tests run models in-process unless `workers` asks for model worker processes (the freshly
        // built `monailabel`); the live tests cover supervision.
        settings.inferWorkers = workers
        settings.taskRunner = monailabelBinary.path
        let ds = try LocalDatastore(root: tmp.url.appendingPathComponent("studies"))
        app = try MONAILabelApp(settings: settings, datastore: ds)
        router = makeRouter(app: app, log: .silent)
    }

    struct Reply {
        let status: Int
        let headers: HTTPHeaders
        let body: [UInt8]
        var json: JSONValue? { try? JSONValue.parse(body) }
        var text: String { String(decoding: body, as: UTF8.self) }
    }

    func send(_ method: HTTPMethod, _ target: String, headers: [(String, String)] = [], body: [UInt8] = []) throws -> Reply {
        let req = try HTTPRequest(method: method, target: target, headers: HTTPHeaders(headers + [("Host", "test")]),
                                  body: body.isEmpty ? .empty : .bytes(body))
        let resp = router.respond(to: req)
        defer { req.context.cleanUp() }
        return Reply(status: resp.status.code, headers: resp.headers, body: try bodyBytes(resp))
    }

    func get(_ t: String) throws -> Reply { try send(.get, t) }

    /// A multipart/form-data body the way MONAI Label's Python client writes it (its fixed boundary, full client
    /// paths as filenames).
    static func multipart(fields: [(String, String)] = [], files: [(field: String, filename: String, bytes: [UInt8])] = [])
        -> (headers: [(String, String)], body: [UInt8])
    {
        let boundary = "----------lImIt_of_THE_fIle_eW_$"
        var body: [UInt8] = []
        for (k, v) in fields {
            body += Array("--\(boundary)\r\nContent-Disposition: form-data; name=\"\(k)\"\r\n\r\n\(v)\r\n".utf8)
        }
        for f in files {
            body += Array("--\(boundary)\r\nContent-Disposition: form-data; name=\"\(f.field)\"; filename=\"\(f.filename)\"\r\nContent-Type: application/octet-stream\r\n\r\n".utf8)
            body += f.bytes + [13, 10]
        }
        body += Array("--\(boundary)--\r\n".utf8)
        return ([("Content-Type", "multipart/form-data; boundary=\(boundary)")], body)
    }

    func sendForm(_ method: HTTPMethod, _ target: String, fields: [(String, String)] = [],
                  files: [(field: String, filename: String, bytes: [UInt8])] = []) throws -> Reply {
        let m = Self.multipart(fields: fields, files: files)
        return try send(method, target, headers: m.headers, body: m.body)
    }
}
