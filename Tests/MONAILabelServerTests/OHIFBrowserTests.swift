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
@Suite(.tags(.live), .serialized,
       .enabled(if: Browser.available, Browser.skipReason),
       .enabled(if: Orthanc.available, "needs /usr/sbin/Orthanc and the DICOMweb plugin (scripts/install-deps.sh)"),
       .enabled(if: ohifBundle != nil, "needs the OHIF build in .venv-client (scripts/make-client-venv.sh)"),
       .enabled(if: PixelStats.available, "needs .venv-client with Pillow (scripts/make-client-venv.sh)"))
struct OHIFBrowserTests {
    static let screenshots = FileManager.default.temporaryDirectory.appendingPathComponent("monailabel-browser-tests/ohif")

    @Test(.timeLimit(.minutes(12)))
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
    /// for voxel as the server sent it and is drawn over the slice (screenshot pixels). Saving it as the panel's
    /// client does (`PUT /datastore/label`, OHIF's raw labelmap) puts a SEG in Orthanc that the server serves back
    /// as the final label; OHIF's own DICOM SEG export (STOW-RS through `/proxy/dicom/wado`) puts another there,
    /// which our reader decodes onto the series (this OHIF build mirrors its slices, see below). The viewer
    /// screenshot is `segmentation.png` (the README's `docs/ohif.png`).
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
        let params = #"{"result_extension": ".nrrd", "result_dtype": "uint8", "result_compress": false, "restore_label_idx": false}"#
        let form = TestClient.multipart(fields: [("params", params)])
        let direct = try api.send("POST", "/infer/segmentation_spleen?image=\(series)&output=image", headers: form.headers,
                                  body: form.body)
        #expect(direct.status == 200, "\(direct.text.prefix(300))")
        // Raw voxels: the extension's NRRD reader decodes no other encoding.
        #expect(String(decoding: direct.body.prefix(1024), as: UTF8.self).contains("\nencoding: raw\n"))
        let nrrd = tmp.url.appendingPathComponent("direct.nrrd")
        try Data(direct.body).write(to: nrrd)
        let inferred = try NRRD.read(nrrd)
        let mask = inferred.data.asFloat().map { $0 != 0 }
        let foreground = mask.reduce(0) { $0 + ($1 ? 1 : 0) }
        // The trained model finds the CT's bright box (12x12x18 voxels) and little else.
        let boxMask = DicomWebLiveTests.boxLabel(onto: inferred).data.asFloat().map { $0 != 0 }
        let overlap = zip(boxMask, mask).reduce(0) { $0 + ($1.0 && $1.1 ? 1 : 0) }
        let dice = 2 * Double(overlap) / Double(boxMask.reduce(0) { $0 + ($1 ? 1 : 0) } + foreground)
        #expect(dice > 0.8, "Dice of the inference with the CT's box: \(dice) (\(foreground) voxels)")

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
        // The "investigational use" banner covers the lower viewports: confirm it, as a user would.
        _ = try browser.run("""
            const b = [...document.querySelectorAll('button')].find(b => b.innerText.trim() === 'Confirm and Hide');
            if (b) b.click();
            return true;
            """)
        Thread.sleep(forTimeInterval: 1)
        let before = try browser.screenshot("before-segmentation")

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
        // The label is drawn over the slice: the box's pixels take the segment's colour (polled: rendering follows
        // the data). The box covers about a fifth of the viewport's slice, thousands of pixels at this size.
        var changed = 0
        let deadline = Date().addingTimeInterval(90)
        while Date() < deadline {
            changed = try PixelStats.changed(before, try browser.screenshot("segmentation"), box: box)
            if changed > 1000 { break }
            Thread.sleep(forTimeInterval: 0.5)
        }
        #expect(changed > 1000, "viewport pixels the segmentation changed: \(changed) in \(box)")

