import Foundation
import HTTPServer
import Testing
import TestSupport
import MONAILabel
import TorchCheckpoint
@testable import MONAILabelServer

/// DeepEdit on UNETR (`--conf network unetr`, MONAI's layout) through the API: the tiny DeepEdit study app with
/// a small UNETR (`network_unetr` in its app.json), trained by the freshly built `monailabel` child.
final class DeepEditUNETRHarness: RouterHarness {
    let tmp = TempDir()
    let app: MONAILabelApp
    let router: HTTPRouter
    let centres: [[[Int]]]
    var appDir: URL { tmp.url.appendingPathComponent("app") }

    init() throws {
        let (appDir, studies, centres) = try DeepEditStudy.write(to: tmp.url, count: 3, labeled: 2)
        self.centres = centres
        let url = appDir.appendingPathComponent("app.json")
        var def = try #require(try JSONValue.parse(Array(Data(contentsOf: url))).objectValue)
        guard case .object(var models) = def["models"], case .object(var deepedit) = models["deepedit"] else {
            throw MONAILabelError.invalid("DeepEditStudy's app.json has no deepedit model")
        }
        // UNETR's transformer at test size; upstream's radiology sizes (hidden 1536) are the default.
        deepedit["network_unetr"] = ["hidden_size": 48, "mlp_dim": 96, "num_heads": 4, "feature_size": 8]
        models["deepedit"] = .object(deepedit)
        def["models"] = .object(models)
        try Data(JSONValue.object(def).prettyBytes()).write(to: url)
        let settings = jobSettings(appDir: appDir, studies: studies, conf: ["models": "deepedit", "network": "unetr"])
        app = try MONAILabelApp(settings: settings, datastore: try LocalDatastore(root: studies))
        router = makeRouter(app: app, log: .silent)
    }

    deinit { app.training.jobs.shutdown() }

    /// `POST /infer/deepedit` with `params` (multipart, as the clients send them): status and body as text.
    func infer(_ image: String, _ params: String) throws -> (status: Int, text: String) {
        let m = TestClient.multipart(fields: [("params", params)])
        let req = try HTTPRequest(method: .post, target: "/infer/deepedit?image=\(image)",
                                  headers: HTTPHeaders([("Host", "test")] + m.headers), body: .bytes(m.body))
        defer { req.context.cleanUp() }
        let resp = router.respond(to: req)
        return (resp.status.code, String(decoding: try bodyBytes(resp), as: UTF8.self))
    }
}

@Test(.tags(.router), .timeLimit(.minutes(14)))
func deepEditOnUNETR_oneEpochOnTwoStudiesPublishes_thenClickInferenceUsesTheTrainedWeights() throws {
    let h = try DeepEditUNETRHarness()
    let info = try #require(try h.send(.get, "/info/").json)
    #expect(info["models"]?["deepedit"]?["weights"] == "untrained (random initialisation)")
    #expect(info["trainers"]?["deepedit"] != nil)
    let a = h.centres[2][0]
    let clicks = #"{"a": [[\#(a[0]), \#(a[1]), \#(a[2])]], "b": [], "background": [], "label": "a", "result_extension": ".nrrd", "result_dtype": "uint8"}"#
    let untrained = try h.infer("case_02", clicks)
    #expect(untrained.status == 200)
    #expect(untrained.text.contains("no trained weights"), "an untrained network's result without its warning")

    let r = try h.send(.post, "/train/deepedit?run_sync=true", json: #"{"max_epochs": 1, "val_split": 0.0, "name": "unetr"}"#)
    #expect(r.status == 200, "\(String(describing: r.json))")
    #expect(r.json?["total_epochs"] == 1)
    // Upstream's file name for the UNETR variant, in MONAI's UNETR layout.
    let published = h.appDir.appendingPathComponent("model/deepedit_unetr.pt")
    let names = Set(try Checkpoint.stateDict(from: published, key: "model").map(\.name))
    #expect(names.contains("vit.patch_embedding.patch_embeddings.weight"), "\(names.sorted().prefix(5))")
    #expect(names.contains("out.conv.conv.weight"))

    let clicked = try h.infer("case_02", clicks)
    #expect(clicked.status == 200)
    #expect(clicked.text.contains(#""label_names": {"a": 1, "b": 2, "background": 0}"#))
    #expect(clicked.text.contains("sizes: 20 18 16"))
    #expect(!clicked.text.contains("no trained weights"), "the inference ran an untrained network")
    let noClicks = try h.infer("case_02", #"{"result_extension": ".nrrd", "result_dtype": "uint8"}"#)
    #expect(noClicks.status == 200)
    #expect(try h.send(.get, "/info/").json?["models"]?["deepedit"]?["weights"] != "untrained (random initialisation)")
}
