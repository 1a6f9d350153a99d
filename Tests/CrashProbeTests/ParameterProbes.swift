import Foundation
import Testing

/// Hostile parameters that once ended the daemon (issue 14): each must be a clear 4xx naming the parameter, and
/// the server must serve a normal inference afterwards.
@Suite(.serialized) struct ParameterProbes {
    @Test func logsRefresh_overflowingValue_isRefusedAndServerLives() throws {
        let s = try ProbeServer()
        let r = try s.curl("GET", "/logs/?refresh=9223372036854775807")
        #expect(r.status == 422, "\(r.status) \(r.body.prefix(200))")
        #expect(detail(r.body).contains("refresh"))
        try s.expectAlive("refresh overflow")
    }

    /// `(params, the parameter the detail must name)`: negative/zero/huge windows, NaN and huge overlaps,
    /// batch sizes that would overflow, wrong types.
    static let inferParams: [(String, String)] = [
        (#"{"roi_size": [-96, 96, 96]}"#, "roi_size"),
        (#"{"roi_size": [0, 0, 0]}"#, "roi_size"),
        (#"{"roi_size": [9223372036854775807, 96, 96]}"#, "roi_size"),
        (#"{"roi_size": [96, 96]}"#, "roi_size"),
        (#"{"sw_overlap": NaN}"#, "sw_overlap"),
        (#"{"sw_overlap": 1e308}"#, "sw_overlap"),
        (#"{"sw_overlap": -1e308}"#, "sw_overlap"),
        (#"{"sw_batch_size": -1}"#, "sw_batch_size"),
        (#"{"sw_batch_size": 9223372036854775807}"#, "sw_batch_size"),
        (#"{"sw_batch_size": "8"}"#, "sw_batch_size"),
    ]

    @Test func infer_hostileSlidingWindowParams_areRefusedNamingThemAndServerLives() throws {
        let s = try ProbeServer()
        for (params, name) in Self.inferParams {
            let r = try s.curl("POST", "/infer/segmentation_spleen?image=spleen_00&output=json", ["-F", "params=\(params)"])
            #expect(r.status == 422, "\(params): \(r.status) \(r.body.prefix(200))")
            #expect(detail(r.body).contains(name), "\(params): \(r.body.prefix(200))")
            try s.expectAlive(params)
        }
    }

    @Test func deepgrowClicks_hostileCoordinates_areRefusedAndServerLives() throws {
        let s = try ProbeServer(models: "segmentation_spleen,deepgrow_3d")
        for params in [#"{"foreground": [[1e308, 0, 0]]}"#, #"{"foreground": [[-1e308, 0, 0]]}"#,
                       #"{"foreground": [[NaN, 1, 1]]}"#, #"{"foreground": [[1, 1]]}"#,
                       #"{"foreground": [[-5, 1, 1]]}"#, #"{"foreground": [[100000, 1, 1]]}"#]
        {
            let r = try s.curl("POST", "/infer/deepgrow_3d?image=spleen_00&output=json", ["-F", "params=\(params)"])
            #expect(r.status == 422, "\(params): \(r.status) \(r.body.prefix(200))")
            try s.expectAlive(params)
        }
    }

    @Test func trainParams_wrongTypeOrRange_areRefusedBeforeAnyJob() throws {
        let s = try ProbeServer()
        for (body, name) in [(#"{"max_epochs": "10"}"#, "max_epochs"), (#"{"max_epochs": 2.5}"#, "max_epochs"),
                             (#"{"max_epochs": 1e308}"#, "max_epochs"), (#"{"val_split": NaN}"#, "val_split"),
                             (#"{"spatial_size": [-1, 96, 96]}"#, "spatial_size"),
                             (#"{"max_train_interactions": 1e308}"#, "max_train_interactions")]
        {
            let r = try s.curl("POST", "/train/segmentation_spleen",
                               ["-H", "Content-Type: application/json", "--data-binary", body])
            #expect(r.status == 422, "\(body): \(r.status) \(r.body.prefix(200))")
            #expect(detail(r.body).contains(name), "\(body): \(r.body.prefix(200))")
        }
        #expect(try s.curl("GET", "/train/").status == 404, "a train job was queued")
        try s.expectAlive("train params")
    }
}
