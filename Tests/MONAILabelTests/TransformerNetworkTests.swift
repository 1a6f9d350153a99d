import Foundation
import Testing
@testable import MONAILabel
import TorchCheckpoint
import TorchKit

/// SwinUNETR and UNETR against MONAI: state-dict names and shapes key by key, and eval-mode outputs on the small
/// fixtures `scripts/fixtures/make_transformer_fixtures.py` wrote to Tests/Fixtures/networks.
@Suite(.tags(.unit), .serialized) struct TransformerNetworkTests {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/networks")

    static func file(_ name: String) -> URL { folder.appendingPathComponent(name) }

    /// (name, shape) pairs of `<network>.state.json`.
    static func monaiState(_ network: String) throws -> [(String, [Int])] {
        let root = try JSONSerialization.jsonObject(with: Data(contentsOf: file("\(network).state.json"))) as? [String: Any]
        guard let list = root?["state_dict"] as? [[Any]] else {
            throw NetworkFixtures.Failure(description: "\(network).state.json has no state_dict")
        }
        return try list.map { pair in
            guard pair.count == 2, let name = pair[0] as? String, let shape = pair[1] as? [Int] else {
                throw NetworkFixtures.Failure(description: "malformed entry \(pair)")
            }
            return (name, shape)
        }
    }

    static func expectSameState(_ module: Module, _ network: String) throws {
        let expected = try monaiState(network)
        let actual = module.namedState().map { ($0.name, $0.parameter.tensor.shape) }
        #expect(actual.count == expected.count)
        #expect(actual.map(\.0) == expected.map(\.0))
        for (a, e) in zip(actual, expected) where a.0 != e.0 || a.1 != e.1 {
            Issue.record("first difference: \(a) vs MONAI \(e)")
            break
        }
    }

    /// The generator's weight formula (see make_transformer_fixtures.py): float tensors in state-dict order get
    /// ((i * 7919 + k * 104729) % 2001 - 1000) / 1000 * (0.5 / sqrt(fan_in)); integer buffers keep their values.
    static func formulaState(_ module: Module) throws -> [(String, StoredTensor)] {
        var k = 0
        return try module.namedState().map { name, slot in
            let t = slot.tensor
            guard t.dtype == .float32 else { return (name, try t.detach().stored()) }
            let n = t.count
            let fan = t.rank >= 2 ? n / t.shape[0] : 1
            let scale = 0.5 / Double(fan).squareRoot()
            let values = (0..<n).map { i -> Float in
                let q = (i * 7919 + k * 104729) % 2001 - 1000
                return Float((Double(q) / 1000.0) * scale)
            }
            k += 1
            return (name, try Tensor(values, shape: t.shape).stored())
        }
    }

    static func maxDifference(_ network: Module & Layer, _ fixture: String) throws -> Double {
        network.eval()
        let input = try NetworkFixtures.floatNpy(at: file("\(fixture).input.npy"))
        let expected = try NetworkFixtures.floatNpy(at: file("\(fixture).output.npy"))
        let output = try Torch.withNoGrad { try network(input) }
        guard output.shape == expected.shape else {
            throw NetworkFixtures.Failure(description: "output shape \(output.shape), expected \(expected.shape)")
        }
        return try (output - expected).abs().max().item()
    }

    @Test func swinUNETR_btcvConfig_matchesMONAIStateDict() throws {
        let net = try SwinUNETR(inChannels: 1, outChannels: 14, featureSize: 48)
        try Self.expectSameState(net, "swin_unetr")
    }

    @Test func swinUNETR_smallFixture_matchesMONAIOutput() throws {
        let net = try SwinUNETR(inChannels: 1, outChannels: 2, featureSize: 12)
        try net.load(stateDict: Self.formulaState(net), strict: true)
        let diff = try Self.maxDifference(net, "swin_unetr")
        #expect(diff < 1e-4, "max abs difference \(diff)")
    }

    @Test func swinUNETR_inputNotDivisibleBy32_throwsNamingTheRule() throws {
        let net = try SwinUNETR(inChannels: 1, outChannels: 2, featureSize: 12)
        net.eval()
        #expect {
            try Torch.withNoGrad { try net(Tensor.zeros([1, 1, 48, 32, 32])) }
        } throws: { "\($0)".contains("divisible by patch_size**5 = 32") }
    }

    @Test func transformerNetworks_badOrOutOfRangeSizes_throwBeforeBuilding() {
        #expect(throws: TorchError.self) { try SwinUNETR(inChannels: 1, outChannels: 2, featureSize: 16) }
        #expect(throws: TorchError.self) { try SwinUNETR(inChannels: 1, outChannels: 2, depths: [2, 2, 2]) }
        // A config's absurd sizes are refused before any channel arithmetic could overflow.
        #expect(throws: TorchError.self) { try SwinUNETR(inChannels: 1, outChannels: 2, featureSize: 12 << 58) }
        #expect(throws: TorchError.self) {
            try UNETR(inChannels: 1, outChannels: 2, imgSize: [32], featureSize: 1 << 61, hiddenSize: 16, mlpDim: 32, numHeads: 4)
        }
        #expect(throws: TorchError.self) { try UNETR(inChannels: 1, outChannels: 2, imgSize: [8], hiddenSize: 16, numHeads: 4) }
    }

    @Test func unetr_midConfig_matchesMONAIStateDict() throws {
        let net = try UNETR(inChannels: 4, outChannels: 3, imgSize: [96, 96, 96], featureSize: 16, hiddenSize: 192,
                            mlpDim: 384, numHeads: 12)
        try Self.expectSameState(net, "unetr")
    }

    @Test func unetr_smallFixture_loadsMONAICheckpointAndMatchesOutput() throws {
        let net = try UNETR(inChannels: 2, outChannels: 3, imgSize: [32, 32, 32], featureSize: 4, hiddenSize: 16,
                            mlpDim: 32, numHeads: 4)
        let state = try Checkpoint.stateDict(from: Self.file("unetr.small.pt"), key: nil)
        try net.load(stateDict: state.map { ($0.name, $0.tensor) }, strict: true)
        let diff = try Self.maxDifference(net, "unetr")
        #expect(diff < 1e-4, "max abs difference \(diff)")
    }

    @Test func unetr_inputOtherThanImgSize_throws() throws {
        let net = try UNETR(inChannels: 1, outChannels: 2, imgSize: [32], featureSize: 4, hiddenSize: 16, mlpDim: 32,
                            numHeads: 4)
        #expect(throws: TorchError.self) { try Torch.withNoGrad { try net(Tensor.zeros([1, 1, 32, 32, 16])) } }
    }

    @Test func networkFactory_buildsBothFromMONAIArguments() throws {
        let swin = try NetworkFactory.make(["name": "SwinUNETR", "img_size": [64, 64, 64], "in_channels": 1,
                                            "out_channels": 2, "feature_size": 12, "use_checkpoint": true])
        #expect(swin is SwinUNETR)
        let unetr = try NetworkFactory.make(["name": "UNETR", "in_channels": 1, "out_channels": 2, "img_size": 32,
                                             "feature_size": 4, "hidden_size": 16, "mlp_dim": 32, "num_heads": 4,
                                             "pos_embed": "conv"])
        #expect((unetr as? UNETR)?.imgSize == [32, 32, 32])
        #expect(throws: MONAILabelError.self) {
            try NetworkFactory.make(["name": "UNETR", "in_channels": 1, "out_channels": 2, "img_size": 32,
                                     "proj_type": "perceptron"])
        }
        #expect(throws: MONAILabelError.self) {
            try NetworkFactory.make(["name": "SwinUNETR", "in_channels": 1, "out_channels": 2, "use_v2": true])
        }
    }
}