        // OHIF's labelmap volume sits on the series as the server's image does (LPS origin of slice 0, slice
        // direction) and holds the label slice for slice: the overlay is where the server put the label.
        let probe = try browser.run("""
            const v = window.services.segmentationService.getLabelmapVolume('1');
            const d = v.voxelManager.getCompleteScalarDataArray(), n = v.dimensions[2], size = d.length / n;
            const slices = [];
            for (let z = 0; z < n; z++) { let c = 0; for (let i = z * size; i < (z + 1) * size; i++) if (d[i]) c++; slices.push(c); }
            return {origin: Array.from(v.origin), normal: Array.from(v.direction).slice(6, 9), slices};
            """)
        let a = inferred.affine
        let lpsOrigin = [-a[0, 3], -a[1, 3], a[2, 3]]
        let k = [-a[0, 2], -a[1, 2], a[2, 2]], kNorm = (k[0] * k[0] + k[1] * k[1] + k[2] * k[2]).squareRoot()
        let ohifOrigin = probe["origin"]?.arrayValue?.compactMap(\.doubleValue) ?? []
        let ohifNormal = probe["normal"]?.arrayValue?.compactMap(\.doubleValue) ?? []
        #expect(ohifOrigin.count == 3 && zip(ohifOrigin, lpsOrigin).allSatisfy { abs($0 - $1) < 1e-3 },
                "OHIF origin \(ohifOrigin) vs \(lpsOrigin)")
        #expect(ohifNormal.count == 3 && zip(ohifNormal, k).allSatisfy { abs($0 - $1 / kNorm) < 1e-3 },
                "OHIF slice direction \(ohifNormal)")
        #expect(probe["slices"]?.arrayValue?.compactMap(\.intValue) == Self.perSlice(inferred),
                "\(probe.compactString().prefix(400))")

        // Saving from the panel: the request the extension's MonaiLabelClient.save_label sends (PUT
        // /datastore/label with `params` and the labelmap's voxels as `label.bin`), made in the page from OHIF's
        // labelmap. The server stores it in Orthanc as a SEG, which it then serves as the final label.
        let saved = try browser.wait("the label saved from the page", timeout: 120, """
            if (window.__mlSave) return window.__mlSave;
            if (window.__mlSaveStarted) return null;
            window.__mlSaveStarted = true;
            const s = window.services.segmentationService;
            const d = s.getLabelmapVolume('1').voxelManager.getCompleteScalarDataArray();
            const segment = Object.values(s.getSegmentation('1').segments).find(x => x && x.label === 'spleen');
            const form = new FormData();
            form.append('params', JSON.stringify({label_info: [{name: 'spleen', idx: segment.segmentIndex}]}));
            form.append('label', new Blob([new Uint8Array(d)]), 'label.bin');
            fetch('\(base)/datastore/label?image=\(series)', {method: 'PUT', body: form})
                .then(async r => { window.__mlSave = {status: r.status, body: await r.text()}; })
                .catch(e => { window.__mlSave = {status: 0, body: String(e)}; });
            return null;
            """)
        #expect(saved["status"]?.intValue == 200, "save_label: \(saved.compactString().prefix(400))")
        let ourSEGs = try Self.waitForSEGs(orthanc, count: 1)
        #expect(ourSEGs.count == 1 && ourSEGs.first?.string(DicomTag.studyInstanceUID) == study,
                "SEG series in Orthanc: \(ourSEGs.count)")
        let label = try api.send("GET", "/datastore/label?label=\(series)&tag=final")
        #expect(label.status == 200, "\(label.text.prefix(300))")
        let stored = try DicomWebLiveTests.readNIfTI(label.body, in: tmp.url)
        #expect(stored.spatialShape == inferred.spatialShape)
        #expect(Self.differing(stored.data, mask) == 0,
                "voxels where the label saved from OHIF's labelmap differs from the inference")

        // OHIF's own "Export DICOM SEG" (the cornerstone-dicom-seg extension's storeSegmentation, which the
        // segmentation panel of other modes calls; this mode shows none): its report dialog, dcmjs's SEG, then
        // STOW-RS to the data source's `/proxy/dicom/wado/studies`, relayed to Orthanc.
        _ = try browser.run("""
            const ds = window.extensionManager.getActiveDataSource()[0];
            window.commandsManager.runCommand('storeSegmentation', {segmentationId: '1', dataSource: ds})
                .then(() => { window.__ohifStore = 'stored'; })
                .catch(e => { window.__ohifStore = 'error: ' + e; });
            return true;
            """)
        try browser.wait("the report dialog's Save button", timeout: 30, """
            const b = [...document.querySelectorAll('button')].find(b => b.innerText.trim() === 'Save');
            if (!b) return false;
            b.click();
            return true;
            """)
        let stored2 = try browser.wait("OHIF's STOW to finish", timeout: 60, "return window.__ohifStore || null")
        #expect(stored2 == "stored", "OHIF's storeSegmentation: \(stored2)")
        let allSEGs = try Self.waitForSEGs(orthanc, count: 2)
        let ohifSEG = allSEGs.compactMap { $0.string(DicomTag.seriesInstanceUID) }
            .first { uid in !ourSEGs.contains { $0.string(DicomTag.seriesInstanceUID) == uid } }
        guard let ohifSEG else {
            try browser.screenshot("seg-export-failed")
            let log = browser.consoleMessages().suffix(30).map { "\($0.level): \($0.message.prefix(300))" }
            Issue.record("OHIF's SEG did not reach Orthanc within 60 s; console: \(log.joined(separator: "\n"))")
            return
        }
        // dcmjs's SEG, decoded by our reader onto the series, is the label the server sent to the panel.
        let instances = try orthanc.client().retrieveSeries(study: study, series: ohifSEG)
        #expect(instances.count == 1)
        let segFile = Self.screenshots.appendingPathComponent("ohif-seg.dcm")
        try Data(try #require(instances.first)).write(to: segFile)
        let decoded = try DicomSeg.read(file: segFile, onto: try DicomSeries.load(files: files).volume, referenceFiles: files)
        #expect(decoded.segments.map(\.name).contains("spleen"), "segments: \(decoded.segments.map(\.name))")
        // This OHIF build's export (dcmjs) gives the frames of this oblique series the positions of the mirrored
        // slices (the frame with OHIF's slice 13 says it is slice 26, though the labelmap above is on the right
        // slices): read as positioned, the SEG is the label mirrored along the slices. Accept that or the label.
        let decodedSlices = Self.perSlice(decoded.label), inferredSlices = Self.perSlice(inferred)
        #expect(decodedSlices == inferredSlices || decodedSlices == inferredSlices.reversed(),
                "OHIF's SEG per slice \(decodedSlices) vs the inference's \(inferredSlices)")
        #expect(decoded.label.data.asFloat().filter { $0 != 0 }.count == foreground)

        let errors = Self.consoleErrors(browser, base: base)
        #expect(errors.isEmpty, "console errors about our responses: \(errors)")
    }

    /// Voxels where `data` is labelled and `mask` is not, or the reverse.
    static func differing(_ data: VoxelData, _ mask: [Bool]) -> Int {
        zip(data.asFloat(), mask).reduce(0) { $0 + (($1.0 != 0) != $1.1 ? 1 : 0) }
    }

    /// Labelled voxels in each slice along the last axis.
    static func perSlice(_ v: Volume) -> [Int] {
        let n = v.spatialShape.last ?? 1
        var counts = [Int](repeating: 0, count: n)
        for (i, x) in v.data.asFloat().enumerated() where x != 0 { counts[i % n] += 1 }
        return counts
    }

    /// Polls Orthanc's QIDO for SEG series until there are `count` (at most 60 s); what it found last.
    static func waitForSEGs(_ orthanc: Orthanc, count: Int) throws -> [DicomJSONDataset] {
        var segs: [DicomJSONDataset] = []
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            segs = try orthanc.client().searchSeries(filters: [("Modality", "SEG")])
            if segs.count >= count { break }
            Thread.sleep(forTimeInterval: 0.5)
        }
        return segs
    }

    /// Waits for a viewport canvas, then polls screenshots (written as `screenshot`) until the slice shows in it:
    /// returns the canvas box and the last screenshot's statistics.
    static func renderedViewport(_ browser: Browser, screenshot: String) throws -> ((Int, Int, Int, Int), PixelStats) {
        // The canvas exists and has a size once OHIF has loaded the images. The largest one inside the window:
        // the study list's thumbnail is a canvas too, and the rendering engine may keep canvases off screen.
        let box = try browser.wait("a viewport canvas", timeout: 90, """
            const v = [...document.querySelectorAll('canvas')].map(c => c.getBoundingClientRect()).filter(r =>
                r.width > 100 && r.height > 100 && r.left >= 0 && r.top >= 0 && r.right <= innerWidth && r.bottom <= innerHeight);
            if (!v.length) return null;
            const r = v.reduce((a, b) => b.width * b.height > a.width * a.height ? b : a);
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
