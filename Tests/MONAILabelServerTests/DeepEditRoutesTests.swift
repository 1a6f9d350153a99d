import Foundation
import HTTPServer
import Imaging
import Testing
import MONAILabel
@testable import MONAILabelServer

/// An app whose only model is a tiny DeepEdit (8-16-32 DynUNet, 16^3 input, labels a = 1, b = 2) on generated
/// two-blob volumes (20 x 18 x 16, LPS-stored), the first `labeled` with final labels.
enum DeepEditStudy {
    static let appJSON = """
        {"name": "MONAILabel - Radiology", "description": "test", "version": "0.8.5", "strategies": ["first"],
         "models": {"deepedit": {
           "type": "deepedit", "labels": {"a": 1, "b": 2, "background": 0}, "dimension": 3, "description": "tiny",
           "network": {"name": "DynUNet", "spatial_dims": 3, "in_channels": 4, "out_channels": 3,
                       "kernel_size": [3, 3, 3], "strides": [1, 2, 2], "upsample_kernel_size": [2, 2],
                       "filters": [8, 16, 32], "norm": "instance", "res_block": true},
           "pre": [{"name": "Orientationd", "axcodes": "RAS"},
                   {"name": "ScaleIntensityRanged", "a_min": -175, "a_max": 250, "b_min": 0.0, "b_max": 1.0, "clip": true}],
           "spatial_size": [16, 16, 16], "sigma": 2, "files": {"published": "deepedit.pt"},
           "train": {"description": "Train DeepEdit", "optimizer": "Adam", "lr": 0.003, "spatial_size": [16, 16, 16]}}}}
        """
    static let shape = [20, 18, 16]

    /// Writes the app and studies under `root`; returns the app folder, the studies folder, and the blob centres
    /// of each case (`case_NN`).
    static func write(to root: URL, count: Int, labeled: Int) throws -> (app: URL, studies: URL, centres: [[[Int]]]) {
        let app = root.appendingPathComponent("app"), studies = root.appendingPathComponent("studies")
        try FileManager.default.createDirectory(at: app, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: studies.appendingPathComponent("labels/final"), withIntermediateDirectories: true)
        try Data(appJSON.utf8).write(to: app.appendingPathComponent("app.json"))
        let affine = Affine([-2, 0, 0, 40, 0, -2, 0, 36, 0, 0, 2, -16, 0, 0, 0, 1])
        var centres: [[[Int]]] = []
        for index in 0..<count {
            var rng = SeededGenerator(seed: 2000 + UInt64(index))
            // Opposite ends of the first axis (8 or more voxels apart, so the blobs never touch), random elsewhere.
            func centre(_ x: Int) -> [Int] { [x] + shape.dropFirst().map { 4 + Int(rng.next() % UInt64($0 - 8)) } }
            var a = centre(4 + Int(rng.next() % 3)), b = centre(14 + Int(rng.next() % 2))
            if rng.uniform() < 0.5 { swap(&a, &b) }
            var image = [Float](), label = [UInt8]()
            for i in 0..<shape[0] { for j in 0..<shape[1] { for k in 0..<shape[2] {
                func inside(_ c: [Int]) -> Bool { [i - c[0], j - c[1], k - c[2]].map { $0 * $0 }.reduce(0, +) <= 12 }
                let v: (Double, UInt8) = inside(a) ? (200, 1) : inside(b) ? (60, 2) : (-100, 0)
                image.append(Float(v.0 + (rng.uniform() - 0.5) * 20))
                label.append(v.1)
            } } }
            let id = String(format: "case_%02d", index)
            try NIfTI.write(Volume(spatialShape: shape, data: .float32(image), affine: affine),
                            to: studies.appendingPathComponent("\(id).nii.gz"))
            if index < labeled {
                try NIfTI.write(Volume(spatialShape: shape, data: .uint8(label), affine: affine),
                                to: studies.appendingPathComponent("labels/final/\(id).nii.gz"))
            }
            centres.append([a, b])
        }
        return (app, studies, centres)
    }
}

