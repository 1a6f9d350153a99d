import Foundation
import Testing
@testable import MONAILabel
@testable import MONAILabelCore

/// A radiology-like app in a temp folder with a store of `ids`, the first `labeled` of them with final labels.
func makeApp(_ tmp: TempDir, ids: [String] = ["a", "b", "c"], labeled: Int = 1, conf: [String: String] = ["models": "segmentation_spleen"],
             factory: InferTaskFactory? = nil) throws -> MONAILabelApp {
    let appDir = tmp.url.appendingPathComponent("app")
    try FileManager.default.createDirectory(at: appDir, withIntermediateDirectories: true)
    let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    try FileManager.default.copyItem(at: repo.appendingPathComponent("sample-apps/radiology/app.json"),
                                     to: appDir.appendingPathComponent("app.json"))
    let studies = tmp.url.appendingPathComponent("studies")
    for (n, id) in ids.enumerated() {
        _ = tmp.write("studies/\(id).nii.gz", [UInt8(n)])
        if n < labeled { _ = tmp.write("studies/labels/final/\(id).nii.gz", [1]) }
    }
    var settings = Settings(appDir: appDir, studies: studies.path, conf: conf)
    settings.sessionPath = tmp.url.appendingPathComponent("sessions").path
    // In-process models: this target has no `monailabel` binary to run model workers.
    settings.inferWorkers = 0
    let ds = try LocalDatastore(root: studies)
    return try MONAILabelApp(settings: settings, datastore: ds, factory: factory)
}

@Test(.tags(.unit)) func info_hasUpstreamKeysAndNoConfig() throws {
    let tmp = TempDir()
    let app = try makeApp(tmp)
    let info = app.info()
    // Upstream's keys, then `torch` (ours: the backend's libtorch and devices; clients ignore unknown keys).
    #expect(info.objectValue?.keys == ["name", "description", "version", "labels", "models", "trainers", "strategies",
                                       "scoring", "train_stats", "datastore", "torch"])
    #expect(info["name"] == .string("MONAILabel - Radiology (0.8.5)"))
    #expect(info["config"] == nil)
    #expect(info["strategies"]?.objectValue?.keys == ["random", "first", "last"])
    #expect(info["strategies"]?["first"]?["description"] == .string("Get First Sample"))
    // The empty labels/original folder counts nothing, as upstream's label_tags.
    #expect(info["datastore"] == ["total": 3, "completed": 1, "label_tags": ["final": 1]])
}

@Test(.tags(.unit)) func conf_modelsMissingOrUnknown_isAClearError() throws {
    let tmp = TempDir()
    #expect(throws: MONAILabelError.self) { try makeApp(tmp, conf: [:]) }
    let tmp2 = TempDir()
    #expect(throws: MONAILabelError.self) { try makeApp(tmp2, conf: ["models": "segmentation_spleen,nope"]) }
}

private struct FakeTask: InferTask {
    let name: String
    let type = "segmentation"
    let labels: JSONValue
    let dimension = 3
    let description = "d"
    let config: JSONObject = ["device": ["cpu"]]
    let modelPaths: [URL]
    func infer(_ request: InferRequest) throws -> InferResult { InferResult(file: nil, json: ["fake": true]) }
}

@Test(.tags(.unit)) func info_mergesLabelsInModelOrderSortedByIndex() throws {
    let tmp = TempDir()
    let app = try makeApp(tmp, conf: ["models": "all"]) { name, def, _ in
        FakeTask(name: name, labels: def["labels"] ?? .null, modelPaths: [])
    }
    let labels = app.info()["labels"]?.arrayValue?.compactMap(\.stringValue) ?? []
    // DeepGrow's seven names first (its list order), then segmentation's 25 by index without the four
    // names already listed (spleen, liver, stomach, aorta).
    #expect(labels.first == "spleen")
    // ... then deepedit's names not seen yet, sorted by value: only background (0).
    #expect(Array(labels.prefix(7)) == ["spleen", "right kidney", "left kidney", "liver", "stomach", "aorta",
                                        "inferior vena cava"])
    #expect(labels.count == 7 + 25 - 4 + 1)
    #expect(Array(labels.suffix(2)) == ["pulmonary_artery", "background"])
    // ISeg+GraphCut refines a segmentation model's output; these fake tasks are none, so it is not offered.
    #expect(app.info()["models"]?.objectValue?.keys
        == ["deepgrow_2d", "deepgrow_3d", "segmentation_spleen", "segmentation", "deepedit", "Histogram+GraphCut",
            "Scribbles+GeoS"])
}

