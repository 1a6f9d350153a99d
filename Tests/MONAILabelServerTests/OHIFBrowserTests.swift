import DICOM
import DICOMweb
import DICOMwebDatastore
import Foundation
import Imaging
import MONAILabel
import Testing
import TorchCheckpoint
import TorchKit
@testable import MONAILabelServer

/// The OHIF build shipped in the monailabel wheel of `.venv-client`.
var ohifBundle: URL? {
    let lib = repoRoot.appendingPathComponent(".venv-client/lib")
    let pythons = (try? FileManager.default.contentsOfDirectory(atPath: lib.path)) ?? []
    return pythons.sorted().map { lib.appendingPathComponent("\($0)/site-packages/monailabel/endpoints/static/ohif") }
        .first { FileManager.default.fileExists(atPath: $0.appendingPathComponent("index.html").path) }
}

/// OHIF (the build inside the monailabel 0.8.5 wheel) in headless Chromium against our server on a real Orthanc:
/// the study list through `/proxy/dicom/qido`, the series rendered through `/proxy/dicom/wado` (screenshot pixels),
/// and the MONAI Label mode's panel connecting to our server and listing the app's model.
/// Screenshots: `<temp>/monailabel-browser-tests/ohif/`.
@Suite(.serialized,
       .enabled(if: Browser.available, Browser.skipReason),
       .enabled(if: Orthanc.available, "needs /usr/sbin/Orthanc and the DICOMweb plugin (scripts/install-deps.sh)"),
       .enabled(if: ohifBundle != nil, "needs the OHIF build in .venv-client (scripts/make-client-venv.sh)"),
       .enabled(if: PixelStats.available, "needs .venv-client with Pillow (scripts/make-client-venv.sh)"))
struct OHIFBrowserTests {
    static let screenshots = FileManager.default.temporaryDirectory.appendingPathComponent("monailabel-browser-tests/ohif")