@Test(.tags(.router)) func info_deepEdit_listedWithUpstreamTypeLabelsAndTrainer() throws {
    let c = try TestClient(conf: ["models": "deepedit"])
    let info = try #require(c.get("/info/").json)
    let m = try #require(info["models"]?["deepedit"])
    #expect(m["type"] == "deepedit")
    #expect(m["dimension"] == 3)
    #expect(m["labels"]?.objectValue?.keys == ["spleen", "right kidney", "left kidney", "liver", "stomach", "aorta",
                                                "inferior vena cava", "background"])
    #expect(m["labels"]?["liver"] == 6)
    #expect(m["weights"] == "untrained (random initialisation)")
    #expect(info["trainers"]?["deepedit"]?["config"]?["max_epochs"] == 50)
}

@Test(.tags(.router)) func inferDeepEdit_perLabelClickParams_answerMultipartLabelOnTheImageGrid() throws {
    let tmp = TempDir()
    let (appDir, studies, centres) = try DeepEditStudy.write(to: tmp.url, count: 2, labeled: 0)
    var settings = Settings(appDir: appDir, studies: studies.path, conf: ["models": "deepedit"])
    settings.sessions = false
    settings.inferWorkers = 0
    let app = try MONAILabelApp(settings: settings, datastore: try LocalDatastore(root: studies))
    let router = makeRouter(app: app, log: .silent)
    func infer(_ params: String) throws -> (status: Int, body: [UInt8], contentType: String) {
        let m = TestClient.multipart(fields: [("params", params)])
        let req = try HTTPRequest(method: .post, target: "/infer/deepedit?image=case_01",
                                  headers: HTTPHeaders([("Host", "test")] + m.headers), body: .bytes(m.body))
        defer { req.context.cleanUp() }
        let resp = router.respond(to: req)
        return (resp.status.code, try bodyBytes(resp), resp.headers["content-type"] ?? "")
    }
    let a = centres[1][0]
    let ok = try infer(#"{"a": [[\#(a[0]), \#(a[1]), \#(a[2])]], "b": [], "background": [], "label": "a", "result_extension": ".nrrd", "result_dtype": "uint8", "client_id": "user-xyz"}"#)
    #expect(ok.status == 200)
    #expect(ok.contentType.hasPrefix("multipart/form-data"))
    let text = String(decoding: ok.body, as: UTF8.self)
    #expect(text.contains(#""label_names": {"a": 1, "b": 2, "background": 0}"#))
    #expect(text.contains(#"filename="tmp"#) && text.contains(#".nrrd""#))
    #expect(text.contains("NRRD0004") || text.contains("NRRD0005"))
    #expect(text.contains("sizes: 20 18 16"))
    #expect(try infer(#"{"a": "here"}"#).status == 422)
    #expect(try infer(#"{"a": [[1, 2]]}"#).status == 422)
}

/// 3D Slicer's DeepEdit flow through the real Python client over sockets: train job to DONE, the multi-label
/// click call, and the no-click call.
@Test(.tags(.live), .needsClientVenv, .timeLimit(.minutes(14)))
func pythonClient_deepEditSlicerSequence_trainsAndSegments() throws {
    let tmp = TempDir()
    let (appDir, studies, centres) = try DeepEditStudy.write(to: tmp.url, count: 9, labeled: 8)
    let server = try startJobServer(appDir: appDir, studies: studies.path, conf: ["models": "deepedit"])
    defer { server.stop() }
    let caseFile = tmp.url.appendingPathComponent("case.json")
    let caseJSON: JSONValue = ["image": "case_08", "a": .array(centres[8][0].map { .int($0) }),
                               "b": .array(centres[8][1].map { .int($0) }), "shape": [20, 18, 16]]
    try Data(caseJSON.compactBytes()).write(to: caseFile)
    let (status, text) = try runE2EScript("deepedit_sequence.py", ["http://127.0.0.1:\(server.port)", tmp.url.path, caseFile.path])
    #expect(status == 0, "\(text)")
    #expect(text.contains("DEEPEDIT SEQUENCE OK"))
}
