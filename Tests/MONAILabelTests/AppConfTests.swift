import Foundation
import Testing
@testable import MONAILabel
@testable import MONAILabelCore

// Upstream's radiology `--conf` keys: each key's effect on the app that is built.

@Test(.tags(.unit)) func conf_unknownAndUnsupportedKeys_areNamedInTheStartupWarnings() throws {
    let conf = try AppConf(["models": "segmentation_spleen", "epistemic_enable": "true", "sam2": "true"])
    #expect(conf.unknownKeys == ["epistemic_enable"])
    #expect(conf.unsupportedKeys == ["sam2"])
    #expect(conf.warnings.count == 2)
    #expect(conf.warnings[0].contains("--conf epistemic_enable is not a setting"))
    #expect(conf.warnings[1].contains("--conf sam2"))
    #expect(try AppConf(["models": "all", "preload": "false"]).warnings.isEmpty)
}

@Test(.tags(.unit)) func conf_malformedValues_areStartupErrorsNamingTheKey() {
    for (key, value) in [("use_pretrained_model", "maybe"), ("preload", "2"), ("skip_scoring", ""),
                         ("epistemic_samples", "0"), ("tta_samples", "1e9"), ("network", "resnet"),
                         ("labels", "{\"spleen\": 1.5}"), ("labels", "[\"a\", \"a\"]"), ("labels", "{\"liver\": 0}"),
                         ("labels", "{oops"), ("pretrained_path", " ")] {
        do {
            _ = try AppConf(["models": "segmentation_spleen", key: value])
            Issue.record("--conf \(key) \(value) was accepted")
        } catch let e as MONAILabelError {
            #expect(e.message.contains(key), "\(e.message)")
        } catch {
            Issue.record("\(error)")
        }
    }
}

@Test(.tags(.unit)) func conf_booleans_followUpstreamsStrtobool() throws {
    #expect(try AppConf(["preload": "Yes"]).preload)
    #expect(try AppConf(["preload": "on"]).preload)
    #expect(try AppConf(["use_pretrained_model": "0"]).usePretrainedModel == false)
    #expect(try AppConf([:]).usePretrainedModel)
}

