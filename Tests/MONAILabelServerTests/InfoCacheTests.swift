import Foundation
import HTTPServer
import Testing
import TestSupport
import WebToken
@testable import DICOMwebDatastore
@testable import MONAILabel
@testable import MONAILabelServer

/// `/info/` is served from pre-serialised bytes. After every kind of event that changes the document, the served
/// body must equal one built afresh by `app.info()` (today's bytes), and the change must show.
struct InfoCacheTests {
    /// Waits until the training planner has a plan for the datastore's current state (it runs in the background
    /// after a change), so a served and a fresh document cannot straddle its completion.
    private func settle(_ app: MONAILabelApp) throws {
        _ = app.info()
        let st = app.datastore.status()
        let deadline = Date().addingTimeInterval(30)
        while app.training.planKey != "\(st.total)/\(st.completed)" && Date() < deadline { usleep(20_000) }
        try #require(app.training.planKey == "\(st.total)/\(st.completed)", "the planner finished")
    }

    /// GETs `/info/`, checks it against a freshly built document and returns it parsed.
    private func servedEqualsFresh(_ c: TestClient, _ event: String) throws -> JSONValue {
        try settle(c.app)
        let served = try c.get("/info/")
        #expect(served.status == 200)
        #expect(served.headers["Content-Type"] == "application/json")
        #expect(served.text == String(decoding: c.app.info().compactBytes(), as: UTF8.self), "after \(event)")
        return try #require(served.json)
    }

