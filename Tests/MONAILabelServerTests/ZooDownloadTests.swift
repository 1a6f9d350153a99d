import Foundation
import MONAILabel
import Testing
import TestSupport
@testable import MONAILabelServer

#if canImport(Glibc)
import Glibc
#endif

@Suite(.tags(.live), .serialized) struct ZooDownloadTests {
    static let bundles = repoRoot.appendingPathComponent("Tests/Fixtures/bundles")
    /// scripts/fixtures/make_bundle_zip.py's zip of the spleen bundle fixture (base folder, deflated).
    static let zipURL = bundles.appendingPathComponent("spleen_ct_segmentation_v0.5.4.zip")
    static var zip: [UInt8] { (try? Array(Data(contentsOf: zipURL))) ?? [] }
    static let monaiHostingZip = "/spleen_ct_segmentation/versions/0.5.4/files/spleen_ct_segmentation_v0.5.4.zip"

    static func sha256(_ bytes: [UInt8]) throws -> String {
        let tmp = TempDir()
        return try Checksum.sha256Hex(tmp.write("x", bytes).path)
    }

    static func downloader(_ env: [String: String], conf: [String: String] = [:], _ lines: LogLines) throws -> ZooDownloader {
        ZooDownloader(settings: try ZooSettings(conf: conf, environment: env), log: { lines.append($0) })
    }

    static func message(_ body: () throws -> Void) -> String {
        do {
            try body()
            return ""
        } catch { return "\(error)" }
    }

    /// A copy of sample-apps/monaibundle and a studies folder holding the pipeline CT as `ct.nii.gz`.
    static func appFolders(_ tmp: TempDir) throws -> (app: URL, studies: URL) {
        let app = tmp.url.appendingPathComponent("monaibundle")
        let studies = tmp.url.appendingPathComponent("studies")
        try FileManager.default.createDirectory(at: app, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: studies, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: repoRoot.appendingPathComponent("sample-apps/monaibundle/app.json"),
                                         to: app.appendingPathComponent("app.json"))
        try FileManager.default.copyItem(at: Fixtures.shared.appendingPathComponent("fixtures/pipeline/ct_lps_aniso.nii.gz"),
                                         to: studies.appendingPathComponent("ct.nii.gz"))
        return (app, studies)
    }

    @Test func settings_followUpstreamsPrecedence_andRefuseUnknownSources() throws {
        let defaults = try ZooSettings(conf: [:], environment: [:])
        #expect(defaults.source == "monaihosting")
        #expect(defaults.repo == "Project-MONAI/model-zoo/hosting_storage_v1")
        #expect(try ZooSettings(conf: [:], environment: ["BUNDLE_DOWNLOAD_SRC": "ngc"]).source == "ngc")
        #expect(try ZooSettings(conf: [:], environment: ["BUNDLE_DOWNLOAD_SRC": "ngc", "MONAI_ZOO_SOURCE": "github"]).source == "github")
        #expect(try ZooSettings(conf: ["zoo_source": "ngc"], environment: ["MONAI_ZOO_SOURCE": "github"]).source == "ngc")
        #expect(try ZooSettings(conf: ["auth_token": "a"], environment: ["MONAI_ZOO_AUTH_TOKEN": "b"]).authToken == "a")
        #expect(Self.message { _ = try ZooSettings(conf: ["zoo_source": "huggingface_hub"], environment: [:]) }
            .contains("'huggingface_hub' (--conf zoo_source / MONAI_ZOO_SOURCE / BUNDLE_DOWNLOAD_SRC) is not supported"))
        #expect(Self.message { _ = try ZooSettings(conf: ["zoo_source": "github", "zoo_repo": "owner/repo"], environment: [:]) }
            .contains("must be owner/repo/release_tag"))
        #expect(Self.message { _ = try ZooSettings(conf: [:], environment: ["MONAI_ZOO_BASE_URL": "ftp://x"]) }
            .contains("MONAI_ZOO_BASE_URL must be an http(s) URL"))
        #expect(ZooBundle(entry: "spleen_ct_segmentation_v0.5.4") == ZooBundle(entry: "spleen_ct_segmentation_v0.5.4"))
        let versioned = ZooBundle(entry: "spleen_ct_segmentation_v0.5.4")
        #expect(versioned.name == "spleen_ct_segmentation" && versioned.version == "0.5.4")
        #expect(ZooBundle(entry: "spleen_ct_segmentation").version == nil)
        #expect(ZooBundle(entry: "brats_v2").version == nil)
        #expect(ZooDownloader.versionOrder("0.9.0", "0.10.0"))
    }

    @Test func monaihosting_latestVersion_downloadsMONAIsURL_andExtractsTheBundle() throws {
        let server = try DownloadTestServer(routes: [
            "/spleen_ct_segmentation": Array(#"{"model": {"latestVersionIdStr": "0.5.4"}}"#.utf8),
            Self.monaiHostingZip: Self.zip,
        ])
        defer { server.stop() }
        let tmp = TempDir()
        let lines = LogLines()
        let folder = try Self.downloader(["MONAI_ZOO_BASE_URL": server.base], lines)
            .install(ZooBundle(entry: "spleen_ct_segmentation"), modelDir: tmp.url)
        #expect(folder.lastPathComponent == "spleen_ct_segmentation")
        #expect(server.paths == ["/spleen_ct_segmentation", Self.monaiHostingZip])
        let model = try Data(contentsOf: folder.appendingPathComponent("models/model.pt"))
        #expect(Array(model) == Array(try Data(contentsOf: Self.bundles.appendingPathComponent("spleen_ct_segmentation/models/model.pt"))))
        // Neither the archive nor a temporary folder is left beside the bundle.
        #expect(FileOps.listDirectory(tmp.url.path) == ["spleen_ct_segmentation"])
        #expect(lines.all.contains { $0.contains("extracted into model/spleen_ct_segmentation") }, "\(lines.all)")
        // A bundle outside upstream's maintained list is refused on this source.
        let refused = Self.message {
            try Self.downloader(["MONAI_ZOO_BASE_URL": server.base], lines).install(ZooBundle(entry: "my_bundle"), modelDir: tmp.url)
        }
        #expect(refused.contains("'my_bundle' is not a bundle MONAI Label supports from the zoo"), "\(refused)")
    }

    /// NGC's archives hold the bundle's folders at their top (no base folder): they are extracted into model/<name>.
    @Test func ngc_newestVersion_usesTheMonaiPrefixedURL_andExtractsATopLevelBundle() throws {
        let server = try DownloadTestServer(routes: [
            "/monai_spleen_ct_segmentation/versions/": Array(#"""
                {"modelVersions": [{"versionId": "0.5.4", "createdDate": "2024-06-01T00:00:00.000Z"},
                                   {"versionId": "0.5.3", "createdDate": "2024-01-01T00:00:00.000Z"}]}
                """#.utf8),
            "/monai_spleen_ct_segmentation/versions/0.5.4/zip":
                Array(try Data(contentsOf: Self.bundles.appendingPathComponent("spleen_ct_segmentation_ngc_configs.zip"))),
        ])
        defer { server.stop() }
        let tmp = TempDir()
        try Self.downloader(["MONAI_ZOO_BASE_URL": server.base, "BUNDLE_DOWNLOAD_SRC": "ngc"], LogLines())
            .install(ZooBundle(entry: "spleen_ct_segmentation"), modelDir: tmp.url)
        #expect(server.paths == ["/monai_spleen_ct_segmentation/versions/", "/monai_spleen_ct_segmentation/versions/0.5.4/zip"])
        let folder = tmp.url.appendingPathComponent("spleen_ct_segmentation")
        #expect(FileOps.isRegularFile(folder.appendingPathComponent("configs/inference.json").path))
        // The private temporary folder became the bundle: it is readable like any other.
        let mode = try FileManager.default.attributesOfItem(atPath: folder.path)[.posixPermissions] as? Int
        #expect(mode == 0o755)
        #expect(FileOps.listDirectory(tmp.url.path) == ["spleen_ct_segmentation"])
    }

    static func githubRelease(digest: String) -> [UInt8] {
        Array(#"""
            {"tag_name": "hosting_storage_v1", "assets": [
              {"name": "spleen_ct_segmentation_v0.5.4.zip", "digest": "sha256:\#(digest)"},
              {"name": "spleen_ct_segmentation_v0.10.0.zip", "digest": null},
              {"name": "other_bundle_v9.9.9.zip"}]}
            """#.utf8)
    }

    @Test func github_versionedName_checksTheAssetDigest_sendsTheToken_andKeepsItsOwnFolder() throws {
        let release = "/repos/Project-MONAI/model-zoo/releases/tags/hosting_storage_v1"
        let asset = "/Project-MONAI/model-zoo/releases/download/hosting_storage_v1/spleen_ct_segmentation_v0.5.4.zip"
        let server = try DownloadTestServer(routes: [release: Self.githubRelease(digest: try Self.sha256(Self.zip)), asset: Self.zip])
        defer { server.stop() }
        let tmp = TempDir()
        let lines = LogLines()
        let env = ["MONAI_ZOO_BASE_URL": server.base, "MONAI_ZOO_SOURCE": "github", "MONAI_ZOO_AUTH_TOKEN": "tok123"]
        let folder = try Self.downloader(env, lines).install(ZooBundle(entry: "spleen_ct_segmentation_v0.5.4"), modelDir: tmp.url)
        #expect(folder.lastPathComponent == "spleen_ct_segmentation_v0.5.4")
        #expect(server.paths == [release, asset])
        #expect(server.requests.first?.contains("Authorization: Bearer tok123\r\n") == true)
        #expect(server.requests.last?.contains("Authorization") == false)
        #expect(lines.all.contains { $0.contains("SHA-256 checked") }, "\(lines.all)")
        // Without a version: the newest by number (0.10.0 after 0.5.4), here missing on the server.
        let latest = Self.message {
            try Self.downloader(env, lines).install(ZooBundle(entry: "spleen_ct_segmentation"), modelDir: tmp.url)
        }
        #expect(server.paths.last == "/Project-MONAI/model-zoo/releases/download/hosting_storage_v1/spleen_ct_segmentation_v0.10.0.zip")
        #expect(latest.contains("HTTP 404"), "\(latest)")
        let unknown = Self.message {
            try Self.downloader(env, lines).install(ZooBundle(entry: "spleen_ct_segmentation_v0.1.0"), modelDir: tmp.url)
        }
        #expect(unknown.contains("has no spleen_ct_segmentation_v0.1.0.zip; versions: 0.5.4, 0.10.0"), "\(unknown)")
    }

    @Test func github_checksumMismatch_installsNothing_andKeepsNoDownload() throws {
        let release = "/repos/Project-MONAI/model-zoo/releases/tags/hosting_storage_v1"
        let asset = "/Project-MONAI/model-zoo/releases/download/hosting_storage_v1/spleen_ct_segmentation_v0.5.4.zip"
        let server = try DownloadTestServer(routes: [release: Self.githubRelease(digest: String(repeating: "0", count: 64)), asset: Self.zip])
        defer { server.stop() }
        let tmp = TempDir()
        let text = Self.message {
            try Self.downloader(["MONAI_ZOO_BASE_URL": server.base, "MONAI_ZOO_SOURCE": "github"], LogLines())
                .install(ZooBundle(entry: "spleen_ct_segmentation_v0.5.4"), modelDir: tmp.url)
        }
        #expect(text.contains("checksum mismatch"), "\(text)")
        #expect(FileOps.listDirectory(tmp.url.path).isEmpty)
    }

    @Test func startServer_missingBundles_areDownloadedAfterACut_extracted_andServeInference() throws {
        let server = try DownloadTestServer(routes: [
            "/spleen_ct_segmentation": Array(#"{"model": {"latestVersionIdStr": "0.5.4"}}"#.utf8),
            Self.monaiHostingZip: Self.zip,
        ], cutResponses: 1, cutAfter: 100_000)
        defer { server.stop() }
        let tmp = TempDir()
        let (app, studies) = try Self.appFolders(tmp)
        // As startJobServer, but logging at info level: the download's lines are info.
        let running = try ServerMain.start(
            ServerOptions(appDir: app.path, studies: studies.path,
                          conf: ["models": "spleen_ct_segmentation, spleen_ct_segmentation_v0.5.4", "auth_token": "tok-secret-42"],
                          host: "127.0.0.1", port: 0, logLevel: .info),
            environment: ["MONAI_LABEL_SESSIONS": "false", "MONAI_LABEL_TASK_RUNNER": monailabelBinary.path,
                          "MONAI_LABEL_TORCH_THREADS": "1", "MONAI_LABEL_INFER_WORKERS": "0", "MONAI_ZOO_BASE_URL": server.base])
        defer { running.stop() }
        // The cut download resumed where it stopped; the versioned name needs no version look-up.
        let zipRequests = server.requests.filter { $0.hasPrefix("GET \(Self.monaiHostingZip) ") }
        #expect(zipRequests.count == 3)
        #expect(zipRequests.dropFirst().first?.contains("Range: bytes=100000-\r\n") == true, "\(zipRequests)")
        #expect(server.paths.filter { $0 == "/spleen_ct_segmentation" }.count == 1)
        #expect(FileOps.isDirectory(app.appendingPathComponent("model/spleen_ct_segmentation/configs").path))
        #expect(FileOps.isDirectory(app.appendingPathComponent("model/spleen_ct_segmentation_v0.5.4/configs").path))
        #expect(running.app.inferTasks.keys == ["spleen_ct_segmentation", "spleen_ct_segmentation_v0.5.4"])
        let (status, body) = try curl(running.port, "POST", "/infer/spleen_ct_segmentation?image=ct&output=json", json: "{}")
        #expect(status == 200, "\(String(decoding: body, as: UTF8.self))")
        let log = try String(contentsOf: app.appendingPathComponent("logs/app.log"), encoding: .utf8)
        #expect(log.contains("+++ Adding Bundle from Zoo: spleen_ct_segmentation"), "\(log)")
        #expect(log.contains("resuming at 100000 bytes"))
        #expect(log.contains("Downloading spleen_ct_segmentation_v0.5.4.zip: 100%"))
        #expect(log.contains("(key: \"auth_token\", value: \"*****\")") && !log.contains("tok-secret-42"))
    }

    @Test func startServer_offline_stopsWithAMessageNamingTheOfflineImport() throws {
        let closed = try DownloadTestServer(routes: [:])
        closed.stop()
        let tmp = TempDir()
        let (app, studies) = try Self.appFolders(tmp)
        let text = Self.message {
            let s = try startJobServer(appDir: app, studies: studies.path, conf: ["models": "spleen_ct_segmentation"],
                                       environment: ["MONAI_ZOO_BASE_URL": closed.base])
            s.stop()
        }
        #expect(text.contains("bundle 'spleen_ct_segmentation' is not in the app's model folder and could not be downloaded"), "\(text)")
        #expect(text.contains("(offline?)"))
        #expect(text.contains("monailabel models --import <zip> --app"))
    }

    @Test func startServer_hostileZipFromTheZoo_isRefused_andNothingIsInstalled() throws {
        let evil = Self.renamed("spleen_ct_segmentation/models/model.pt", to: String(repeating: "../", count: 12) + "xx")
        let server = try DownloadTestServer(routes: [
            "/spleen_ct_segmentation": Array(#"{"model": {"latestVersionIdStr": "0.5.4"}}"#.utf8), Self.monaiHostingZip: evil,
        ])
        defer { server.stop() }
        let tmp = TempDir()
        let (app, studies) = try Self.appFolders(tmp)
        let text = Self.message {
            let s = try startJobServer(appDir: app, studies: studies.path, conf: ["models": "spleen_ct_segmentation"],
                                       environment: ["MONAI_ZOO_BASE_URL": server.base])
            s.stop()
        }
        #expect(text.contains("spleen_ct_segmentation_v0.5.4.zip is refused: ../../"), "\(text)")
        #expect(text.contains("'..' component (path traversal)"))
        #expect(FileOps.listDirectory(app.appendingPathComponent("model").path).isEmpty)
        #expect(!FileManager.default.fileExists(atPath: tmp.url.appendingPathComponent("xx").path))
    }

    /// The fixture zip with every occurrence of `name` (same length) replaced, so headers stay consistent.
    static func renamed(_ name: String, to other: String) -> [UInt8] {
        precondition(name.utf8.count == other.utf8.count)
        var bytes = zip
        let a = Array(name.utf8), b = Array(other.utf8)
        var i = 0
        while i + a.count <= bytes.count {
            if bytes[i..<(i + a.count)].elementsEqual(a) {
                bytes.replaceSubrange(i..<(i + a.count), with: b)
                i += a.count
            } else {
                i += 1
            }
        }
        return bytes
    }

    @Test func modelsImport_bundleZip_installsIt_refusesHostileAndDuplicateArchivesLeavingNothing() throws {
        let tmp = TempDir()
        let (app, _) = try Self.appFolders(tmp)
        let model = app.appendingPathComponent("model")
        let (status, out) = try runProcess(monailabelBinary, ["models", "--import", Self.zipURL.path, "--app", app.path])
        #expect(status == 0, "\(out)")
        #expect(out.contains("spleen_ct_segmentation_v0.5.4.zip -> model/spleen_ct_segmentation"), "\(out)")
        #expect(FileOps.isRegularFile(model.appendingPathComponent("spleen_ct_segmentation/models/model.pt").path))
        let (again, againOut) = try runProcess(monailabelBinary, ["models", "--import", Self.zipURL.path, "--app", app.path])
        #expect(again == 1 && againOut.contains("model/spleen_ct_segmentation already exists"), "\(againOut)")

        // Path traversal: the model file's name becomes ../../...
        let member = "spleen_ct_segmentation/models/model.pt"
        let evil = String(repeating: "../", count: 12) + "xx"
        let traversal = tmp.write("traversal.zip", Self.renamed(member, to: evil))
        // A damaged member: the CRC check fails while extracting, after other members were written.
        var damaged = Self.zip
        damaged[damaged.count / 2] ^= 0xFF
        let damagedURL = tmp.write("damaged.zip", damaged)
        // A zip of something else than a bundle.
        let other = tmp.write("other.zip", Self.renamed("spleen_ct_segmentation/configs/", to: "spleen_ct_segmentation/notes_x/"))
        for (url, expected) in [(traversal, "'..' component"), (damagedURL, "is refused: spleen_ct_segmentation/models/model.pt"),
                                (other, "holds no MONAI bundle")] {
            try FileManager.default.removeItem(at: model.appendingPathComponent("spleen_ct_segmentation"))
            let (code, text) = try runProcess(monailabelBinary, ["models", "--import", url.path, "--app", app.path])
            #expect(code == 1, "\(url.lastPathComponent): \(text)")
            #expect(text.contains(expected), "\(url.lastPathComponent): \(text)")
            #expect(FileOps.listDirectory(model.path).isEmpty, "\(FileOps.listDirectory(model.path))")
            try FileManager.default.copyItem(at: Self.bundles.appendingPathComponent("spleen_ct_segmentation"),
                                             to: model.appendingPathComponent("spleen_ct_segmentation"))
        }
        #expect(!FileManager.default.fileExists(atPath: tmp.url.appendingPathComponent("xx").path))
        // An app that does not serve bundles is not given one.
        let radiology = tmp.url.appendingPathComponent("radiology")
        try FileManager.default.createDirectory(at: radiology, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: repoRoot.appendingPathComponent("sample-apps/radiology/app.json"),
                                         to: radiology.appendingPathComponent("app.json"))
        let (code, text) = try runProcess(monailabelBinary, ["models", "--import", Self.zipURL.path, "--app", radiology.path])
        #expect(code == 1 && text.contains("radiology does not serve MONAI bundles"), "\(text)")
        #expect(!FileManager.default.fileExists(atPath: radiology.appendingPathComponent("model/spleen_ct_segmentation").path))
    }
}
