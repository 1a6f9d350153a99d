import Foundation
import Imaging
import Testing
import TestSupport
import TorchCheckpoint
import TorchKit
@testable import MONAILabel
@testable import MONAILabelCore

/// A bundle's configs/train.json turned into its trainer (MONAIBundleTrain), and the first training step against
/// MONAI's on the fixture scripts/fixtures/make_bundle_fixture.py wrote.
@Suite(.tags(.unit)) struct BundleTrainTests {
    static let name = "spleen_ct_segmentation"

    /// A copy of the spleen bundle under `<tmp>/app/model/<name>` with `edit` applied to its train.json.
    static func editedTrainCopy(_ tmp: TempDir, _ edit: (inout JSONObject) -> Void) throws -> URL {
        let appDir = try BundleTests.editedCopy(tmp) { _ in }
        let url = appDir.appendingPathComponent("model/\(name)/configs/train.json")
        var config = try #require(try JSONValue.parse(Array(Data(contentsOf: url))).objectValue)
        edit(&config)
        try Data(JSONValue.object(config).prettyBytes()).write(to: url)
        return appDir
    }

    static func definition(_ appDir: URL) throws -> JSONObject {
        let (def, _) = try BundleTests.bundles(name, appDir: appDir)
        return try #require(def.models[name]?.objectValue)
    }

    /// Edits `train#<key>`'s object.
    static func editTrain(_ key: String, _ edit: @escaping (inout JSONValue) -> Void) -> (inout JSONObject) -> Void {
        { c in
            guard case .object(var train) = c["train"], var v = train[key] else { return }
            edit(&v)
            train[key] = v
            c["train"] = .object(train)
        }
    }

    @Test func spleenTrainJSON_becomesATrainerWithItsLossOptimizerTransformsAndBatch() throws {
        let tmp = TempDir()
        let d = try Self.definition(try Self.editedTrainCopy(tmp) { _ in })
        #expect(d[MONAIBundleTrain.unavailableKey] == nil)
        let t = try #require(d["train"]?.objectValue)
        #expect(t["optimizer"] == "Adam")
        #expect(t["lr"] == 0.001)
        #expect(t["weight_decay"] == 0.0)
        #expect(t["loss"] == ["lambda_ce": 1.0, "squared_pred": true, "batch": true])
        #expect(t["spatial_size"] == [32, 32, 32])
        #expect(t["num_samples"] == 2)
        #expect(t["crop_foreground"] == true)
        #expect(t["config"] == ["train_batch_size": 2])
        #expect(t["val_interval"] == 1)
        #expect(t["val_roi_size"] == [32, 32, 32])
        let def = try #require(try TrainDefinition(model: Self.name, definition: d))
        #expect(def.pre.map { $0["name"]?.stringValue ?? "" } == ["Orientationd", "Spacingd", "ScaleIntensityRanged"])
        #expect(def.preSpacing == [1.5, 1.5, 2.0])
        #expect(def.squaredPred && def.batchDice && def.lambdaCE == 1 && def.momentum == nil)
        let a = try #require(def.augmentation)
        #expect(a.flips.count == 1 && a.flips[0].axes == [0] && a.flips[0].prob == 0.1)
        #expect(a.rotate?.maxK == 3 && a.rotate.map { $0.axes == (0, 1) } == true)
        #expect(a.shift?.offsets == 0.1 && a.shift?.prob == 0.5)
        #expect(def.description.contains("spleen"))
    }

    @Test func trainJSONWithUnknownTransform_bundleStillInfers_trainerAbsentWithTheKeyNamed() throws {
        let tmp = TempDir()
        let appDir = try Self.editedTrainCopy(tmp, Self.editTrain("random_transforms") { v in
            guard case .array(var list) = v else { return }
            list.append(["_target_": "RandZoomd", "keys": ["image", "label"], "prob": 0.1])
            v = .array(list)
        })
        let d = try Self.definition(appDir)
        #expect(d["train"] == nil)
        #expect(d["network"] != nil)
        let why = d[MONAIBundleTrain.unavailableKey]?.stringValue ?? ""
        #expect(why.contains("train.json: train#random_transforms#5#_target_: transform 'RandZoomd' is not supported"), "\(why)")
    }

    @Test func trainJSONWithUnknownLossOrOptimizerTarget_namesTheKey() throws {
        let tmp = TempDir()
        let loss = try Self.definition(try Self.editedTrainCopy(tmp) { c in c["loss"] = ["_target_": "FocalLoss", "gamma": 2] })
        #expect(loss[MONAIBundleTrain.unavailableKey]?.stringValue?.contains("train.json: loss#_target_: loss 'FocalLoss' is not supported") == true)
        let tmp2 = TempDir()
        let opt = try Self.definition(try Self.editedTrainCopy(tmp2) { c in
            c["optimizer"] = ["_target_": "monai.optimizers.Novograd", "params": "$@network.parameters()", "lr": 0.002]
        })
        #expect(opt[MONAIBundleTrain.unavailableKey]?.stringValue?.contains("optimizer#_target_: optimizer 'monai.optimizers.Novograd' is not supported") == true)
        let tmp3 = TempDir()
        let betas = try Self.definition(try Self.editedTrainCopy(tmp3) { c in
            c["optimizer"] = ["_target_": "torch.optim.Adam", "params": "$@network.parameters()", "lr": 0.002, "betas": [0.5, 0.9]]
        })
        #expect(betas[MONAIBundleTrain.unavailableKey]?.stringValue?.contains("optimizer#betas: not supported") == true)
    }

    @Test func trainJSONWithPythonExpression_namesTheKey() throws {
        let tmp = TempDir()
        let d = try Self.definition(try Self.editedTrainCopy(tmp) { c in c["learning_rate"] = "$1e-3 * 2" })
        let why = d[MONAIBundleTrain.unavailableKey]?.stringValue ?? ""
        #expect(why.contains("the Python expression '$1e-3 * 2' cannot be evaluated"), "\(why)")
        #expect(why.contains("learning_rate"), "\(why)")
        let tmp2 = TempDir()
        let joined = try Self.definition(try Self.editedTrainCopy(tmp2, Self.editTrain("preprocessing") { v in
            guard case .object(var o) = v else { return }
            o["transforms"] = "$@train#deterministic_transforms[:3] + @train#random_transforms"
            v = .object(o)
        }))
        #expect(joined[MONAIBundleTrain.unavailableKey]?.stringValue?.contains("train#preprocessing#transforms: the Python expression") == true)
    }

    @Test func trainJSONWithOtherNetworkThanInference_isRefused_noTrainJSON_noTrainerNoReason() throws {
        let tmp = TempDir()
        let d = try Self.definition(try Self.editedTrainCopy(tmp) { c in
            guard case .object(var n) = c["network_def"] else { return }
            n["channels"] = [8, 16, 32, 64]
            c["network_def"] = .object(n)
        })
        #expect(d[MONAIBundleTrain.unavailableKey]?.stringValue?.contains("network_def differs from inference.json's") == true)
        let tmp2 = TempDir()
        let appDir = try BundleTests.editedCopy(tmp2) { _ in }
        try FileManager.default.removeItem(at: appDir.appendingPathComponent("model/\(Self.name)/configs/train.json"))
        let none = try Self.definition(appDir)
        #expect(none["train"] == nil && none[MONAIBundleTrain.unavailableKey] == nil)
    }

    @Test func torchScriptOnlyBundle_servesInferenceWithoutTrainer_reasonSaysWhy() throws {
        let tmp = TempDir()
        let appDir = try BundleTests.editedCopy(tmp) { _ in }
        let models = appDir.appendingPathComponent("model/\(Self.name)/models")
        try FileManager.default.moveItem(at: models.appendingPathComponent("model.pt"), to: models.appendingPathComponent("model.ts"))
        let d = try Self.definition(appDir)
        #expect(d["train"] == nil)
        #expect(d[MONAIBundleTrain.unavailableKey]?.stringValue?.contains("models/model.ts only") == true)
    }

    @Test func outOfRangeAugmentation_isAReasonNotATrap() throws {
        let tmp = TempDir()
        let d = try Self.definition(try Self.editedTrainCopy(tmp, Self.editTrain("random_transforms") { v in
            guard case .array(var list) = v else { return }
            list[2] = ["_target_": "RandFlipd", "keys": ["image", "label"], "prob": 0.1, "spatial_axis": [7]]
            v = .array(list)
        }))
        #expect(d[MONAIBundleTrain.unavailableKey]?.stringValue?.contains("flips#0#axes") == true)
    }

    /// MONAI's loss on a fixed batch with the bundle's weights, before and after one step of train.json's Adam.
    @Test func firstTrainingStep_matchesMONAIsLossBeforeAndAfterOneOptimizerStep() throws {
        let tmp = TempDir()
        let d = try Self.definition(try Self.editedTrainCopy(tmp) { _ in })
        let def = try #require(try TrainDefinition(model: Self.name, definition: d))
        let batch = try NPYArray.read(BundleTests.fixtures.appendingPathComponent("\(Self.name).train_batch.npy"))
        #expect(batch.shape == [2, 2, 1, 16, 16, 16])
        let half = batch.floats.count / 2
        let shape = [2, 1, 16, 16, 16]
        let x = try Tensor(Array(batch.floats[..<half]), shape: shape)
        let y = try Tensor(Array(batch.floats[half...]), shape: shape)
        let losses = try JSONValue.parse(Array(Data(contentsOf: BundleTests.fixtures.appendingPathComponent("\(Self.name).train_losses.json"))))
        let expected = [try #require(losses["before_step"]?.doubleValue), try #require(losses["after_step"]?.doubleValue)]

        let net = try NetworkFactory.make(def.network)
        let sd = try Checkpoint.stateDict(from: BundleTests.spleen.appendingPathComponent("models/model.pt"), key: "model")
        try net.load(stateDict: sd.map { ($0.name, $0.tensor) }, strict: true)
        net.train()
        let optimizer = try Adam(parameters: net.parameters(), lr: def.lr, weightDecay: def.weightDecay)
        let loss = def.diceCELoss
        try optimizer.zeroGrad()
        let l0 = try loss(try net(x), y)
        try l0.backward()
        try optimizer.step()
        let l1 = try Torch.withNoGrad { try loss(try net(x), y).item() }
        let got = [try l0.item(), l1]
        #expect(abs(got[0] - expected[0]) <= 1e-4, "before the step: \(got[0]) vs MONAI's \(expected[0])")
        #expect(abs(got[1] - expected[1]) <= 1e-4, "after the step: \(got[1]) vs MONAI's \(expected[1])")
    }
}
