import Foundation
import HTTPClient
import MONAILabel
import Testing
@testable import MONAILabelServer

/// The dashboard at `/` in headless Chromium on a folder datastore: models, counts, the slice preview with and
/// without the label overlay (screenshot pixels), and a 2-epoch training run's curve.
/// Screenshots: `<temp>/monailabel-browser-tests/dashboard/`.
@Suite(.tags(.live), .serialized,
       .enabled(if: Browser.available, Browser.skipReason),
       .enabled(if: PixelStats.available, "needs .venv-client with Pillow (scripts/make-client-venv.sh)"))
struct DashboardBrowserTests {
    static let screenshots = FileManager.default.temporaryDirectory.appendingPathComponent("monailabel-browser-tests/dashboard")

    @Test(.timeLimit(.minutes(12)))
    func dashboard_showsModelsCounts_previewOverlayChangesPixels_andTrainingCurve() throws {
        let tmp = TempDir()
        let server = try TrainHarness.startLiveServer(tmp, count: 4, labeled: 3)
        defer { server.stop() }
        let base = "http://127.0.0.1:\(server.port)"
        let browser = try Browser(screenshots: Self.screenshots, width: 1280, height: 1100)

        try browser.open(base + "/")
        try browser.wait("the models table", "return document.querySelector('#models tbody').innerText.includes('segmentation_spleen')")
        let counts = try browser.wait("the datastore counts", "return document.getElementById('dscount').innerText")
        #expect(counts.stringValue?.hasPrefix("3 of 4 images labelled") == true, "\(counts)")
        #expect(try browser.run("return document.querySelector('#models tbody').innerText").stringValue?.contains("untrained") == true)

        // The first image is labelled, so its preview opens with the final label drawn.
        let previewBox = """
            const p = document.getElementById('preview');
            if (!p.complete || !p.naturalWidth || !(p.dataset.query || '').includes(%LABEL%)) return null;
            const r = p.getBoundingClientRect();
            return {l: Math.ceil(r.left), t: Math.ceil(r.top), r: Math.floor(r.right), b: Math.floor(r.bottom)};
            """
        func region(_ v: JSONValue) -> (Int, Int, Int, Int) {
            (v["l"]?.intValue ?? 0, v["t"]?.intValue ?? 0, v["r"]?.intValue ?? 0, v["b"]?.intValue ?? 0)
        }
        let withBox = try browser.wait("the preview with the label", previewBox.replacingOccurrences(of: "%LABEL%", with: "'label=final'"))
        let withLabel = try PixelStats.of(try browser.screenshot("dashboard"), box: region(withBox))
        _ = try browser.run("const s = document.getElementById('label'); s.value = ''; s.dispatchEvent(new Event('change')); return true")
        let withoutBox = try browser.wait("the preview without the label", """
            const p = document.getElementById('preview');
            if (!p.complete || !p.naturalWidth || (p.dataset.query || '').includes('label=')) return null;
            const r = p.getBoundingClientRect();
            return {l: Math.ceil(r.left), t: Math.ceil(r.top), r: Math.floor(r.right), b: Math.floor(r.bottom)};
            """)
        Thread.sleep(forTimeInterval: 0.3)  // the new blob URL decodes after `complete` flips on some builds
        let withoutLabel = try PixelStats.of(try browser.screenshot("preview-no-label"), box: region(withoutBox))
        #expect(withLabel.colored > 200, "overlay pixels: \(withLabel.colored)")
        #expect(withoutLabel.colored < withLabel.colored / 20, "coloured pixels without the label: \(withoutLabel.colored)")
        #expect(withoutLabel.greyLevels > 10, "the slice itself shows: \(withoutLabel.greyLevels) grey levels")

        // A 2-epoch training run: the plot appears and reaches epoch 2 of 2.
        let http = HTTPClient()
        var headers = HTTPHeaders()
        headers.add("Content-Type", "application/json")
        let started = try http.post(URL(string: base + "/train/segmentation_spleen")!, headers: headers,
                                    body: Array(#"{"max_epochs": 2, "val_split": 0.34}"#.utf8))
        #expect(started.status == 200, "\(started.text)")
        // The curve grows while the job runs: points are only added, one per epoch, from train_stats and the
        // job's log lines (so an epoch that ended between two refreshes still gets its point). Each count as
        // first seen; the page polls every 0.5 s while the job runs, but this job may finish within one poll.
        var observed: [Int] = []
        let deadline = Date().addingTimeInterval(120)
        while Date() < deadline {
            let plot = try browser.run("""
                const s = document.querySelector('svg.trainplot');
                return s ? {points: Number(s.dataset.points), done: s.parentElement.innerText.includes('epoch 2 of 2')} : null;
                """)
            if let n = plot["points"]?.intValue, observed.last != n { observed.append(n) }
            if plot["done"] == true { break }
            Thread.sleep(forTimeInterval: 0.2)
        }
        #expect(observed.last == 2 && observed == observed.sorted(), "points of the training curve as they appeared: \(observed)")
        try browser.wait("the model to show trained weights", timeout: 60,
                         "return document.querySelector('#models tbody').innerText.includes('trained ')")
        try browser.screenshot("dashboard-trained")
        // Upstream's API answers 404 for "no job yet" and "no trained weights"; Chromium logs every 404 fetch, so
        // those (which the dashboard shows as "no jobs yet" / "untrained") are not errors here.
        let expected404 = ["/train/?all=true", "/scoring/?all=true", "/batch/infer?all=true", "/model/info/"]
        let errors = browser.severeConsoleMessages().filter { m in
            m.contains(base) && !(m.contains("404") && expected404.contains { m.contains(base + $0) })
        }
        #expect(errors.isEmpty, "console errors about our responses: \(errors)")
    }
}
