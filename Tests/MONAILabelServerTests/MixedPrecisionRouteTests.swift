import Foundation
import Testing
import TestSupport
import MONAILabel
@testable import MONAILabelServer

/// `amp` / `amp_dtype` through the router: malformed values and float16 on the CPU are 422s naming the parameter,
/// refused before an image is read or a job is queued; bf16 on the CPU runs.
@Suite(.tags(.router)) struct MixedPrecisionRouteTests {
    @Test(arguments: [
        (#"{"amp": "yes"}"#, "amp must be true or false"),
        (#"{"amp": 1e300}"#, "amp must be true or false"),
        (#"{"amp": true, "amp_dtype": "float64"}"#, "amp_dtype must be float16 or bfloat16"),
        (#"{"amp_dtype": ["bfloat16"]}"#, "amp_dtype must be a string"),
        (#"{"amp": true, "amp_dtype": "float16"}"#, "amp_dtype float16 is not available"),
    ])
    func infer_badAmpParams_return422NamingThem(params: String, detail: String) throws {
        let c = try TestClient()
        let r = try c.sendForm(.post, "/infer/segmentation_spleen?image=spleen_01", fields: [("params", params)])
        #expect(r.status == 422, "\(params): \(r.status) \(r.text)")
        #expect(r.json?["detail"]?.stringValue?.hasPrefix(detail) == true, "\(params): \(r.text)")
    }

    @Test func infer_bf16OnTheCPU_answersALabel() throws {
        let c = try TestClient()
        // A real image in place of the client's placeholder bytes; one small window keeps the full-size UNet quick.
        try FileManager.default.removeItem(at: c.studies.appendingPathComponent("spleen_01.nii.gz"))
        _ = try DemoStudies.write(to: c.studies, count: 2, labeled: 0, shape: [32, 32, 16], spacing: [1, 1, 1])
        let r = try c.sendForm(.post, "/infer/segmentation_spleen?image=spleen_01&output=json",
                               fields: [("params", #"{"amp": true, "amp_dtype": "bfloat16", "roi_size": [32, 32, 16]}"#)])
        #expect(r.status == 200, "\(r.text)")
        #expect(r.json?["latencies"]?["infer"]?.doubleValue != nil)
    }

    @Test(arguments: [#"{"amp": "fast"}"#, #"{"amp": 2}"#])
    func train_malformedAmp_returns422NamingItBeforeAnyJob(body: String) throws {
        let h = try TrainHarness()
        let r = try h.send(.post, "/train/segmentation_spleen", json: body)
        #expect(r.status == 422, "\(body): \(r.status) \(String(describing: r.json))")
        #expect(r.json?["detail"]?.stringValue?.hasPrefix("amp must be true or false") == true)
        #expect(try h.send(.get, "/train/").status == 404, "a job was queued for \(body)")
    }
}
