import Foundation
import Imaging
import Testing
@testable import MONAILabel
@testable import MONAILabelCore

/// The demo (scripts/demo.sh) segments: its app with the shipped weights, on the demo's synthetic studies.
@Suite(.tags(.unit)) struct DemoModelTests {
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let weights = repo.appendingPathComponent("sample-apps/demo/weights/pretrained_segmentation_spleen.pt")

    /// Dice of two label volumes on the same grid (label > 0 is foreground).
    static func dice(_ a: Volume, _ b: Volume) -> Double {
        let x = a.floats, y = b.floats
        var both = 0, sum = 0
        for i in 0..<min(x.count, y.count) {
            let p = x[i] > 0, q = y[i] > 0
            if p && q { both += 1 }
            sum += (p ? 1 : 0) + (q ? 1 : 0)
        }
        return sum == 0 ? 1 : 2 * Double(both) / Double(sum)
    }

    /// The demo app as demo.sh sets it up: its app.json, the weights imported into `model/`, models run here.
    static func demoApp(_ tmp: TempDir, studies: URL) throws -> MONAILabelApp {
        let appDir = tmp.url.appendingPathComponent("demo")
        try FileManager.default.createDirectory(at: appDir.appendingPathComponent("model"), withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: repo.appendingPathComponent("sample-apps/demo/app.json"),
                                         to: appDir.appendingPathComponent("app.json"))
        try FileManager.default.copyItem(at: weights, to: appDir.appendingPathComponent("model/pretrained_segmentation_spleen.pt"))
        var settings = Settings(appDir: appDir, studies: studies.path, conf: ["models": "segmentation_spleen"])
        settings.sessions = false
        settings.inferWorkers = 0
        return try MONAILabelApp(settings: settings, datastore: try LocalDatastore(root: studies))
    }

    /// Auto Segmentation of `image` against its generated label.
    static func autoSegmentationDice(_ app: MONAILabelApp, studies: URL, image: String) throws -> Double {
        let result = try app.runModel(WorkerJob(model: "segmentation_spleen",
                                                imagePath: studies.appendingPathComponent("\(image).nii.gz").path, params: [:]))
        #expect(result.json["warning"] == nil)
        let file = try #require(result.file)
        defer { try? FileManager.default.removeItem(at: file) }
        let truth = try ImageIO.load(studies.appendingPathComponent("labels/final/\(image).nii.gz"))
        let predicted = try ImageIO.load(file)
        #expect(predicted.spatialShape == truth.spatialShape)
        return dice(predicted, truth)
    }

    @Test func demoWeights_areSmallEnoughToShip() throws {
        let size = try #require(FileOps.fileSize(Self.weights.path), "missing: run scripts/make-demo-model.sh")
        #expect(size < 2 << 20)
    }

    /// spleen_04 is the demo's first image without a label (what `first` hands out; the demo labels 0-3); the
    /// weights were trained on cases 0-15 of the same generator. spleen_20 was never trained on.
    @Test(arguments: ["spleen_04", "spleen_20"])
    func demoAutoSegmentation_scoresDiceOf0_8OrMore(image: String) throws {
        let tmp = TempDir()
        let studies = tmp.url.appendingPathComponent("studies")
        let n = Int(image.dropFirst("spleen_".count))! + 1
        _ = try DemoStudies.write(to: studies, count: n, labeled: n)
        let app = try Self.demoApp(tmp, studies: studies)
        let d = try Self.autoSegmentationDice(app, studies: studies, image: image)
        #expect(d >= 0.8, "Dice \(d) on \(image)")
    }
}
