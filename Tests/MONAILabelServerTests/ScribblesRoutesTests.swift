import Foundation
import Imaging
import Testing
import MONAILabel
@testable import MONAILabelServer

/// A two-intensity box image in the store under `id`, and scribbles (bg 2, fg 3 for the spleen app) as NIfTI bytes.
private func boxStudy(_ c: TestClient, id: String) throws -> (scribbles: [UInt8], truth: [UInt8], raw: [UInt8]) {
    let shape = [40, 40, 16]
    func at(_ i: Int, _ j: Int, _ k: Int) -> Int { (i * 40 + j) * 16 + k }
    var image = [Int16](repeating: 20, count: 40 * 40 * 16), truth = [UInt8](repeating: 0, count: image.count)
    var scribbles = [UInt8](repeating: 0, count: image.count)
    for i in 10..<30 { for j in 12..<28 { for k in 4..<12 { image[at(i, j, k)] = 150; truth[at(i, j, k)] = 1 } } }
    for k in [6, 8, 10] {
        for i in 14..<26 { scribbles[at(i, 20, k)] = 3 }
        for i in 0..<40 { scribbles[at(i, 4, k)] = 2; scribbles[at(i, 34, k)] = 2 }
    }
    let affine = Affine([2.5, 0, 0, 0, 0, 2.5, 0, 0, 0, 0, 5, 0, 0, 0, 0, 1])
    try NIfTI.write(Volume(spatialShape: shape, data: .int16(image), affine: affine),
                    to: c.studies.appendingPathComponent("\(id).nii.gz"))
    let label = c.tmp.url.appendingPathComponent("scribbles.nii.gz")
    try NIfTI.write(Volume(spatialShape: shape, data: .uint8(scribbles), affine: affine), to: label)
    // OHIF's raw buffer: the same voxels in Fortran order (first axis fastest).
    var raw = [UInt8](repeating: 0, count: scribbles.count)
    for i in 0..<40 { for j in 0..<40 { for k in 0..<16 { raw[i + 40 * (j + 40 * k)] = scribbles[at(i, j, k)] } } }
    return (Array(try Data(contentsOf: label)), truth, raw)
}

/// The gzipped NIfTI label in a multipart infer answer, saved as `name` and loaded.
private func resultLabel(_ r: TestClient.Reply, _ c: TestClient, saveAs name: String) throws -> Volume {
    let body = r.body
    let start = try #require((0..<(body.count - 1)).first { body[$0] == 0x1f && body[$0 + 1] == 0x8b })
    let out = c.tmp.url.appendingPathComponent(name)
    try Data(body[start...]).write(to: out)
    return try ImageIO.load(out)
}

/// Dice of the non-zero voxels of `result` and `truth`.
private func dice(_ result: Volume, _ truth: [UInt8]) -> Double {
    var inter = 0, a = 0, b = 0
    for (x, y) in zip(result.floats, truth) {
        if x != 0 { a += 1 }
        if y != 0 { b += 1 }
        if x != 0 && y != 0 { inter += 1 }
    }
    return 2 * Double(inter) / Double(a + b)
}

@Test(.tags(.router)) func info_listsHistogramGraphCut_asScribbles() throws {
    let c = try TestClient()
    let m = try #require(c.get("/info/").json?["models"]?["Histogram+GraphCut"])
    #expect(m["type"] == "scribbles")
    #expect(m["labels"] == ["spleen": 1])
    #expect(m["config"]?.objectValue?.keys == ["num_bins", "lamda", "sigma", "device"])
    let off = try TestClient(conf: ["models": "segmentation_spleen", "scribbles": "false"])
    #expect(try off.get("/info/").json?["models"]?["Histogram+GraphCut"] == nil)
}