    @Test func info_afterEachKindOfEvent_cachedBodyEqualsFreshlyBuilt() throws {
        let c = try TestClient()
        var info = try servedEqualsFresh(c, "start-up")
        #expect(info["datastore"]?["completed"] == 1)
        #expect(info["models"]?["segmentation_spleen"]?["weights"] == "untrained (random initialisation)")
        #expect(info["trainers"]?["segmentation_spleen"]?["planner"]?["sampled_images"] != nil)

        // A datastore write through the API, then a deletion.
        let saved = try c.sendForm(.put, "/datastore/label?image=spleen_01", files: [("label", "l.nii.gz", [1])])
        #expect(saved.status == 200)
        info = try servedEqualsFresh(c, "a label save")
        #expect(info["datastore"]?["completed"] == 2)
        #expect(try c.send(.delete, "/datastore/label?id=spleen_00&tag=final").status == 200)
        info = try servedEqualsFresh(c, "a label deletion")
        #expect(info["datastore"]?["completed"] == 1)

        // Published weights appear (the path `PUT /model` and training write), then vanish.
        let published = c.app.modelDir.appendingPathComponent("segmentation_spleen.pt")
        try FileOps.atomicWrite([1, 2, 3], to: published)
        info = try servedEqualsFresh(c, "published weights")
        #expect(info["models"]?["segmentation_spleen"]?["weights"] == "segmentation_spleen.pt")
        try FileOps.removeFile(published)
        info = try servedEqualsFresh(c, "removed weights")
        #expect(info["models"]?["segmentation_spleen"]?["weights"] == "untrained (random initialisation)")

        // Training stats, written and then rewritten with a document of the same size.
        let stats = c.app.modelDir.appendingPathComponent("segmentation_spleen/train_stats.json")
        try FileOps.makeDirectory(stats.deletingLastPathComponent())
        try FileOps.atomicWrite(Array(#"{"total_epochs": 3}"#.utf8), to: stats)
        info = try servedEqualsFresh(c, "new training stats")
        #expect(info["train_stats"]?["segmentation_spleen"]?["total_epochs"] == 3)
        try FileOps.atomicWrite(Array(#"{"total_epochs": 4}"#.utf8), to: stats)
        info = try servedEqualsFresh(c, "rewritten training stats")
        #expect(info["train_stats"]?["segmentation_spleen"]?["total_epochs"] == 4)
    }

    /// Files changed by hand, as inotify reports them: rewritten in place (same size, no rename), a folder removed
    /// and made again, and weights behind a symbolic link whose target appears in another folder.
    @Test func info_filesChangedByHand_cachedBodyEqualsFreshlyBuilt() throws {
        let c = try TestClient()
        _ = try servedEqualsFresh(c, "start-up")
        let folder = c.app.modelDir.appendingPathComponent("segmentation_spleen")
        let stats = folder.appendingPathComponent("train_stats.json")
        try FileOps.makeDirectory(folder)
        try FileOps.atomicWrite(Array(#"{"total_epochs": 3}"#.utf8), to: stats)
        var info = try servedEqualsFresh(c, "new training stats")
        #expect(info["train_stats"]?["segmentation_spleen"]?["total_epochs"] == 3)

        let handle = try FileHandle(forWritingTo: stats)
        try handle.truncate(atOffset: 0)
        try handle.write(contentsOf: Data(#"{"total_epochs": 7}"#.utf8))
        try handle.close()
        info = try servedEqualsFresh(c, "stats rewritten in place")
        #expect(info["train_stats"]?["segmentation_spleen"]?["total_epochs"] == 7)

        try FileManager.default.removeItem(at: folder)
        info = try servedEqualsFresh(c, "stats folder removed")
        #expect(info["train_stats"]?["segmentation_spleen"]?["total_epochs"] == nil)
        try FileOps.makeDirectory(folder)
        try FileOps.atomicWrite(Array(#"{"total_epochs": 9}"#.utf8), to: stats)
        info = try servedEqualsFresh(c, "stats folder made again")
        #expect(info["train_stats"]?["segmentation_spleen"]?["total_epochs"] == 9)

        let elsewhere = c.tmp.url.appendingPathComponent("weights-elsewhere/w.pt")
        let published = c.app.modelDir.appendingPathComponent("segmentation_spleen.pt")
        try FileManager.default.createSymbolicLink(atPath: published.path, withDestinationPath: elsewhere.path)
        info = try servedEqualsFresh(c, "a dangling link as weights")
        #expect(info["models"]?["segmentation_spleen"]?["weights"] == "untrained (random initialisation)")
        try FileOps.makeDirectory(elsewhere.deletingLastPathComponent())
        try FileOps.atomicWrite([1, 2, 3], to: elsewhere)
        info = try servedEqualsFresh(c, "the link's target written")
        #expect(info["models"]?["segmentation_spleen"]?["weights"] == "segmentation_spleen.pt")
    }

    /// What the event loop serves: nothing before the first build, the built bytes while nothing changed, nothing
    /// after a change (a worker rebuilds), with inotify and without it (every file looked at each time).
    @Test(arguments: [true, false])
    func cachedBytes_currentOnlyUntilAChange(watchFolders: Bool) throws {
        let c = try TestClient()
        let cache = InfoCache(app: c.app, watchFolders: watchFolders)
        try settle(c.app)
        #expect(cache.cachedBytes() == nil)
        let built = cache.bytes()
        #expect(cache.cachedBytes() == built)

        try FileOps.atomicWrite([1, 2, 3], to: c.app.modelDir.appendingPathComponent("segmentation_spleen.pt"))
        #expect(cache.cachedBytes() == nil, "after published weights")
        let rebuilt = cache.bytes()
        #expect(rebuilt != built)
        #expect(rebuilt == c.app.info().compactBytes())
        #expect(cache.cachedBytes() == rebuilt)

        let saved = try c.sendForm(.put, "/datastore/label?image=spleen_01", files: [("label", "l.nii.gz", [1])])
        #expect(saved.status == 200)
        #expect(cache.cachedBytes() == nil, "after a label save")
        try settle(c.app)
        #expect(cache.bytes() == c.app.info().compactBytes())
        #expect(cache.cachedBytes() != nil)
    }

    /// With auth on, `/info/` is not answered from the loop: a token the head check cannot judge (a key id not yet
    /// fetched) must reach the guarded handler, which refuses it, even with the document cached.
    @Test func info_withAuth_cachedDocumentStillGuarded() throws {
        let c = try TestClient()
        let a = AuthRouterTests.authenticator(keys: KeyCache(minRefresh: 0) { KeySet(byKid: ["k1": AuthRouterTests.key]) })
        let router = makeRouter(app: c.app, log: .silent, authenticator: a)
        func get(_ token: String) throws -> Int {
            let request = try HTTPRequest(method: .get, target: "/info/",
                                          headers: HTTPHeaders([("Host", "t"), ("Authorization", "Bearer \(token)")]))
            return router.respond(to: request).status.code
        }
        #expect(try get(AuthRouterTests.token(roles: ["monailabel-user"])) == 200)
        #expect(try get(AuthRouterTests.token(roles: ["monailabel-user"])) == 200)
        let unknownKid = AuthRouterTests.token(roles: ["monailabel-user"], key: SigningKey.generate(.es256)!, kid: "k7")
        #expect(try get(unknownKid) == 401)
    }

    @Test func info_plannerFinishingInTheBackground_showsWithoutOtherChange() throws {
        let c = try TestClient(labeled: 0)
        _ = try c.get("/info/")
        // The first request started the planner; its result must reach the cached document once it finishes.
        try settle(c.app)
        let served = try #require(try c.get("/info/").json)
        #expect(served["trainers"]?["segmentation_spleen"]?["planner"] != nil)
        #expect(try c.get("/info/").body == c.app.info().compactBytes())
    }

    @Test func info_nothingChanged_servesTheSameBytesWithoutRebuilding() throws {
        let c = try TestClient()
        let cache = InfoCache(app: c.app)
        try settle(c.app)
        let first = cache.bytes()
        let second = cache.bytes()
        #expect(first == second)
        // The same storage: the second answer was not serialised again.
        let a = first.withUnsafeBufferPointer { UInt(bitPattern: $0.baseAddress) }
        let b = second.withUnsafeBufferPointer { UInt(bitPattern: $0.baseAddress) }
        #expect(a == b)
    }

    /// A PACS whose CT series list the test changes; everything else is empty.
    final class ChangingPACS: @unchecked Sendable {
        private let lock = NSLock()
        private var series: [String] = ["1.2.3"]
        let server: HTTPServer
        let port: Int

        init() throws {
            var router = HTTPRouter()
            var config = HTTPServerConfiguration(host: "127.0.0.1", port: 0)
            config.workerCount = 2
            let box = Box()
            router.get("/dicom-web/series") { req in
                let ids = req.queryValue("Modality") == "CT" ? box.pacs!.lock.withLock { box.pacs!.series } : []
                let items = ids.map { #"{"0020000E": {"vr": "UI", "Value": ["\#($0)"]}, "0020000D": {"vr": "UI", "Value": ["1.2"]}}"# }
                return .bytes(Array("[\(items.joined(separator: ","))]".utf8), contentType: "application/dicom+json")
            }
            server = HTTPServer(configuration: config, router: router)
            try server.start()
            port = try #require(server.port)
            box.pacs = self
        }

        final class Box: @unchecked Sendable { var pacs: ChangingPACS? }

        func add(_ id: String) { lock.withLock { series.append(id) } }

        deinit {
            server.shutdown(gracePeriod: 0)
            server.wait()
        }
    }

    @Test(.timeLimit(.minutes(14)))
    func info_dicomwebListingRefresh_cachedBodyEqualsFreshlyBuilt() throws {
        let pacs = try ChangingPACS()
        let tmp = TempDir()
        let root = "http://127.0.0.1:\(pacs.port)/dicom-web"
        let dicomweb = try DicomWebSettings(studies: root, environment: [
            "MONAI_LABEL_DICOMWEB_CACHE_PATH": tmp.url.appendingPathComponent("cache").path,
            "MONAI_LABEL_DICOMWEB_LISTING_WAIT": "30", "MONAI_LABEL_DICOMWEB_CACHE_EXPIRY": "0.2",
            "MONAI_LABEL_DICOMWEB_RETRIES": "1",
        ])
        let appDir = tmp.url.appendingPathComponent("app")
        try FileManager.default.createDirectory(at: appDir, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: repoRoot.appendingPathComponent("sample-apps/radiology/app.json"),
                                         to: appDir.appendingPathComponent("app.json"))
        var settings = Settings(appDir: appDir, studies: root, conf: ["models": "segmentation_spleen"])
        settings.sessions = false
        settings.inferWorkers = 0
        let app = try MONAILabelApp(settings: settings, datastore: try DicomWebDatastore(settings: dicomweb))
        let router = makeRouter(app: app, log: .silent)
        func served() throws -> [UInt8] {
            let request = try HTTPRequest(method: .get, target: "/info/", headers: HTTPHeaders([("Host", "test")]))
            return try bodyBytes(router.respond(to: request))
        }
        #expect(try JSONValue.parse(try served())["datastore"]?["total"] == 1)
        pacs.add("1.2.4")
        // The expired list is refreshed in the background; the served document must follow it.
        let deadline = Date().addingTimeInterval(20)
        var total: JSONValue?
        while total != 2 && Date() < deadline {
            total = try JSONValue.parse(try served())["datastore"]?["total"]
            if total != 2 { usleep(50_000) }
        }
        #expect(total == 2)
        #expect(try served() == app.info().compactBytes())
    }
}
