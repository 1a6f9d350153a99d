import Foundation
import Testing
import MONAILabel
@testable import MONAILabelServer

/// Scoring and batch inference over real sockets, their jobs run by the freshly built `monailabel`.
@Test(.tags(.live), .timeLimit(.minutes(14)))
func liveServer_scoringAndBatchInferRunSync_answerOverSockets() throws {
    let tmp = TempDir()
    let server = try TrainHarness.startLiveServer(tmp, count: 3, labeled: 2)
    defer { server.stop() }
    func api(_ method: String, _ path: String, json: String? = nil) throws -> (Int, JSONValue?) {
        let (status, body) = try curl(server.port, method, path, json: json)
        return (status, try? JSONValue.parse(body))
    }

    // Batch inference writes `original` labels for the unlabeled image; dice then compares them with nothing
    // (spleen_02 has no final label), so only images with both tags are scored.
    let (bs, batch) = try api("POST", "/batch/infer/segmentation_spleen?images=unlabeled&run_sync=true", json: "{}")
    #expect(bs == 200)
    #expect(batch?.objectValue?.keys == ["spleen_02"])
    #expect(batch?["spleen_02"]?["tag"] == "original")
    let (gs, job) = try api("GET", "/batch/infer")
    #expect(gs == 200)
    #expect(job?["status"] == "DONE")

    let (ss, sum) = try api("POST", "/scoring/sum?run_sync=true")
    #expect(ss == 200)
    #expect(sum?.objectValue?.keys == ["spleen_00", "spleen_01", "spleen_02"])
    let (ds, dice) = try api("POST", "/scoring/dice?run_sync=true")
    #expect(ds == 200)
    #expect(dice == .object(JSONObject()))
    #expect(try api("POST", "/scoring/nope").0 == 404)
    let (ls, latest) = try api("GET", "/scoring/?all=true")
    #expect(ls == 200)
    #expect(latest?.arrayValue?.count == 2)
}
