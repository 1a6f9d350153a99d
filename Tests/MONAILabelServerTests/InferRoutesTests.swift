import Foundation
import Testing
import MONAILabel
@testable import MONAILabelServer

@Test(.tags(.router)) func infer_errors_areClear4xxNot500() throws {
    let c = try TestClient()
    let unknownModel = try c.send(.post, "/infer/unknown_model?image=spleen_01")
    #expect(unknownModel.status == 404)
    #expect(unknownModel.json?["detail"]?.stringValue?.contains("unknown_model") == true)
    #expect(try c.send(.post, "/infer/segmentation_spleen?image=nope").status == 404)
    let nothing = try c.send(.post, "/infer/segmentation_spleen")
    #expect(nothing.status == 422)
    #expect(nothing.json?["detail"]?.stringValue?.contains("Neither") == true)
    #expect(try c.send(.post, "/infer/segmentation_spleen?image=spleen_01&output=bogus").json?["detail"]?.arrayValue?.first?["type"] == .string("enum"))
    #expect(try c.sendForm(.post, "/infer/segmentation_spleen?image=spleen_01", fields: [("params", "{bad")]).status == 422)
    #expect(try c.send(.post, "/infer/segmentation_spleen?image=spleen_01&output=dicom_seg").status == 422)
    #expect(try c.send(.post, "/infer/segmentation_spleen?session_id=nope").status == 404)
    // The store's fake images are not NIfTI: the reader's refusal is a 422, and nothing is saved.
    let unreadable = try c.sendForm(.post, "/infer/segmentation_spleen?image=spleen_01", fields: [("params", #"{"save_label":true}"#)])
    #expect(unreadable.status == 422)
    #expect(c.app.datastore.labelInfo("spleen_01", tag: "original") == nil)
    #expect(try c.get("/infer/segmentation_spleen").status == 405)
}

@Test(.tags(.router)) func infer_imageIdsAreNeverFilePaths() throws {
    let c = try TestClient()
    let r = try c.sendForm(.post, "/infer/segmentation_spleen", fields: [("params", #"{"image":"/etc/passwd"}"#)])
    #expect(r.status == 404)
    #expect(try c.send(.post, "/infer/segmentation_spleen?image=..%2F..%2Fetc%2Fpasswd").status == 404)
}

@Test(.tags(.router)) func inferAdmission_full_answersUnavailable() throws {
    let gate = InferAdmission(capacity: 1)
    _ = try gate.run {
        #expect(throws: MONAILabelError(.unavailable, "Inference queue is full (1 requests in flight); retry later")) {
            try gate.run { () }
        }
    }
    try gate.run { () }
}

@Test(.tags(.router)) func infer_unavailableOrMalformedDevice_returns422NamingDevice() throws {
    let c = try TestClient()
    let gpu = try c.sendForm(.post, "/infer/segmentation_spleen?image=spleen_01", fields: [("params", #"{"device":"cuda:7"}"#)])
    #expect(gpu.status == 422)
    #expect(gpu.json?["detail"]?.stringValue?.hasPrefix("device 'cuda:7' is not available") == true)
    let bogus = try c.sendForm(.post, "/infer/segmentation_spleen?image=spleen_01", fields: [("params", #"{"device":["tpu"]}"#)])
    #expect(bogus.status == 422)
    #expect(bogus.json?["detail"]?.stringValue?.hasPrefix("device 'tpu' is not a device name") == true)
    let number = try c.sendForm(.post, "/infer/segmentation_spleen?image=spleen_01", fields: [("params", #"{"device":3}"#)])
    #expect(number.status == 422)
    #expect(number.json?["detail"]?.stringValue?.hasPrefix("device must be") == true)
}

@Test(.tags(.router)) func infer_unknownSwAccumulate_returns422NamingIt() throws {
    let c = try TestClient()
    let r = try c.sendForm(.post, "/infer/segmentation_spleen?image=spleen_01", fields: [("params", #"{"sw_accumulate":"gpu"}"#)])
    #expect(r.status == 422)
    #expect(r.json?["detail"]?.stringValue?.hasPrefix("sw_accumulate must be one of auto, device, cpu") == true)
}

@Test(.tags(.router)) func info_namesTheBackendsLibtorchAndDevices() throws {
    let c = try TestClient()
    let torch = try c.get("/info/").json?["torch"]
    #expect(torch?["libtorch"]?.stringValue?.isEmpty == false)
    #expect(torch?["devices"]?.arrayValue?.first?.stringValue == "cpu" || torch?["devices"]?.arrayValue?.first?.stringValue?.hasPrefix("cuda") == true)
}