@Test(.tags(.unit)) func conf_labels_jsonMap_changesLabelsAndOutputChannels_andDropsThePretrainedFile() throws {
    let tmp = TempDir()
    let app = try makeApp(tmp, conf: ["models": "segmentation_spleen", "labels": #"{"liver": 1, "spleen": 3}"#],
                          factory: defaultInferTaskFactory)
    let task = try #require(app.inferTasks["segmentation_spleen"] as? SegmentationTask)
    #expect(task.labels == ["liver": 1, "spleen": 3])
    #expect(task.loader.networkSpec["out_channels"] == 3)
    // The pretrained weights were made for other labels: only the published file is loaded.
    #expect(task.modelPaths.map(\.lastPathComponent) == ["segmentation_spleen.pt"])
    #expect(app.info()["labels"] == ["liver", "spleen"])
    // Trainers see the same definition.
    #expect(app.trainDefinitions["segmentation_spleen"]?.labels == ["liver": 1, "spleen": 3])
}

@Test(.tags(.unit)) func conf_labels_listAndCommaNames_numberFromOne() throws {
    #expect(try AppConf.parseLabels(#"["liver", "kidney"]"#).map(\.value) == [1, 2])
    let comma = try AppConf.parseLabels("liver, kidney ,spleen")
    #expect(comma.map(\.name) == ["liver", "kidney", "spleen"])
    #expect(comma.map(\.value) == [1, 2, 3])
}

@Test(.tags(.unit)) func conf_labels_deepEdit_addsBackgroundAndGuidanceChannels() throws {
    let d = try AppConf(["labels": "liver,spleen"]).apply(model: "deepedit", to: [
        "type": "deepedit", "labels": ["spleen": 1, "background": 0], "number_intensity_ch": 1,
        "network": ["name": "DynUNet", "in_channels": 3, "out_channels": 2],
    ])
    #expect(d["labels"] == ["liver": 1, "spleen": 2, "background": 0])
    #expect(d["network"]?["in_channels"] == 4)
    #expect(d["network"]?["out_channels"] == 3)
    #expect(d["files"]?["pretrained"] == .null)
}

@Test(.tags(.unit)) func conf_labels_deepGrow_changesOnlyTheNames() throws {
    let d = try AppConf(["labels": "liver"]).apply(model: "deepgrow_2d", to: [
        "type": "deepgrow", "labels": ["spleen"], "network": ["name": "BasicUNet", "out_channels": 1],
    ])
    #expect(d["labels"] == ["liver"])
    #expect(d["network"]?["out_channels"] == 1)
}

@Test(.tags(.unit)) func conf_networkUnetr_switchesDeepEditsNetworkToUNETRAndItsFiles() throws {
    let d = try AppConf(["network": "unetr"]).apply(model: "deepedit", to: [
        "type": "deepedit", "spatial_size": [128, 128, 128],
        "network": ["name": "DynUNet", "in_channels": 9, "out_channels": 8],
    ])
    #expect(d["network"]?["name"] == "UNETR")
    #expect(d["network"]?["in_channels"] == 9)
    #expect(d["network"]?["hidden_size"] == 1536)
    #expect(d["files"]?["published"] == "deepedit_unetr.pt")
    #expect(d["files"]?["pretrained"] == "pretrained_deepedit_unetr.pt")
    let tmp = TempDir()
    let app = try makeApp(tmp, conf: ["models": "deepedit", "network": "unetr"], factory: defaultInferTaskFactory)
    #expect(app.inferTasks["deepedit"]?.modelPaths.last?.lastPathComponent == "deepedit_unetr.pt")
}

@Test(.tags(.unit)) func conf_modelsNone_isReviewOnly_noModelNoScribblesNoWorkersNoLibtorchInInfo() throws {
    let tmp = TempDir()
    let app = try makeApp(tmp, conf: ["models": "none"])
    #expect(app.conf.reviewOnly)
    #expect(app.inferTasks.isEmpty)
    #expect(app.inferWorkers == nil)
    #expect(app.strategies.keys == ["random", "first", "last"])
    #expect(app.info()["torch"]?["libtorch"] == .null)
    #expect(app.info()["models"] == .object(JSONObject()))
    #expect(try app.nextSample(strategy: "first", request: [:])["id"] != nil)
}

@Test(.tags(.unit)) func conf_skipScoring_servesNoScoringMethod() throws {
    let tmp = TempDir()
    #expect(try makeApp(tmp, conf: ["models": "segmentation_spleen"]).scoring.methods.keys == ["dice", "sum"])
    let tmp2 = TempDir()
    #expect(try makeApp(tmp2, conf: ["models": "segmentation_spleen", "skip_scoring": "true"]).scoring.methods.isEmpty)
}

@Test(.tags(.unit)) func conf_skipStrategies_keepsRandomFirstLast_andTheScoringMethods() throws {
    let tmp = TempDir()
    let app = try makeApp(tmp, conf: ["models": "segmentation_spleen", "epistemic_enabled": "true", "skip_strategies": "true"],
                          factory: defaultInferTaskFactory)
    #expect(app.strategies.keys == ["random", "first", "last"])
    #expect(app.scoring.methods.keys.contains("epistemic"))
    let tmp2 = TempDir()
    let withStrategies = try makeApp(tmp2, conf: ["models": "segmentation_spleen", "epistemic_enabled": "true"],
                                     factory: defaultInferTaskFactory)
    #expect(withStrategies.strategies.keys.contains("epistemic"))
}

@Test(.tags(.unit)) func conf_skipTrainers_servesNoTrainer() throws {
    let tmp = TempDir()
    #expect(try makeApp(tmp, factory: defaultInferTaskFactory).trainDefinitions.keys == ["segmentation_spleen"])
    let tmp2 = TempDir()
    let app = try makeApp(tmp2, conf: ["models": "segmentation_spleen", "skip_trainers": "true"], factory: defaultInferTaskFactory)
    #expect(app.trainDefinitions.isEmpty)
    #expect(app.info()["trainers"] == .object(JSONObject()))
}

@Test(.tags(.unit)) func conf_epistemicAndTTASamples_reachTheirScoringMethods() throws {
    let tmp = TempDir()
    let app = try makeApp(tmp, conf: ["models": "segmentation_spleen", "epistemic_enabled": "yes", "epistemic_samples": "3",
                                      "tta_enabled": "true", "tta_samples": "7"], factory: defaultInferTaskFactory)
    #expect((app.scoring.methods["epistemic"] as? EpistemicScoring)?.samples == 3)
    #expect((app.scoring.methods["tta"] as? TTAScoring)?.samples == 7)
    #expect(app.strategies.keys.contains("segmentation_spleen_tta"))
}

@Test(.tags(.unit)) func conf_preload_loadsTheNetworksBeforeTheFirstRequest() throws {
    let tmp = TempDir()
    let app = try makeApp(tmp, conf: ["models": "segmentation_spleen", "preload": "true"], factory: defaultInferTaskFactory)
    let task = try #require(app.inferTasks["segmentation_spleen"] as? SegmentationTask)
    #expect(app.conf.preload)
    #expect(!task.loader.isLoaded)
    #expect(try app.preloadModels() == ["segmentation_spleen"])
    #expect(task.loader.isLoaded)
}

@Test(.tags(.unit)) func pretrainedDownloads_useThePretrainedPath_skipPresentFiles_andHonourTheKeys() throws {
    let tmp = TempDir()
    let app = try makeApp(tmp, conf: ["models": "segmentation_spleen"])
    func missing(_ conf: [String: String]) throws -> [PretrainedDownload] {
        try PretrainedDownload.missing(models: ["segmentation_spleen", "deepedit"], definition: try AppDefinition.load(appDir: app.appDir),
                                       conf: try AppConf(conf), modelDir: app.modelDir, base: "http://127.0.0.1:1/weights/")
    }
    let all = try missing([:])
    #expect(all.map(\.url.absoluteString) == [
        "http://127.0.0.1:1/weights/radiology_segmentation_unet_spleen_total_seg.pt",
        "http://127.0.0.1:1/weights/radiology_deepedit_dynunet_multilabel.pt",
    ])
    #expect(all.map(\.destination.lastPathComponent) == ["pretrained_segmentation_spleen.pt", "pretrained_deepedit_dynunet.pt"])
    #expect(try missing(["network": "unetr"]).last?.destination.lastPathComponent == "pretrained_deepedit_unetr.pt")
    #expect(try missing(["use_pretrained_model": "false"]).isEmpty)
    #expect(try missing(["labels": "liver"]).isEmpty)
    _ = tmp.write("app/model/pretrained_segmentation_spleen.pt", [1])
    #expect(try missing([:]).map(\.model) == ["deepedit"])
    #expect(throws: MONAILabelError.self) {
        try PretrainedDownload.missing(models: ["deepedit"], definition: try AppDefinition.load(appDir: app.appDir),
                                       conf: try AppConf([:]), modelDir: app.modelDir, base: "/srv/weights")
    }
}