@Test(.tags(.unit)) func nextSample_firstAndLast_pickUnlabeledAndRecordStrategy() throws {
    let tmp = TempDir()
    let app = try makeApp(tmp)
    let first = try app.nextSample(strategy: "first", request: ["client_id": "tester"])
    #expect(first["id"] == .string("b"))
    #expect(first["path"]?.stringValue?.hasSuffix("/studies/b.nii.gz") == true)
    #expect(first["name"] == .string("b.nii.gz"))
    #expect(first["strategy"]?["first"]?["client_id"] == .string("tester"))
    let last = try app.nextSample(strategy: "last", request: [:])
    #expect(last["id"] == .string("c"))
    #expect(app.datastore.imageInfo("c")?["strategy"]?["last"]?["client_id"] == .string("admin"))
}

@Test(.tags(.unit)) func nextSample_random_returnsChosenImagesWeight() throws {
    let tmp = TempDir()
    let app = try makeApp(tmp, ids: ["a", "b", "c", "d"], labeled: 0)
    let now = Int(Date().timeIntervalSince1970)
    for id in ["a", "b", "c"] {
        try app.datastore.updateImageInfo(id, info: ["strategy": ["random": ["ts": .int(now), "client_id": "x"]]])
    }
    // Three images were just served (weight ~0); the never-served one has weight ~now and must win.
    let r = try app.nextSample(strategy: "random", request: [:])
    #expect(r["id"] == .string("d"))
    #expect((r["weight"]?.intValue ?? 0) > now - 10)
}

@Test(.tags(.unit)) func nextSample_allLabeled_returnsEmpty_unknownStrategy_throwsNotFound() throws {
    let tmp = TempDir()
    let app = try makeApp(tmp, ids: ["a"], labeled: 1)
    #expect(try app.nextSample(strategy: "random", request: [:]).isEmpty)
    #expect(throws: MONAILabelError.self) { try app.nextSample(strategy: "nope", request: [:]) }
}

@Test(.tags(.unit)) func settings_maxVoxels_defaultsTo2To30AndRefusesNonPositive() throws {
    let dir = URL(fileURLWithPath: "/nonexistent")
    #expect(try Settings.fromEnvironment(appDir: dir, studies: "", conf: [:], environment: [:]).maxVoxels == 1 << 30)
    let set = try Settings.fromEnvironment(appDir: dir, studies: "", conf: [:], environment: ["MONAI_LABEL_MAX_VOXELS": "4096"])
    #expect(set.maxVoxels == 4096)
    for bad in ["0", "-1", "lots"] {
        #expect(throws: MONAILabelError.self) {
            try Settings.fromEnvironment(appDir: dir, studies: "", conf: [:], environment: ["MONAI_LABEL_MAX_VOXELS": bad])
        }
    }
}

@Test(.tags(.unit)) func inferInput_paramsImage_winsOverQueryImage_andAloneNamesTheDatastoreImage() {
    #expect(InferInput(model: "m", imageID: "", params: ["image": "s1"]).datastoreImageID == "s1")
    #expect(InferInput(model: "m", imageID: "q", params: ["image": "s1"]).datastoreImageID == "s1")
    #expect(InferInput(model: "m", imageID: "q").datastoreImageID == "q")
    #expect(InferInput(model: "m").datastoreImageID.isEmpty)
}
