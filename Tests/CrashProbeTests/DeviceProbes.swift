import Foundation
import Testing

extension CrashProbes {
    /// Hostile `device` and `sw_accumulate` values (issue 15) for inference and scoring: each is a 422 naming the
    /// parameter, and the server serves a normal inference afterwards.
    @Suite struct DeviceProbes {
        static let inferParams: [(String, String)] = [
            (#"{"device": "cuda:99999"}"#, "device"),
            (#"{"device": "cuda:-1"}"#, "device"),
            (#"{"device": "cuda:9223372036854775807"}"#, "device"),
            (#"{"device": "cuda:٣"}"#, "device"),
            (#"{"device": []}"#, "device"),
            (#"{"device": [[["cuda"]]]}"#, "device"),
            (#"{"device": {"type": "cuda"}}"#, "device"),
            (#"{"device": "\#(String(repeating: "x", count: 20_000))"}"#, "device"),
            (#"{"sw_accumulate": "gpu"}"#, "sw_accumulate"),
            (#"{"sw_accumulate": 1}"#, "sw_accumulate"),
            (#"{"sw_accumulate": ["cpu"]}"#, "sw_accumulate"),
        ]

        @Test func infer_hostileDeviceParams_areRefusedNamingThemAndServerLives() throws {
            let s = try ProbeServer()
            for (params, name) in Self.inferParams {
                let r = try s.curl("POST", "/infer/segmentation_spleen?image=spleen_00&output=json", ["-F", "params=\(params)"])
                #expect(r.status == 422, "\(params.prefix(80)): \(r.status) \(r.body.prefix(200))")
                #expect(detail(r.body).hasPrefix(name), "\(params.prefix(80)): \(r.body.prefix(200))")
                #expect(detail(r.body).count < 1000, "the detail does not echo a huge value")
                try s.expectAlive(String(params.prefix(80)))
            }
        }

        @Test func infer_cpuAccumulationAndBareCuda_areServed() throws {
            let s = try ProbeServer()
            for params in [#"{"device": "cpu", "sw_accumulate": "cpu"}"#, #"{"device": ["cuda"], "sw_accumulate": "auto"}"#] {
                let r = try s.curl("POST", "/infer/segmentation_spleen?image=spleen_00&output=json", ["-F", "params=\(params)"])
                #expect(r.status == 200, "\(params): \(r.status) \(r.body.prefix(300))")
            }
            try s.expectAlive("device placement")
        }
    }
}
