import Foundation
import MONAILabel
import Testing
import TestSupport
@testable import MONAILabelServer

#if canImport(Glibc)
import Glibc
#endif

/// Lines a fetcher logged.
final class LogLines: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [String] = []
    func append(_ l: String) {
        lock.lock()
        lines.append(l)
        lock.unlock()
    }
    var all: [String] {
        lock.lock()
        defer { lock.unlock() }
        return lines
    }
}

@Suite(.tags(.live), .serialized) struct PretrainedFetchTests {
    /// The fixture checkpoint's bytes (the fetcher does not look inside them).
    static let fixture: [UInt8] = (0..<300_000).map { UInt8(truncatingIfNeeded: ($0 &* 2_654_435_761) >> 13) }

    static func sha256(_ bytes: [UInt8]) throws -> String {
        let tmp = TempDir()
        let f = tmp.write("x", bytes)
        return try Checksum.sha256Hex(f.path)
    }

    /// A port nothing listens on.
    static func closedPort() throws -> Int {
        let s = try DownloadTestServer(body: [])
        s.stop()
        return s.port
    }

    @Test func fetch_cutConnection_resumesWithARangeRequest_checksTheDigest_andLogsProgress() throws {
        let server = try DownloadTestServer(body: Self.fixture, cutResponses: 1, cutAfter: 100_000)
        defer { server.stop() }
        let tmp = TempDir()
        let dest = tmp.url.appendingPathComponent("pretrained_x.pt")
        let lines = LogLines()
        let d = PretrainedDownload(model: "x", url: URL(string: "http://127.0.0.1:\(server.port)/w/x.pt")!,
                                   destination: dest, sha256: try Self.sha256(Self.fixture))
        #expect(try PretrainedFetcher(log: { lines.append($0) }).fetch(d) == 300_000)
        #expect(Array(try Data(contentsOf: dest)) == Self.fixture)
        #expect(!FileManager.default.fileExists(atPath: dest.path + ".part"))
        let heads = server.requests
        #expect(heads.count == 2)
        #expect(!(heads.first ?? "").contains("Range:"))
        #expect(heads.last?.contains("Range: bytes=100000-\r\n") == true, "\(heads)")
        #expect(lines.all.contains { $0.contains("interrupted") && $0.contains("resuming at 100000 bytes") }, "\(lines.all)")
        #expect(lines.all.contains { $0.contains("100% (300000 of 300000 bytes)") }, "\(lines.all)")
    }

    @Test func fetch_checksumMismatch_failsAndKeepsNeitherFileNorPart() throws {
        let server = try DownloadTestServer(body: Self.fixture)
        defer { server.stop() }
        let tmp = TempDir()
        let dest = tmp.url.appendingPathComponent("pretrained_x.pt")
        let d = PretrainedDownload(model: "x", url: URL(string: "http://127.0.0.1:\(server.port)/w/x.pt")!,
                                   destination: dest, sha256: String(repeating: "0", count: 64))
        let error = #expect(throws: (any Error).self) {
            try PretrainedFetcher(log: { _ in }).fetch(d)
        }
        #expect(error.map { "\($0)".contains("checksum mismatch") } == true, "\(String(describing: error))")
        #expect(!FileManager.default.fileExists(atPath: dest.path))
        #expect(!FileManager.default.fileExists(atPath: dest.path + ".part"))
        #expect(server.requests.count == 1)
    }

    @Test func fetch_offline_failsAtOnceSayingSo() throws {
        let tmp = TempDir()
        let d = PretrainedDownload(model: "x", url: URL(string: "http://127.0.0.1:\(try Self.closedPort())/w/x.pt")!,
                                   destination: tmp.url.appendingPathComponent("p.pt"), sha256: nil)
        let lines = LogLines()
        let error = #expect(throws: (any Error).self) {
            try PretrainedFetcher(log: { lines.append($0) }).fetch(d)
        }
        #expect(error.map { "\($0)".contains("offline") } == true, "\(String(describing: error))")
        // Not retried: no "resuming" line.
        #expect(lines.all.isEmpty, "\(lines.all)")
    }

    @Test func fetch_notFound_isNotRetried() throws {
        let server = try DownloadTestServer(body: Self.fixture)
        defer { server.stop() }
        let tmp = TempDir()
        let d = PretrainedDownload(model: "x", url: URL(string: "http://127.0.0.1:\(server.port)/w/missing.pt")!,
                                   destination: tmp.url.appendingPathComponent("p.pt"), sha256: nil)
        let error = #expect(throws: (any Error).self) {
            try PretrainedFetcher(log: { _ in }).fetch(d)
        }
        #expect(error.map { "\($0)".contains("HTTP 404") } == true, "\(String(describing: error))")
        #expect(server.requests.count == 1)
    }

    /// An app folder with the radiology app.json and an empty studies folder.
    static func appFolders(_ tmp: TempDir) throws -> (app: URL, studies: URL) {
        let app = tmp.url.appendingPathComponent("radiology")
        let studies = tmp.url.appendingPathComponent("studies")
        try FileManager.default.createDirectory(at: app, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: studies, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: repoRoot.appendingPathComponent("sample-apps/radiology/app.json"),
                                         to: app.appendingPathComponent("app.json"))
        return (app, studies)
    }

    @Test func startServer_fetchesMissingPretrainedWeights_fromMONAI_LABEL_PRETRAINED_PATH() throws {
        let weights = try DownloadTestServer(body: Self.fixture)
        defer { weights.stop() }
        let tmp = TempDir()
        let (app, studies) = try Self.appFolders(tmp)
        let server = try startJobServer(
            appDir: app, studies: studies.path, conf: ["models": "segmentation_spleen", "use_pretrained_model": "true"],
            environment: ["MONAI_LABEL_PRETRAINED_PATH": "http://127.0.0.1:\(weights.port)/releases/pretrained",
                          "MONAI_LABEL_INFER_WORKERS": "0"])
        defer { server.stop() }
        #expect(weights.requests.first?.hasPrefix("GET /releases/pretrained/radiology_segmentation_unet_spleen_total_seg.pt ") == true)
        let file = app.appendingPathComponent("model/pretrained_segmentation_spleen.pt")
        #expect(Array(try Data(contentsOf: file)) == Self.fixture)
        #expect(server.app.untrainedModels.isEmpty)
    }

    @Test func startServer_offline_startsUntrained_andLogsBoth_andAnUnknownConfKey() throws {
        let tmp = TempDir()
        let (app, studies) = try Self.appFolders(tmp)
        let server = try startJobServer(
            appDir: app, studies: studies.path,
            conf: ["models": "segmentation_spleen", "use_pretrained_model": "true", "skip_scorring": "true"],
            environment: ["MONAI_LABEL_PRETRAINED_PATH": "http://127.0.0.1:\(try Self.closedPort())/p",
                          "MONAI_LABEL_INFER_WORKERS": "0"])
        defer { server.stop() }
        #expect(server.app.untrainedModels == ["segmentation_spleen"])
        let log = try String(contentsOf: app.appendingPathComponent("logs/app.log"), encoding: .utf8)
        #expect(log.contains("Pretrained weights for segmentation_spleen could not be fetched"), "\(log)")
        #expect(log.contains("offline"))
        #expect(log.contains("model segmentation_spleen has no trained weights"))
        #expect(log.contains("--conf skip_scorring is not a setting of this app and is ignored"))
    }

    @Test func modelsImport_installsUnderTheLocalName_refusesUnknownNamesAndBadDigests() throws {
        let tmp = TempDir()
        let (app, _) = try Self.appFolders(tmp)
        let offline = tmp.url.appendingPathComponent("offline")
        try FileManager.default.createDirectory(at: offline, withIntermediateDirectories: true)
        let spleen = tmp.write("offline/radiology_segmentation_unet_spleen_total_seg.pt", Self.fixture)
        _ = tmp.write("offline/radiology_deepedit_unetr_multilabel.pt", [1, 2, 3])
        _ = tmp.write("offline/notes.txt", [1])
        // A file by its upstream name, through the CLI.
        let (status, out) = try runProcess(monailabelBinary, ["models", "--import", spleen.path, "--app", app.path])
        #expect(status == 0, "\(out)")
        #expect(out.contains("-> model/pretrained_segmentation_spleen.pt (segmentation_spleen)"))
        #expect(Array(try Data(contentsOf: app.appendingPathComponent("model/pretrained_segmentation_spleen.pt"))) == Self.fixture)
        let (_, listed) = try runProcess(monailabelBinary, ["models", "--app", app.path])
        #expect(listed.contains("segmentation_spleen: model/pretrained_segmentation_spleen.pt (installed)"), "\(listed)")
        #expect(listed.contains("deepedit: model/pretrained_deepedit_dynunet.pt (missing)"))
        // A folder: every known file in it.
        let lines = try PretrainedImport.run(source: offline, appDir: app)
        #expect(lines.count == 2)
        #expect(FileManager.default.fileExists(atPath: app.appendingPathComponent("model/pretrained_deepedit_unetr.pt").path))
        #expect(throws: MONAILabelError.self) {
            try PretrainedImport.run(source: offline.appendingPathComponent("notes.txt"), appDir: app)
        }
        // A known digest is checked.
        let appJSON = app.appendingPathComponent("app.json")
        var text = try String(contentsOf: appJSON, encoding: .utf8)
        text = text.replacingOccurrences(
            of: #""download": "radiology_segmentation_unet_spleen_total_seg.pt""#,
            with: #""download": "radiology_segmentation_unet_spleen_total_seg.pt", "sha256": "\#(String(repeating: "a", count: 64))""#)
        try text.write(to: appJSON, atomically: true, encoding: .utf8)
        let (bad, badOut) = try runProcess(monailabelBinary, ["models", "--import", spleen.path, "--app", app.path])
        #expect(bad != 0)
        #expect(badOut.contains("SHA-256"), "\(badOut)")
    }
}
