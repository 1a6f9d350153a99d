import Foundation
import Testing
import TestSupport
import MONAILabel
import TorchCheckpoint
import TorchKit
@testable import MONAILabelServer

/// Numeric request parameters that once trapped the whole server (issue 14) are 422s whose detail names the
/// parameter, refused before an image is read or a job is queued.
@Suite(.tags(.router)) struct ParameterValidationTests {
    func expect422(_ reply: TestClient.Reply, naming name: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(reply.status == 422, "\(reply.status) \(reply.text)", sourceLocation: sourceLocation)
        #expect(reply.json?["detail"]?.stringValue?.contains(name) == true, "\(reply.text)", sourceLocation: sourceLocation)
    }

    @Test func logs_overflowingRefresh_returns422NamingIt() throws {
        let c = try TestClient()
        expect422(try c.get("/logs/?refresh=9223372036854775807"), naming: "refresh")
        expect422(try c.get("/logs/?refresh=-1"), naming: "refresh")
    }

    @Test(arguments: [
        (#"{"roi_size": [-1, 96, 96]}"#, "roi_size"),
        (#"{"roi_size": 0}"#, "roi_size"),
        (#"{"roi_size": [96, 96]}"#, "roi_size"),
        (#"{"roi_size": [1000000000, 96, 96]}"#, "roi_size"),
        (#"{"roi_size": "96"}"#, "roi_size"),
        (#"{"sw_overlap": NaN}"#, "sw_overlap"),
        (#"{"sw_overlap": 1e300}"#, "sw_overlap"),
        (#"{"sw_overlap": 1.0}"#, "sw_overlap"),
        (#"{"sw_overlap": -0.1}"#, "sw_overlap"),
        (#"{"sw_batch_size": 0}"#, "sw_batch_size"),
        (#"{"sw_batch_size": 1e300}"#, "sw_batch_size"),
        (#"{"sw_batch_size": 2.5}"#, "sw_batch_size"),
    ])
    func infer_hostileSlidingWindowParams_return422NamingThem(params: String, name: String) throws {
        let c = try TestClient()
        expect422(try c.sendForm(.post, "/infer/segmentation_spleen?image=spleen_01", fields: [("params", params)]),
                  naming: name)
    }

    @Test(arguments: [
        #"{"foreground": [[1e300, 0, 0]]}"#,
        #"{"foreground": [[NaN, 0, 0]]}"#,
        #"{"foreground": [[1, 2]]}"#,
        #"{"foreground": [[1, 2, "x"]]}"#,
        #"{"foreground": 5}"#,
    ])
    func deepgrow_hostileClicks_return422NamingTheKey(params: String) throws {
        let c = try TestClient(conf: ["models": "deepgrow_3d"])
        expect422(try c.sendForm(.post, "/infer/deepgrow_3d?image=spleen_01", fields: [("params", params)]),
                  naming: "foreground")
    }

    @Test(arguments: [#"{"spleen": [[1e300, 0, 0]]}"#, #"{"spleen": [[Infinity, 0, 0]]}"#, #"{"spleen": [[1, 2]]}"#])
    func deepedit_hostileClicks_return422NamingTheLabel(params: String) throws {
        let c = try TestClient(conf: ["models": "deepedit"])
        expect422(try c.sendForm(.post, "/infer/deepedit?image=spleen_01", fields: [("params", params)]), naming: "spleen")
    }

    @Test func batchInfer_malformedMaxBatchSize_returns422BeforeQueuing() throws {
        let c = try TestClient()
        defer { c.app.batchInfer.jobs.shutdown() }
        expect422(try c.send(.post, "/batch/infer/segmentation_spleen", headers: [("Content-Type", "application/json")],
                             body: Array(#"{"max_batch_size": "5"}"#.utf8)), naming: "max_batch_size")
        #expect(try c.get("/batch/infer").status == 404)
    }

    @Test func scoring_malformedNumSamples_returns422BeforeQueuing() throws {
        let c = try TestClient()
        defer { c.app.scoring.jobs.shutdown() }
        expect422(try c.send(.post, "/scoring/dice", headers: [("Content-Type", "application/json")],
                             body: Array(#"{"num_samples": 1e12}"#.utf8)), naming: "num_samples")
        expect422(try c.send(.post, "/scoring/dice", headers: [("Content-Type", "application/json")],
                             body: Array(#"{"num_samples": "4"}"#.utf8)), naming: "num_samples")
        #expect(try c.get("/scoring/").status == 404)
    }
}

/// Train parameters are checked in the server, before a job exists (they used to be decoded in the child).
@Suite(.tags(.router), .serialized) struct TrainParameterValidationTests {
    @Test(arguments: [
        (#"{"max_epochs": "10"}"#, "max_epochs"),
        (#"{"max_epochs": 2.5}"#, "max_epochs"),
        (#"{"max_epochs": 0}"#, "max_epochs"),
        (#"{"max_epochs": 1e300}"#, "max_epochs"),
        (#"{"val_split": 1.5}"#, "val_split"),
        (#"{"val_split": NaN}"#, "val_split"),
        (#"{"lr": -1}"#, "lr"),
        (#"{"lr": Infinity}"#, "lr"),
        (#"{"train_batch_size": 0}"#, "train_batch_size"),
        (#"{"val_batch_size": 100000}"#, "val_batch_size"),
        (#"{"early_stop_patience": -5}"#, "early_stop_patience"),
        (#"{"val_interval": 0}"#, "val_interval"),
        (#"{"spatial_size": [0, 16, 16]}"#, "spatial_size"),
        (#"{"spatial_size": [4096, 4096, 4096]}"#, "spatial_size"),
        (#"{"target_spacing": [0, 1, 1]}"#, "target_spacing"),
        (#"{"num_samples": -3}"#, "num_samples"),
        (#"{"seed": -1}"#, "seed"),
        (#"{"pretrained": "yes"}"#, "pretrained"),
        (#"{"max_train_interactions": 1e300}"#, "max_train_interactions"),
    ])
    func train_malformedParameter_returns422NamingItBeforeAnyJob(body: String, name: String) throws {
        let h = try TrainHarness()
        let r = try h.send(.post, "/train/segmentation_spleen", json: body)
        #expect(r.status == 422, "\(body): \(r.status) \(String(describing: r.json))")
        #expect(r.json?["detail"]?.stringValue?.contains(name) == true, "\(body): \(String(describing: r.json))")
        #expect(try h.send(.get, "/train/").status == 404, "a job was queued for \(body)")
    }
}

/// `PUT /model/{model}` loads the upload into the network before it replaces anything.
@Suite(.tags(.router), .serialized) struct ModelUploadTests {
    /// A checkpoint of the harness' tiny spleen UNet, or of the same network with other channel counts.
    static func checkpoint(_ h: TrainHarness, channels: [Int]? = nil) throws -> [UInt8] {
        var spec = try #require(h.app.definition.models["segmentation_spleen"]?["network"]?.objectValue)
        if let channels { spec["channels"] = .array(channels.map { .int($0) }) }
        let net = try NetworkFactory.make(spec)
        let url = h.tmp.url.appendingPathComponent("upload-\(UUID().uuidString).pt")
        defer { try? FileManager.default.removeItem(at: url) }
        try Checkpoint.write(stateDict: try net.stateDict().map { (name: $0.0, tensor: $0.1) }, key: "model", extra: [],
                             to: url)
        return [UInt8](try Data(contentsOf: url))
    }

    func put(_ h: TrainHarness, _ bytes: [UInt8]) throws -> (status: Int, json: JSONValue?) {
        let m = TestClient.multipart(files: [("file", "model.pt", bytes)])
        return try h.send(.put, "/model/segmentation_spleen", headers: m.headers, body: m.body)
    }

    @Test func putModel_garbageOrMisshapenUpload_returns422AndKeepsWorkingWeights() throws {
        let h = try TrainHarness()
        let working = try Self.checkpoint(h)
        try FileOps.makeDirectory(h.published.deletingLastPathComponent())
        try Data(working).write(to: h.published)

        let garbage = try put(h, Array("this is not a checkpoint".utf8))
        #expect(garbage.status == 422, "\(String(describing: garbage.json))")
        #expect(garbage.json?["detail"]?.stringValue?.contains("does not load") == true)

        let misshapen = try put(h, try Self.checkpoint(h, channels: [8, 16, 32]))
        #expect(misshapen.status == 422)
        let detail = misshapen.json?["detail"]?.stringValue ?? ""
        #expect(detail.contains("size mismatch for") && detail.contains("weight"), "\(detail)")

        #expect([UInt8](try Data(contentsOf: h.published)) == working)
        #expect(!FileManager.default.fileExists(atPath: MONAILabelApp.previousWeights(of: h.published).path))
    }

    @Test func putModel_validUpload_swapsInAndKeepsThePreviousFile() throws {
        let h = try TrainHarness()
        let old = try Self.checkpoint(h), new = try Self.checkpoint(h)
        #expect(old != new)
        try FileOps.makeDirectory(h.published.deletingLastPathComponent())
        try Data(old).write(to: h.published)

        let r = try put(h, new)
        #expect(r.status == 200, "\(String(describing: r.json))")
        #expect(r.json?["checksum"]?.stringValue?.hasPrefix("SHA256:") == true)
        #expect([UInt8](try Data(contentsOf: h.published)) == new)
        #expect([UInt8](try Data(contentsOf: MONAILabelApp.previousWeights(of: h.published))) == old)
        // The .prev file is never what inference loads.
        #expect(h.app.inferTasks["segmentation_spleen"]?.currentModelFile == h.published)
    }
}