    @Test(.timeLimit(.minutes(3)))
    func ohif_studyListShowsTheOrthancStudy_viewerRendersTheSeries_monaiLabelPanelConnects() throws {
        let tmp = TempDir()
        let orthanc = try Orthanc(dir: tmp.url.appendingPathComponent("orthanc"))
        let files = try DicomSeriesWriter.writeCT(volume: DicomWebLiveTests.makeCT(), to: tmp.url.appendingPathComponent("ct"),
                                                  patientID: "MLBROWSER7")
        _ = try orthanc.client().store(instances: try files.map { Array(try Data(contentsOf: $0)) })
        let study = try DicomInstanceInfo.read(files[0]).studyInstanceUID
        let server = try DicomWebLiveTests.startServer(tmp, studies: orthanc.root, cache: tmp.url.appendingPathComponent("cache"),
                                                       extra: ["MONAI_LABEL_OHIF_DIR": try #require(ohifBundle).path])
        defer { server.stop() }
        let base = "http://127.0.0.1:\(server.port)"
        let browser = try Browser(screenshots: Self.screenshots)

        try browser.open("\(base)/ohif/")
        try browser.wait("the study list to show the uploaded patient", timeout: 60,
                         "return document.body && document.body.innerText.includes('MLBROWSER7')")
        try browser.screenshot("study-list")

        try browser.open("\(base)/ohif/viewer?StudyInstanceUIDs=\(study)")
        let (_, s) = try Self.renderedViewport(browser, screenshot: "viewer")
        // A black or uniform viewport means the series did not render: the CT's gradient gives many grey levels.
        #expect(s.greyLevels > 40, "grey levels in the viewport: \(s.greyLevels)")
        // The slice covers a large part of the viewport; overlay text alone stays far below a tenth of it.
        #expect(s.bright * 10 > s.width * s.height, "bright viewport pixels: \(s.bright) of \(s.width)x\(s.height)")
        // The MONAI Label mode: its panel connects to the server named by its cookie (default: this host, port
        // 8000) and lists the app's models from `/info/`.
        _ = try browser.run("document.cookie = 'MONAILABEL_SERVER_URL=\(base)/; path=/'; return true")
        try browser.open("\(base)/ohif/monai-label?StudyInstanceUIDs=\(study)")
        do {
            // The panel connects when its Connect button (beside the server URL) is pressed.
            try browser.wait("the panel's Connect button", timeout: 30, """
                const i = document.getElementById('monailabelServerURL');
                const b = i && i.closest('tr') && i.closest('tr').querySelector('button');
                if (!b) return false;
                b.click();
                return true;
                """)
            try browser.wait("the MONAI Label panel to list the model", timeout: 30,
                             "return document.body && document.body.innerText.includes('segmentation_spleen')")
            try browser.screenshot("monai-label-panel")
        } catch {
            try browser.screenshot("monai-label-panel-failed")
            Issue.record("\(error); console: \(browser.severeConsoleMessages().prefix(10))")
        }

        let errors = Self.consoleErrors(browser, base: base)
        #expect(errors.isEmpty, "console errors about our responses: \(errors)")
    }

    /// The MONAI Label panel's Auto-Segmentation runs the app's model on the Orthanc series (`POST /infer` with
    /// `output=image`, `result_extension=.nrrd`, as the extension asks): the label lands in OHIF's labelmap voxel
    /// for voxel as the server sent it and is drawn over the slice (screenshot pixels). OHIF's "Export DICOM SEG"
    /// then stores it through `/proxy/dicom/wado/studies` (STOW-RS): Orthanc has a SEG in the study, and this
    /// server reads that SEG back as the series' final label, equal to the inference result.
    /// The viewer screenshot is `segmentation.png` (the README's `docs/ohif.png`).
    @Test(.timeLimit(.minutes(6)))
    func ohif_panelRunsTheModel_segmentationShowsInTheViewer_exportedSEGReachesOrthanc() throws {
        let tmp = TempDir()
        let orthanc = try Orthanc(dir: tmp.url.appendingPathComponent("orthanc"))
        let files = try DicomSeriesWriter.writeCT(volume: DicomWebLiveTests.makeCT(), to: tmp.url.appendingPathComponent("ct"),
                                                  patientID: "MLSEG8")
        _ = try orthanc.client().store(instances: try files.map { Array(try Data(contentsOf: $0)) })
        let first = try DicomInstanceInfo.read(files[0])
        let (study, series) = (first.studyInstanceUID, first.seriesInstanceUID)
        let server = try OHIFSpleenFixture.startServer(tmp, orthanc: orthanc, ohif: try #require(ohifBundle))
        defer { server.stop() }
        let base = "http://127.0.0.1:\(server.port)"
        let api = DicomWebLiveTests.Server(port: server.port)

        // What the panel will get: the same request the extension's MonaiLabelClient.infer sends.
        let form = TestClient.multipart(fields: [("params", #"{"result_extension": ".nrrd", "result_dtype": "uint8", "result_compress": false, "restore_label_idx": false}"#)])
        let direct = try api.send("POST", "/infer/segmentation_spleen?image=\(series)&output=image", headers: form.headers, body: form.body)
        #expect(direct.status == 200, "\(direct.text.prefix(300))")
        // Raw voxels: the extension's NRRD reader decodes no other encoding.
        #expect(String(decoding: direct.body.prefix(1024), as: UTF8.self).contains("\nencoding: raw\n"))
        let nrrd = tmp.url.appendingPathComponent("direct.nrrd")
        try Data(direct.body).write(to: nrrd)
        let inferred = try NRRD.read(nrrd)
        let foreground = inferred.data.asFloat().reduce(0) { $0 + ($1 != 0 ? 1 : 0) }
        // The trained model finds the CT's bright box (12x12x18 voxels) and little else.
        #expect((2000...3500).contains(foreground), "foreground voxels of the inference: \(foreground)")

        let browser = try Browser(screenshots: Self.screenshots)
        try browser.open("\(base)/ohif/")
        _ = try browser.run("document.cookie = 'MONAILABEL_SERVER_URL=\(base)/; path=/'; return true")
        try browser.open("\(base)/ohif/monai-label?StudyInstanceUIDs=\(study)")
        let (box, _) = try Self.renderedViewport(browser, screenshot: "monai-label-viewer")
        try browser.wait("the panel's Connect button", timeout: 30, """
            const i = document.getElementById('monailabelServerURL');
            const b = i && i.closest('tr') && i.closest('tr').querySelector('button');
            if (!b) return false;
            b.click();
            return true;
            """)
        // Connecting creates OHIF's labelmap "1" with one segment per label of the app.
        try browser.wait("the panel's labelmap", timeout: 60, """
            const s = window.services && window.services.segmentationService;
            const v = s && s.getLabelmapVolume('1');
            return !!(v && document.querySelector('button[title="Run Segmentation"]'));
            """)
        let before = try PixelStats.of(try browser.screenshot("before-segmentation"), box: box)

        _ = try browser.run("document.querySelector('button[title=\"Run Segmentation\"]').click(); return true")
        let labelled = try browser.wait("the inference result in OHIF's labelmap", timeout: 120, """
            const v = window.services.segmentationService.getLabelmapVolume('1');
            const d = v && v.voxelManager && v.voxelManager.getCompleteScalarDataArray();
            if (!d) return 0;
            let n = 0;
            for (let i = 0; i < d.length; i++) if (d[i]) n++;
            return n;
            """)
        #expect(labelled.intValue == foreground, "labelmap voxels \(labelled) vs the server's \(foreground)")
        // The overlay is drawn on the slice: the viewport gains coloured pixels (polled: rendering follows the data).
        var after = before
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            after = try PixelStats.of(try browser.screenshot("segmentation"), box: box)
            if after.colored > before.colored + 500 { break }
            Thread.sleep(forTimeInterval: 0.5)
        }
        #expect(after.colored > before.colored + 500, "coloured viewport pixels: \(before.colored) before, \(after.colored) after")

        // OHIF's segmentation menu "Export DICOM SEG": its report dialog, then STOW-RS through our proxy.
        _ = try browser.run("window.commandsManager.run('storeSegmentation', {segmentationId: '1'}); return true")
        try browser.wait("the report dialog's Save button", timeout: 30, """
            const b = [...document.querySelectorAll('button')].find(b => b.innerText.trim() === 'Save');
            if (!b) return false;
            b.click();
            return true;
            """)
        var segs: [DicomJSONDataset] = []
        let segDeadline = Date().addingTimeInterval(60)
        while segs.isEmpty && Date() < segDeadline {
            segs = try orthanc.client().searchSeries(filters: [("Modality", "SEG")])
            if segs.isEmpty { Thread.sleep(forTimeInterval: 0.5) }
        }
        #expect(segs.count == 1, "SEG series in Orthanc: \(segs.count)")
        let seg = try #require(segs.first)
        #expect(seg.string(DicomTag.studyInstanceUID) == study)
        try browser.screenshot("seg-exported")

        // The SEG OHIF wrote is this series' final label for the server, voxel for voxel the inference result.
        let label = try api.send("GET", "/datastore/label?label=\(series)&tag=final")
        #expect(label.status == 200, "\(label.text.prefix(300))")
        let stored = try DicomWebLiveTests.readNIfTI(label.body, in: tmp.url)
        #expect(stored.spatialShape == inferred.spatialShape)
        #expect(stored.data.asFloat().map { $0 != 0 } == inferred.data.asFloat().map { $0 != 0 },
                "the SEG from OHIF differs from the inference it was made of")

        let errors = Self.consoleErrors(browser, base: base)
        #expect(errors.isEmpty, "console errors about our responses: \(errors)")
    }

    /// Waits for a viewport canvas, then polls screenshots (written as `screenshot`) until the slice shows in it:
    /// returns the canvas box and the last screenshot's statistics.
    static func renderedViewport(_ browser: Browser, screenshot: String) throws -> ((Int, Int, Int, Int), PixelStats) {
        // The canvas exists and has a size once OHIF has loaded the images.
        let box = try browser.wait("a viewport canvas", timeout: 90, """
            const c = [...document.querySelectorAll('canvas')].filter(c => c.width > 100 && c.height > 100);
            if (!c.length) return null;
            const r = c[0].getBoundingClientRect();
            return {l: Math.round(r.left), t: Math.round(r.top), r: Math.round(r.right), b: Math.round(r.bottom)};
            """)
        let region = (box["l"]?.intValue ?? 0, box["t"]?.intValue ?? 0, box["r"]?.intValue ?? 0, box["b"]?.intValue ?? 0)
        // Rendering finishes shortly after the canvas appears.
        var stats = try PixelStats.of(try browser.screenshot(screenshot), box: region)
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline && !(stats.greyLevels > 40 && stats.bright * 10 > stats.width * stats.height) {
            Thread.sleep(forTimeInterval: 1)
            stats = try PixelStats.of(try browser.screenshot(screenshot), box: region)
        }
        return (region, stats)
    }

    /// Severe console messages about this server's responses, less those upstream's server gives too.
    static func consoleErrors(_ browser: Browser, base: String) -> [String] {
        // The bundle's manifest.json names its icons at `/assets/...` (not `/ohif/assets/...`); upstream 404s them too.
        // The panel probes `GET /train/?check_if_running=true`, which is 404 when no training runs (upstream's answer).
        let expected = ["\(base)/assets/android-chrome-", "\(base)/train/?check_if_running=true"]
        return browser.severeConsoleMessages().filter { m in m.contains(base) && !expected.contains { m.contains($0) } }
    }
}

/// `TrainHarness`'s spleen app with published weights that segment the test CT's bright box: the 4-8-16 UNet
/// trained for a few seconds on boxes of that brightness (after the app's intensity scaling) in empty volumes.
enum OHIFSpleenFixture {
    static let shape = [16, 16, 16]

    /// The trained checkpoint, once per test process.
    static let checkpoint: Result<Data, any Error> = Result { try train() }

    static func train() throws -> Data {
        let app = try JSONValue.parse(TrainHarness.appJSON)
        guard let network = app["models"]?["segmentation_spleen"]?["network"]?.objectValue else {
            throw OrthancError(description: "TrainHarness.appJSON has no segmentation_spleen network")
        }
        Torch.manualSeed(17)
        var rng = EpistemicFixture.SplitMix(state: 5)
        let net = try NetworkFactory.make(network)
        net.train()
        let optimizer = try Adam(parameters: net.parameters(), lr: 0.01)
        let n = shape.reduce(1, *), batch = 4
        for _ in 0..<150 {
            var xs: [Float] = [], ys: [Float] = []
            for _ in 0..<batch {
                // The CT's box (120 HU) scales to 0.8, its air (-1000 HU) to 0; a box of 3 to 10 voxels a side.
                var image = [Float](repeating: 0, count: n), fg = image
                let size = (0..<3).map { _ in rng.int(3..<11) }
                let origin = (0..<3).map { rng.int(0..<(shape[$0] - size[$0] + 1)) }
                let value = 0.7 + 0.2 * rng.unit()
                for x in origin[0]..<origin[0] + size[0] {
                    for y in origin[1]..<origin[1] + size[1] {
                        for z in origin[2]..<origin[2] + size[2] {
                            let i = (x * shape[1] + y) * shape[2] + z
                            image[i] = value
                            fg[i] = 1
                        }
                    }
                }
                for i in 0..<n { image[i] += (rng.unit() - 0.5) * 0.05 }
                xs += image
                ys += fg.map { 1 - $0 } + fg
            }
            let logp = try net(try Tensor(xs, shape: [batch, 1] + shape)).logSoftmax(dim: 1)
            let loss = try logp.mul(try Tensor(ys, shape: [batch, 2] + shape)).sum(dims: [1]).mean().neg()
            try optimizer.zeroGrad()
            try loss.backward()
            try optimizer.step()
        }
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("ohif-spleen-\(UUID().uuidString).pt")
        defer { try? FileManager.default.removeItem(at: url) }
        try Checkpoint.write(stateDict: try net.stateDict().map { (name: $0.0, tensor: $0.1) }, key: "model", extra: [],
                             to: url)
        return try Data(contentsOf: url)
    }

    /// Our server on `orthanc` with the trained app and the OHIF build, as `DicomWebLiveTests.startServer`.
    static func startServer(_ tmp: TempDir, orthanc: Orthanc, ohif: URL) throws -> RunningServer {
        let appDir = tmp.url.appendingPathComponent("app")
        try FileOps.makeDirectory(appDir.appendingPathComponent("model"))
        try Data(TrainHarness.appJSON.utf8).write(to: appDir.appendingPathComponent("app.json"))
        try checkpoint.get().write(to: appDir.appendingPathComponent("model/segmentation_spleen.pt"))
        return try startJobServer(appDir: appDir, studies: orthanc.root, conf: ["models": "segmentation_spleen"], environment: [
            "MONAI_LABEL_DICOMWEB_CACHE_PATH": tmp.url.appendingPathComponent("cache").path,
            "MONAI_LABEL_DICOMWEB_LISTING_WAIT": "60", "MONAI_LABEL_OHIF_DIR": ohif.path,
        ])
    }
}