@Test(.tags(.unit)) func infer_untrainedModel_saysSoInTheResultParams() throws {
    let tmp = TempDir()
    let small = try smallSpleenTask(tmp)
    let app = try makeApp(tmp, conf: ["models": "segmentation_spleen"], factory: { _, _, _ in small })
    let task = try #require(app.inferTasks["segmentation_spleen"])
    let job = WorkerJob(model: "segmentation_spleen", imagePath: pipelineFixture("ct_lps_aniso.nii.gz").path,
                        params: ["skip_writer": true])
    #expect(try app.runModel(job).json["warning"] == nil)
    #expect(app.untrainedModels.isEmpty)
    try FileManager.default.removeItem(at: task.modelPaths[0])
    let r = try app.runModel(job)
    #expect(r.json["warning"]?.stringValue?.contains("segmentation_spleen has no trained weights") == true)
    #expect(app.untrainedModels == ["segmentation_spleen"])
}

@Test(.tags(.unit)) func conf_usePretrainedModelFalse_isTheTrainersPretrainedDefault() throws {
    let tmp = TempDir()
    let app = try makeApp(tmp, conf: ["models": "segmentation_spleen", "use_pretrained_model": "false"],
                          factory: defaultInferTaskFactory)
    #expect(app.trainDefinitions["segmentation_spleen"]?.clientConfig()["pretrained"] == false)
    let tmp2 = TempDir()
    #expect(try makeApp(tmp2, factory: defaultInferTaskFactory).trainDefinitions["segmentation_spleen"]?
        .clientConfig()["pretrained"] == true)
}