@Test(.tags(.router)) func inferScribbles_withLabelUpload_segmentsTheBox() throws {
    let c = try TestClient()
    let (scribbles, truth, _) = try boxStudy(c, id: "spleen_01")
    let r = try c.sendForm(.post, "/infer/Histogram%2BGraphCut?image=spleen_01",
                           fields: [("params", #"{"result_extension": ".nii.gz", "roi": []}"#)],
                           files: [("label", "/home/user/slicer/scribbles.nii.gz", scribbles)])
    #expect(r.status == 200, "\(r.text.prefix(300))")
    // The multipart answer carries the label file; take it out and compare with the box.
    #expect(dice(try resultLabel(r, c, saveAs: "result.nii.gz"), truth) >= 0.9)

    let json = try c.sendForm(.post, "/infer/Histogram%2BGraphCut?image=spleen_01&output=json",
                              files: [("label", "scribbles.nii.gz", scribbles)])
    #expect(json.status == 200)
    #expect(json.json?["bbox"]?.arrayValue?.count == 6)
    #expect(json.json?["label_names"] == ["spleen": 1])
}

@Test(.tags(.router)) func inferScribbles_withoutLabel_isAClear422() throws {
    let c = try TestClient()
    _ = try boxStudy(c, id: "spleen_01")
    let r = try c.send(.post, "/infer/Histogram%2BGraphCut?image=spleen_01")
    #expect(r.status == 422)
    #expect(r.json?["detail"]?.stringValue?.contains("label") == true)
    // A label path in params is never read: only an uploaded file can be the scribbles.
    let path = try c.sendForm(.post, "/infer/Histogram%2BGraphCut?image=spleen_01",
                              fields: [("params", #"{"label": "/etc/passwd"}"#)])
    #expect(path.status == 422)
}

/// In-process and in a model worker (which converts the raw buffer, since it reads the image).
@Test(.tags(.router), arguments: [0, 1])
func inferScribbles_ohifRawBuffer_isReshapedOnTheImageGrid(workers: Int) throws {
    let c = try TestClient(workers: workers)
    let (scribbles, _, raw) = try boxStudy(c, id: "spleen_01")
    let fromNIfTI = try c.sendForm(.post, "/infer/Histogram%2BGraphCut?image=spleen_01&output=json",
                                   files: [("label", "scribbles.nii.gz", scribbles)])
    let fromRaw = try c.sendForm(.post, "/infer/Histogram%2BGraphCut?image=spleen_01&output=json",
                                 files: [("label", "scribbles.bin", raw)])
    #expect(fromRaw.status == 200, "\(fromRaw.text.prefix(300))")
    #expect(fromRaw.json?["bbox"] != nil)
    #expect(fromRaw.json?["bbox"] == fromNIfTI.json?["bbox"])
    let short = try c.sendForm(.post, "/infer/Histogram%2BGraphCut?image=spleen_01&output=json",
                               files: [("label", "scribbles.bin", Array(raw.dropLast()))])
    #expect(short.status == 422)
}

@Test(.tags(.router)) func info_listsTheRefinementAndGeoSTasks_asScribbles() throws {
    let c = try TestClient()
    let models = try #require(c.get("/info/").json?["models"])
    let iseg = try #require(models["ISeg+GraphCut"])
    #expect(iseg["type"] == "scribbles")
    #expect(iseg["labels"] == ["spleen": 1])
    #expect(iseg["config"]?.objectValue?.keys == ["lamda", "sigma", "device"])
    let geos = try #require(models["Scribbles+GeoS"])
    #expect(geos["type"] == "scribbles")
    #expect(geos["config"]?.objectValue?.keys == ["gamma", "theta", "device"])
    // `--conf scribbles_model` picks the refined model; one that is not loaded is a start-up error.
    #expect(throws: MONAILabelError.self) {
        try TestClient(conf: ["models": "segmentation_spleen", "scribbles_model": "segmentation"])
    }
}

@Test(.tags(.router)) func inferISeg_runsTheSegmentationModel_andKeepsTheStrokes() throws {
    let c = try TestClient()
    let (scribbles, _, _) = try boxStudy(c, id: "spleen_01")
    let r = try c.sendForm(.post, "/infer/ISeg%2BGraphCut?image=spleen_01",
                           fields: [("params", #"{"result_extension": ".nii.gz", "roi": [], "selected_label_name": "spleen"}"#)],
                           files: [("label", "scribbles.nii.gz", scribbles)])
    #expect(r.status == 200, "\(r.text.prefix(300))")
    let result = try resultLabel(r, c, saveAs: "iseg.nii.gz").floats
    let strokes = try ImageIO.load(c.tmp.url.appendingPathComponent("scribbles.nii.gz")).floats
    // Whatever the untrained model says, the strokes are hard constraints.
    #expect(zip(result, strokes).allSatisfy { $1 == 3 ? $0 == 1 : ($1 == 2 ? $0 == 0 : true) })
    #expect(r.text.contains("MakeISegUnaryd"))
}

@Test(.tags(.router)) func inferGeoS_withLabelUpload_segmentsTheBox() throws {
    let c = try TestClient()
    let (scribbles, truth, _) = try boxStudy(c, id: "spleen_01")
    let r = try c.sendForm(.post, "/infer/Scribbles%2BGeoS?image=spleen_01",
                           fields: [("params", #"{"result_extension": ".nii.gz", "roi": []}"#)],
                           files: [("label", "scribbles.nii.gz", scribbles)])
    #expect(r.status == 200, "\(r.text.prefix(300))")
    #expect(dice(try resultLabel(r, c, saveAs: "geos.nii.gz"), truth) >= 0.9)
}

/// Slicer's scribbles call (spec section 7.2) through the real `monailabel.client` 0.8.5 on a live server, for
/// Histogram+GraphCut, Scribbles+GeoS and ISeg+GraphCut: labelmap upload, label_info with non-default scribble
/// values, .nrrd/uint8 result, strokes kept, Dice against the study's label, ROI.
@Test(.tags(.live), .needsClientVenv)
func pythonClient_slicerScribblesSequence_passes() throws {
    let tmp = TempDir()
    let server = try startLiveServer(tmp, cases: 2, labeled: 1)
    defer { server.stop() }
    let (status, text) = try runE2EScript("slicer_scribbles.py", ["http://127.0.0.1:\(server.port)", tmp.url.path, "spleen_00"])
    #expect(status == 0, "\(text)")
    #expect(text.contains("SLICER SCRIBBLES OK"))
}
