import Foundation
import Imaging
import Testing
import TestSupport
@testable import MONAILabel
@testable import MONAILabelCore

/// MONAI bundles: the config interpreter, the bundle-to-task mapping and MONAI's own bundle inference on the
/// fixture scripts/fixtures/make_bundle_fixture.py wrote (Tests/Fixtures/bundles).
@Suite(.tags(.unit)) struct BundleTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/bundles")
    static let spleen = fixtures.appendingPathComponent("spleen_ct_segmentation")

    /// A bundle app's definition with the bundles `models` names, resolved against `appDir`.
    static func bundles(_ models: String, appDir: URL) throws -> (AppDefinition, [String]) {
        var def = try AppDefinition(json: ["name": "bundles", "bundle_models": true, "models": [:]])
        let names = try def.addBundles(conf: ["models": models], appDir: appDir)
        return (def, names)
    }

    static func task(_ def: AppDefinition, _ name: String, _ tmp: TempDir) throws -> SegmentationTask {
        let d = try #require(def.models[name]?.objectValue)
        return try SegmentationTask(name: name, definition: d, modelDir: tmp.url)
    }

    /// A copy of the spleen bundle under `<tmp>/app/model/<name>` with `edit` applied to its inference.json.
    static func editedCopy(_ tmp: TempDir, name: String = "spleen_ct_segmentation",
                           _ edit: (inout JSONObject) -> Void) throws -> URL
    {
        let appDir = tmp.url.appendingPathComponent("app")
        let folder = appDir.appendingPathComponent("model/\(name)")
        try FileManager.default.createDirectory(at: folder.deletingLastPathComponent(), withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: spleen, to: folder)
        let url = folder.appendingPathComponent("configs/inference.json")
        var config = try #require(try JSONValue.parse(Array(Data(contentsOf: url))).objectValue)
        edit(&config)
        try Data(JSONValue.object(config).prettyBytes()).write(to: url)
        return appDir
    }

    static func message(_ body: () throws -> Void) -> String {
        do {
            try body()
            return ""
        } catch { return "\(error)" }
    }

    @Test func spleenShapedBundle_reproducesMONAIBundleInferenceLogits() throws {
        let tmp = TempDir()
        let (def, names) = try Self.bundles(Self.spleen.path, appDir: tmp.url)
        #expect(names == ["spleen_ct_segmentation"])
        let task = try Self.task(def, names[0], tmp)
        #expect(task.labels == ["spleen": 1])
        #expect(task.pre.map(\.name) == ["Orientationd", "Spacingd", "ScaleIntensityRanged"])
        #expect(task.inferer["roi_size"] == [32, 32, 32])
        #expect(task.weights == "model.pt")
        var x = try ImageIO.load(pipelineFixture("ct_lps_aniso.nii.gz"))
        for t in task.pre { x = try t.apply(x) }
        let logits = try task.predict(x, params: [:])
        let expected = try NPYArray.read(Self.fixtures.appendingPathComponent("spleen_ct_segmentation.logits.npy"))
        #expect(expected.shape == [2, 38, 36, 30])
        #expect(x.shape == [1, 38, 36, 30])
        let e = expected.floats
        try #require(logits.count == e.count)
        let maxDiff = zip(logits, e).reduce(Float(0)) { max($0, abs($1.0 - $1.1)) }
        #expect(maxDiff <= 1e-3, "max abs logit difference \(maxDiff)")
    }

    @Test func bundleByName_isReadFromTheAppModelFolder_missingOneIsNamed() throws {
        let tmp = TempDir()
        let appDir = try Self.editedCopy(tmp) { _ in }
        let (def, names) = try Self.bundles("spleen_ct_segmentation", appDir: appDir)
        #expect(names == ["spleen_ct_segmentation"])
        #expect(def.models["spleen_ct_segmentation"]?["version"] == "0.5.4")
        let text = Self.message { _ = try Self.bundles("spleen_ct_segmentation, wholeBody_ct_segmentation", appDir: appDir) }
        #expect(text.contains("bundle 'wholeBody_ct_segmentation' not found"))
        #expect(Self.message { _ = try Self.bundles(" ", appDir: appDir) }.contains("--conf models is required"))
    }

    @Test func unknownNetworkTarget_stopsStartupNamingTheKey() throws {
        let tmp = TempDir()
        let appDir = try Self.editedCopy(tmp) { c in c["network_def"] = ["_target_": "scripts.net.MyNet", "width": 3] }
        let text = Self.message { _ = try Self.bundles("spleen_ct_segmentation", appDir: appDir) }
        #expect(text.contains("inference.json: network_def#_target_: network 'scripts.net.MyNet' is not supported"))
    }

    @Test func pythonExpressionInAnItemUsed_stopsStartupNamingTheKey_literalsAreRead() throws {
        func withPixdim(_ v: JSONValue) -> (inout JSONObject) -> Void {
            { c in
                guard case .object(var pre) = c["preprocessing"], case .array(var list) = pre["transforms"],
                      case .object(var spacing) = list[3] else { return }
                spacing["pixdim"] = v
                list[3] = .object(spacing)
                pre["transforms"] = .array(list)
                c["preprocessing"] = .object(pre)
            }
        }
        let tmp = TempDir()
        let appDir = try Self.editedCopy(tmp, withPixdim("$[x * 1.5 for x in (1, 1, 1)]"))
        let text = Self.message { _ = try Self.bundles("spleen_ct_segmentation", appDir: appDir) }
        #expect(text.contains("preprocessing#transforms#3#pixdim: the Python expression"))
        let tmp2 = TempDir()
        let literal = try Self.editedCopy(tmp2, withPixdim("$(1.5, 1.5, 2.0)"))
        let (def, _) = try Self.bundles("spleen_ct_segmentation", appDir: literal)
        #expect(def.models["spleen_ct_segmentation"]?["pre"]?.arrayValue?[1]["pixdim"] == [1.5, 1.5, 2.0])
    }

    @Test func unsupportedTransformsAndInferers_stopStartupNamingThem() throws {
        let tmp = TempDir()
        let appDir = try Self.editedCopy(tmp) { c in
            guard case .object(var pre) = c["preprocessing"], case .array(var list) = pre["transforms"] else { return }
            list.append(["_target_": "CropForegroundd", "keys": "image", "source_key": "image"])
            pre["transforms"] = .array(list)
            c["preprocessing"] = .object(pre)
        }
        let text = Self.message { _ = try Self.bundles("spleen_ct_segmentation", appDir: appDir) }
        #expect(text.contains("preprocessing#transforms#6#_target_: transform 'CropForegroundd' is not supported"))
        let tmp2 = TempDir()
        let other = try Self.editedCopy(tmp2) { c in c["inferer"] = ["_target_": "SaliencyInferer", "cam_name": "GradCAM"] }
        #expect(Self.message { _ = try Self.bundles("spleen_ct_segmentation", appDir: other) }
            .contains("inferer#_target_: 'SaliencyInferer' is not supported"))
        let tmp3 = TempDir()
        let detection = try Self.editedCopy(tmp3, name: "retinanet_detection") { _ in }
        #expect(Self.message { _ = try Self.bundles("retinanet_detection", appDir: detection) }
            .contains("detection bundles are not served"))
    }

    @Test func selfReferringTransformListAndOddMetadata_areErrorsNotCrashes() throws {
        let tmp = TempDir()
        let appDir = try Self.editedCopy(tmp) { c in c["preprocessing"] = "@pre_transforms"; c["pre_transforms"] = "@preprocessing" }
        #expect(Self.message { _ = try Self.bundles("spleen_ct_segmentation", appDir: appDir) }.contains("nest deeper"))
        let tmp2 = TempDir()
        let odd = try Self.editedCopy(tmp2) { _ in }
        let meta = odd.appendingPathComponent("model/spleen_ct_segmentation/configs/metadata.json")
        try Data(#"{"network_data_format": {"inputs": {"image": {"spatial_shape": [1, 2, 3, 4, 5]}}}}"#.utf8).write(to: meta)
        #expect(Self.message { _ = try Self.bundles("spleen_ct_segmentation", appDir: odd) }.contains("2 or 3 sizes"))
        try Data("[".utf8).write(to: meta)
        #expect(Self.message { _ = try Self.bundles("spleen_ct_segmentation", appDir: odd) }.contains("metadata.json is not valid JSON"))
    }

    @Test func config_referencesMacrosLiteralsAndCycles() throws {
        let root: JSONValue = [
            "a": "@b", "b": [1, "@c"], "c": "$True", "d": "%b", "e": "@e", "f": "$@b", "g": "@nowhere",
            "h": ["_target_": "X", "_disabled_": true], "i": "$os.path.join('a')", "j": ["k": "@c"],
        ]
        let config = BundleConfig(fileName: "inference.json", root: root, bundleRoot: URL(fileURLWithPath: "/"))
        #expect(try config.resolve("a") == [1, true])
        #expect(try config.resolve("d") == [1, true])
        #expect(try config.resolve("f") == [1, true])
        #expect(try config.resolve("j#k") == true)
        #expect(try config.resolve("j::k") == true)
        #expect(try config.resolve("h") == .null)
        #expect(Self.message { _ = try config.resolve("e") }.contains("nest deeper"))
        #expect(Self.message { _ = try config.resolve("g") }.contains("g: '@nowhere' refers to an item that does not exist"))
        #expect(Self.message { _ = try config.resolve("i") }.contains("i: the Python expression"))
    }

    @Test(arguments: [
        ("1e-4", JSONValue.double(1e-4)), ("-3", .int(-3)), ("None", .null), ("'RAS'", .string("RAS")),
        ("[96, 96, (1, 2.5)]", JSONValue.array([96, 96, [1, 2.5]])), ("[]", JSONValue.array([])),
    ])
    func pythonLiteral_readsLiterals(text: String, value: JSONValue) {
        var p = PythonLiteral(text)
        #expect(p.parse() == value)
    }

    @Test(arguments: ["torch.device('cpu')", "1 + 2", "[1, 2", "'a' 'b'", "x", "'a\\'b'", String(repeating: "[", count: 40)])
    func pythonLiteral_refusesExpressions(text: String) {
        var p = PythonLiteral(text)
        #expect(p.parse() == nil)
    }

    @Test func bundleApp_servesTheBundleAsASegmentationModel() throws {
        let tmp = TempDir()
        let appDir = tmp.url.appendingPathComponent("app")
        try FileManager.default.createDirectory(at: appDir.appendingPathComponent("model"), withIntermediateDirectories: true)
        let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        try FileManager.default.copyItem(at: repo.appendingPathComponent("sample-apps/monaibundle/app.json"),
                                         to: appDir.appendingPathComponent("app.json"))
        let studies = tmp.url.appendingPathComponent("studies")
        try FileManager.default.createDirectory(at: studies, withIntermediateDirectories: true)
        var settings = Settings(appDir: appDir, studies: studies.path, conf: ["models": Self.spleen.path])
        settings.sessionPath = tmp.url.appendingPathComponent("sessions").path
        settings.inferWorkers = 0
        let app = try MONAILabelApp(settings: settings, datastore: try LocalDatastore(root: studies))
        let info = app.info()
        #expect(info["name"] == "MONAILabel - Zoo/Bundle (0.8.5)")
        #expect(info["models"]?.objectValue?.keys == ["spleen_ct_segmentation"])
        #expect(info["models"]?["spleen_ct_segmentation"]?["type"] == "segmentation")
        #expect(info["models"]?["spleen_ct_segmentation"]?["weights"] == "model.pt")
        #expect(info["labels"] == ["spleen"])
        #expect(try app.modelFile("spleen_ct_segmentation").path == Self.spleen.appendingPathComponent("models/model.pt").path)
    }
}
