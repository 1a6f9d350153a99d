import Foundation
import HTTPServer
import Testing
import MONAILabel
@testable import MONAILabelServer

/// Batch inference through the router; jobs run the freshly built `monailabel` (or a sleeper) as the child,
/// on `ScoringHarness`'s app (5 cases, the first `labeled` with a final label, a tiny UNet).
@Suite(.tags(.router), .serialized) struct BatchInferRoutesTests {
    @Test func batchInfer_noTasksYet_answers404AndDeleteAnswersNull() throws {
        let s = try ScoringHarness()
        let r = try s.send(.get, "/batch/infer")
        #expect(r.status == 404)
        #expect(r.json?["detail"]?.stringValue == "No Batch_infer Tasks Found")
        #expect(try s.send(.get, "/batch/infer?all=true").status == 404)
        #expect(try s.send(.get, "/batch/infer?check_if_running=true").json?["detail"]?.stringValue
            == "No Batch_infer Tasks are currently Running")
        let d = try s.send(.delete, "/batch/infer")
        #expect(d.status == 200)
        #expect(d.json == .null)
    }

    @Test func batchInfer_badImagesValue_returns422EnumError() throws {
        let s = try ScoringHarness()
        let r = try s.send(.post, "/batch/infer/segmentation_spleen?images=some")
        #expect(r.status == 422)
        let e = try #require(r.json?["detail"]?.arrayValue?.first)
        #expect(e["type"]?.stringValue == "enum")
        #expect(e["loc"] == ["query", "images"])
        #expect(try s.send(.get, "/batch/infer").status == 404)
    }

    @Test func batchInfer_unknownModel_returns404WithoutQueuing() throws {
        let s = try ScoringHarness()
        #expect(try s.send(.post, "/batch/infer/unknown_model", json: #"{"device":"cpu"}"#).status == 404)
        #expect(try s.send(.get, "/batch/infer").status == 404)
    }

    @Test func batchInfer_noBody_usesUpstreamDefaultsThenStopAnswersStopped() throws {
        let dir = TempDir()
        let s = try ScoringHarness(runner: try ScoringHarness.sleeper(in: dir.url))
        let r = try s.send(.post, "/batch/infer/segmentation_spleen")
        #expect(r.status == 200)
        #expect(r.json?["status"]?.stringValue == "SUBMITTED")
        #expect(r.json?["request"]?.objectValue?.keys == [
            "model", "images", "device", "multi_gpu", "gpus", "logging", "save_label", "label_tag", "max_workers",
            "max_batch_size",
        ])
        #expect(r.json?["request"]?["device"] == "cuda")
        #expect(r.json?["request"]?["images"] == "all")
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline, s.app.batchInfer.jobs.running == nil { usleep(20_000) }
        let busy = try s.send(.post, "/batch/infer/segmentation_spleen?images=labeled", json: "{}")
        #expect(busy.status == 429)
        #expect(busy.json?["detail"]?.stringValue == "++++++++++ Batch_infer Task is Already Running")
        let stopped = try s.send(.delete, "/batch/infer")
        #expect(stopped.json?["status"]?.stringValue == "STOPPED")
        #expect(s.app.batchInfer.jobs.all.count == 1)
    }

    @Test func batchInfer_emptyBody_meansNoParams() throws {
        let dir = TempDir()
        let s = try ScoringHarness(runner: try ScoringHarness.sleeper(in: dir.url))
        let r = try s.send(.post, "/batch/infer/segmentation_spleen?images=unlabeled", json: "{}")
        #expect(r.json?["request"] == ["model": "segmentation_spleen", "images": "unlabeled"])
        _ = s.app.batchInfer.jobs.stop()
    }

    @Test func batchInfer_unlabeledRunSync_savesLabelsUnderLabelTag() throws {
        let s = try ScoringHarness(labeled: 3)
        let r = try s.send(.post, "/batch/infer/segmentation_spleen?images=unlabeled&run_sync=true",
                           json: #"{"device": "cuda", "label_tag": "batch"}"#)
        #expect(r.status == 200)
        let result = try #require(r.json?.objectValue)
        #expect(result.keys == ["spleen_03", "spleen_04"])
        for id in ["spleen_03", "spleen_04"] {
            #expect(result[id]?["label"]?.stringValue == id)
            #expect(result[id]?["tag"]?.stringValue == "batch")
            #expect(result[id]?["params"]?["label_names"] != nil)
            let uri = try #require(s.app.datastore.labelURI(id, tag: "batch"))
            #expect(FileManager.default.fileExists(atPath: uri))
            #expect(s.app.datastore.labelInfo(id, tag: "batch")?["model"] == "segmentation_spleen")
        }
        #expect(s.app.datastore.labelURI("spleen_00", tag: "batch") == nil)
        let job = try #require(try s.send(.get, "/batch/infer").json)
        #expect(job["status"]?.stringValue == "DONE")
    }

    @Test func batchInfer_listOfImagesAndMaxBatchSize_picksSortedPrefix() throws {
        let s = try ScoringHarness(labeled: 0)
        let r = try s.send(.post, "/batch/infer/segmentation_spleen?run_sync=true",
                           json: #"{"images": ["spleen_04", "spleen_02", "spleen_01"], "max_batch_size": 2}"#)
        #expect(r.status == 200)
        #expect(r.json?.objectValue?.keys == ["spleen_01", "spleen_02"])
        #expect(s.app.datastore.labelURI("spleen_01", tag: "original") != nil)
        #expect(s.app.datastore.labelURI("spleen_04", tag: "original") == nil)
    }

    @Test func batchInfer_unknownImageInList_answersEmptyObjectForIt() throws {
        let s = try ScoringHarness(labeled: 0)
        let r = try s.send(.post, "/batch/infer/segmentation_spleen?run_sync=true", json: #"{"images": ["nope", "spleen_00"]}"#)
        #expect(r.status == 200)
        #expect(r.json?["nope"] == .object(JSONObject()))
        #expect(r.json?["spleen_00"]?["tag"] == "original")
    }
}
