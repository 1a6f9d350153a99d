import Foundation
import HTTPServer
import MONAILabel
import Testing
@testable import MONAILabelServer

/// `/ohif/` through the real router, over a small synthetic viewer build shaped like upstream's (hashed bundles,
/// a wasm codec, `index.html`, `app-config.js`, pre-compressed siblings).
@Suite(.tags(.router)) struct OHIFRoutesTests {
    final class Fixture {
        let tmp = TempDir()
        let router: HTTPRouter
        var ohif: URL { tmp.url.appendingPathComponent("ohif") }

        init(installed: Bool = true) throws {
            let appDir = tmp.url.appendingPathComponent("app")
            try FileManager.default.createDirectory(at: appDir, withIntermediateDirectories: true)
            try FileManager.default.copyItem(at: repoRoot.appendingPathComponent("sample-apps/radiology/app.json"),
                                             to: appDir.appendingPathComponent("app.json"))
            _ = tmp.write("studies/spleen_00.nii.gz", [1, 2, 3])
            var settings = Settings(appDir: appDir, studies: tmp.url.appendingPathComponent("studies").path,
                                    conf: ["models": "segmentation_spleen"])
            settings.sessions = false
            settings.ohifDir = tmp.url.appendingPathComponent("ohif").path
            if installed {
                _ = tmp.write("ohif/index.html", Array("<!doctype html><title>OHIF</title>".utf8))
                _ = tmp.write("ohif/app-config.js", Array("window.config = {};".utf8))
                _ = tmp.write("ohif/1185.bundle.63d4a7234e943a3bc2ab.js", Array("console.log(1)".utf8))
                _ = tmp.write("ohif/1185.bundle.63d4a7234e943a3bc2ab.js.gz", [0x1f, 0x8b, 8, 0])
                _ = tmp.write("ohif/031089e563a18ada8441.wasm", [0, 0x61, 0x73, 0x6d])
                _ = tmp.write("ohif/assets/favicon.ico", [0, 0, 1, 0])
                _ = tmp.write("secret.txt", Array("outside".utf8))
                try FileManager.default.createSymbolicLink(
                    atPath: tmp.url.appendingPathComponent("ohif/leak.txt").path,
                    withDestinationPath: tmp.url.appendingPathComponent("secret.txt").path)
            }
            let app = try MONAILabelApp(settings: settings, datastore: try LocalDatastore(root: tmp.url.appendingPathComponent("studies")))
            router = makeRouter(app: app, log: .silent)
        }

        func get(_ target: String, _ headers: [(String, String)] = []) throws -> (HTTPResponse, [UInt8]) {
            let req = try HTTPRequest(method: .get, target: target, headers: HTTPHeaders(headers + [("Host", "test")]))
            let resp = router.respond(to: req)
            return (resp, try bodyBytes(resp))
        }
    }

    @Test func ohif_wasm_isApplicationWasm_streamedFromDisk_andImmutable() throws {
        let f = try Fixture()
        let (r, body) = try f.get("/ohif/031089e563a18ada8441.wasm")
        #expect(r.status.code == 200)
        #expect(r.headers["Content-Type"] == "application/wasm")
        #expect(r.headers["Cache-Control"] == "public, max-age=31536000, immutable")
        guard case .file = r.body else { Issue.record("wasm must stream from disk, got \(r.body)"); return }
        #expect(body == [0, 0x61, 0x73, 0x6d])
    }

    @Test func ohif_indexAndAppConfig_areRevalidatedNotCached() throws {
        let f = try Fixture()
        for target in ["/ohif/", "/ohif/app-config.js"] {
            let (r, _) = try f.get(target)
            #expect(r.status.code == 200, "\(target)")
            #expect(r.headers["Cache-Control"] == "no-cache", "\(target)")
            #expect(r.headers["ETag"] != nil, "\(target)")
        }
        #expect(try f.get("/ohif/app-config.js").0.headers["Content-Type"] == "text/javascript; charset=utf-8")
    }

    @Test func ohif_clientRoutes_fallBackToIndexHtml_missingAssetsAre404() throws {
        let f = try Fixture()
        let (viewer, body) = try f.get("/ohif/viewer?StudyInstanceUIDs=1.2.3")
        #expect(viewer.status.code == 200)
        #expect(viewer.headers["Content-Type"] == "text/html; charset=utf-8")
        #expect(String(decoding: body, as: UTF8.self).contains("<title>OHIF</title>"))
        #expect(try f.get("/ohif/local/study/list").0.status.code == 200)
        #expect(try f.get("/ohif/9999.bundle.0000000000000000dead.js").0.status.code == 404)
        #expect(try f.get("/ohif/missing.wasm").0.status.code == 404)
    }

    @Test func ohif_withoutSlash_redirectsToTheAppBase() throws {
        let f = try Fixture()
        let (r, _) = try f.get("/ohif")
        #expect(r.status.code == 307)
        #expect(r.headers["Location"] == "/ohif/")
    }

    @Test func ohif_acceptGzip_sendsPrecompressedSibling_withVary() throws {
        let f = try Fixture()
        let (gz, gzBody) = try f.get("/ohif/1185.bundle.63d4a7234e943a3bc2ab.js", [("Accept-Encoding", "gzip, deflate, br")])
        #expect(gz.headers["Content-Encoding"] == "gzip")
        #expect(gz.headers["Content-Type"] == "text/javascript; charset=utf-8")
        #expect(gz.headers["Vary"]?.contains("Accept-Encoding") == true)
        #expect(gzBody == [0x1f, 0x8b, 8, 0])
        let (plain, plainBody) = try f.get("/ohif/1185.bundle.63d4a7234e943a3bc2ab.js")
        #expect(plain.headers["Content-Encoding"] == nil)
        #expect(plainBody == Array("console.log(1)".utf8))
        let (refused, _) = try f.get("/ohif/1185.bundle.63d4a7234e943a3bc2ab.js", [("Accept-Encoding", "gzip;q=0")])
        #expect(refused.headers["Content-Encoding"] == nil)
        #expect(gz.headers["ETag"] != plain.headers["ETag"])
    }

    @Test func ohif_matchingETag_answers304WithoutBody() throws {
        let f = try Fixture()
        let etag = try #require(try f.get("/ohif/app-config.js").0.headers["ETag"])
        let (r, body) = try f.get("/ohif/app-config.js", [("If-None-Match", etag)])
        #expect(r.status.code == 304)
        #expect(body.isEmpty)
        #expect(try f.get("/ohif/app-config.js", [("If-None-Match", "\"other\"")]).0.status.code == 200)
    }

    @Test func ohif_pathsEscapingTheFolder_are404() throws {
        let f = try Fixture()
        for target in ["/ohif/../secret.txt", "/ohif/%2e%2e/secret.txt", "/ohif/assets/..%2F..%2Fsecret.txt", "/ohif/leak.txt"] {
            let (r, body) = try f.get(target)
            #expect(!String(decoding: body, as: UTF8.self).contains("outside"), "\(target)")
            #expect(r.status.code == 404 || r.headers["Content-Type"] == "text/html; charset=utf-8", "\(target)")
        }
    }

    @Test func ohif_notInstalled_answers404PageSayingHowToInstall_withoutServerPaths() throws {
        let f = try Fixture(installed: false)
        let (r, body) = try f.get("/ohif/")
        let text = String(decoding: body, as: UTF8.self)
        #expect(r.status.code == 404)
        #expect(r.headers["Content-Type"] == "text/html; charset=utf-8")
        #expect(text.contains("scripts/install-ohif.sh"))
        #expect(text.contains("MONAI_LABEL_OHIF_DIR"))
        #expect(!text.contains(f.tmp.url.path))
    }
}
