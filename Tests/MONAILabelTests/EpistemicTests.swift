import Foundation
import Testing
import TorchKit
import TorchCheckpoint
@testable import MONAILabel

// MARK: Entropy of the mean prediction (upstream's entropy_3d_volume + nanmean)

@Test(.tags(.unit)) func entropy_twoSamplesThreeChannels_matchesHandComputedUpstreamFormula() throws {
    // [1, C=3, 2 voxels]; channel 0 (background) is dropped, zeros become 5e-5 before the mean.
    let s1 = try Tensor([Float(0.5), 0.2, /* c1 */ 0.5, 0.0, /* c2 */ 0.0, 0.8], shape: [1, 3, 2])
    let s2 = try Tensor([Float(0.1), 0.2, /* c1 */ 0.3, 0.0, /* c2 */ 0.6, 0.8], shape: [1, 3, 2])
    var acc = EntropyAccumulator()
    try acc.add(probabilities: s1)
    try acc.add(probabilities: s2)
    func h(_ p: Double) -> Double { -p * Foundation.log(p) }
    // Voxel 0: c1 mean 0.4; c2 mean (5e-5 + 0.6) / 2. Voxel 1: c1 mean 5e-5; c2 mean 0.8.
    let v0 = h(0.4) + h((5e-5 + 0.6) / 2)
    let v1 = h(5e-5) + h(0.8)
    let map = try acc.entropyMap().floats()
    #expect(map.count == 2)
    #expect(abs(Double(map[0]) - v0) < 1e-5)
    #expect(abs(Double(map[1]) - v1) < 1e-5)
    #expect(abs(try acc.score() - (v0 + v1) / 2) < 1e-5)
    #expect(acc.samples == 2)
}

@Test(.tags(.unit)) func entropy_singleChannel_usesSigmoidAndKeepsTheChannel() throws {
    let logits = try Tensor([Float(0), 2], shape: [1, 1, 2])
    let p = try EntropyAccumulator.probabilities(logits: logits)
    var acc = EntropyAccumulator()
    try acc.add(probabilities: p)
    let s = 1 / (1 + Foundation.exp(-2.0))
    let expected = (-0.5 * Foundation.log(0.5) - s * Foundation.log(s)) / 2
    #expect(abs(try acc.score() - expected) < 1e-5)
}

@Test(.tags(.unit)) func entropy_multiChannelLogits_useSoftmax() throws {
    // Equal logits over 2 classes: p = 0.5 on the kept channel.
    let p = try EntropyAccumulator.probabilities(logits: Tensor([Float(1), 1], shape: [1, 2, 1]))
    var acc = EntropyAccumulator()
    try acc.add(probabilities: p)
    #expect(abs(try acc.score() - (-0.5 * Foundation.log(0.5))) < 1e-6)
}

@Test(.tags(.unit)) func entropy_nanVoxels_areLeftOutOfTheMean() throws {
    var acc = EntropyAccumulator()
    try acc.add(probabilities: Tensor([Float(0.5), .nan], shape: [1, 1, 2]))
    #expect(abs(try acc.score() - (-0.5 * Foundation.log(0.5))) < 1e-6)
    var all = EntropyAccumulator()
    try all.add(probabilities: Tensor([Float.nan], shape: [1, 1, 1]))
    #expect(try all.score().isNaN)
}

@Test(.tags(.unit)) func entropy_samplesOfDifferentShapes_throw() throws {
    var acc = EntropyAccumulator()
    try acc.add(probabilities: Tensor([Float(0.5), 0.5], shape: [1, 1, 2]))
    #expect(throws: MONAILabelError.self) { try acc.add(probabilities: Tensor([Float(0.5)], shape: [1, 1, 1])) }
    #expect(throws: MONAILabelError.self) { try EntropyAccumulator().entropyMap() }
}

// MARK: Monte Carlo dropout

private func batchNormState(_ m: Module) throws -> [String: [Float]] {
    var out: [String: [Float]] = [:]
    for (name, p) in m.namedBuffers() { out[name] = try p.tensor.to(.float32).floats() }
    return out
}

@Test(.tags(.unit)) func mcDropout_variesOutputsWhileBatchNormStatisticsStayFrozen() throws {
    Torch.manualSeed(7)
    let net = try UNet(spatialDims: 3, inChannels: 1, outChannels: 2, channels: [4, 8], strides: [2], numResUnits: 1,
                       norm: .batch, dropout: 0.2)
    // Learned-looking running statistics, so a batch-statistics forward would visibly move them.
    for (name, p) in net.namedBuffers() where name.hasSuffix("running_mean") { try p.tensor.fill(0.3) }
    let before = try batchNormState(net)
    #expect(net.enableMCDropout() > 0)
    let x = try Tensor.randn([1, 1, 8, 8, 8])
    let (a, b) = try Torch.withNoGrad { (try net(x).floats(), try net(x).floats()) }
    #expect(a != b, "MC dropout passes must differ")
    #expect(try batchNormState(net) == before, "running statistics and num_batches_tracked must not change")

    // Upstream's model.train() instead updates the BatchNorm running statistics on every pass.
    net.train()
    _ = try Torch.withNoGrad { try net(x) }
    #expect(try batchNormState(net) != before)
}

@Test(.tags(.unit)) func mcDropout_batchNormLayersAreInEvalModeAndDropoutInTrainMode() throws {
    let net = try UNet(spatialDims: 3, inChannels: 1, outChannels: 2, channels: [4, 8], strides: [2], numResUnits: 1,
                       norm: .batch, dropout: 0.2)
    let active = net.enableMCDropout()
    var dropouts = 0, norms = 0
    func walk(_ m: Module) {
        if m is Dropout {
            dropouts += 1
            #expect(m.isTraining)
        } else if m is BatchNorm {
            norms += 1
            #expect(!m.isTraining)
        }
        for c in m.children { walk(c.module) }
    }
    walk(net)
    #expect(dropouts == active)
    #expect(dropouts > 0 && norms > 0)
}

@Test(.tags(.unit)) func mcDropout_networkWithoutDropout_reportsNoActiveLayer() throws {
    let net = try UNet(spatialDims: 3, inChannels: 1, outChannels: 2, channels: [4, 8], strides: [2], numResUnits: 1,
                       norm: .batch)
    #expect(net.enableMCDropout() == 0)
}

// MARK: The dropout variant of a model's network

@Test(.tags(.unit)) func dropoutSpec_usesMONAIKeywordsAndKeepsTheCheckpointLoadable() throws {
    let spec: JSONObject = ["name": "UNet", "spatial_dims": 3, "in_channels": 1, "out_channels": 2, "channels": [4, 8],
                            "strides": [2], "num_res_units": 1, "norm": "batch"]
    let d = try #require(EpistemicScoring.dropoutSpec(spec))
    #expect(d["dropout"] == .double(0.2))
    let plain = try NetworkFactory.make(spec)
    let mc = try NetworkFactory.make(d)
    try mc.load(stateDict: try plain.stateDict(), strict: true)
    #expect(mc.enableMCDropout() > 0)

    #expect(EpistemicScoring.dropoutSpec(["name": "SegResNet"])?["dropout_prob"] == .double(0.2))
    #expect(EpistemicScoring.dropoutSpec(["name": "SegResNet", "dropout_prob": 0.3])?["dropout_prob"] == .double(0.3))
    #expect(EpistemicScoring.dropoutSpec(["name": "BasicUNet"])?["dropout"] == .double(0.2))
    #expect(EpistemicScoring.dropoutSpec(["name": "DynUNet"]) == nil)
}

@Test(.tags(.unit)) func modelScore_isCurrentOnlyForTheSameModelFileTimeAndModel() {
    let k = EpistemicScoring.keys
    #expect(ModelScoring.isCurrent(["epistemic_ts": 5, "epistemic_model": "a"], keys: k, ts: 5, model: "a"))
    #expect(!ModelScoring.isCurrent(["epistemic_ts": 5, "epistemic_model": "b"], keys: k, ts: 5, model: "a"))
    #expect(!ModelScoring.isCurrent(["epistemic_ts": 4, "epistemic_model": "a"], keys: k, ts: 5, model: "a"))
    // Written by upstream (no model name): the time decides.
    #expect(ModelScoring.isCurrent(["epistemic_ts": 5], keys: k, ts: 5, model: "a"))
    #expect(!ModelScoring.isCurrent([:], keys: k, ts: 5, model: "a"))
    // Another kind of score does not count.
    #expect(!ModelScoring.isCurrent(["epistemic_ts": 5], keys: TTAScoring.keys, ts: 5, model: "a"))
}

// MARK: Test-time augmentation variance

@Test(.tags(.unit)) func variance_twoSamples_matchesHandComputedPopulationVariance() throws {
    // [1, C=2, 2 voxels]; channel 0 dropped. Voxel 0: 0.2 and 0.6 -> var 0.04; voxel 1: 0.9 twice -> 0.
    var acc = VarianceAccumulator()
    try acc.add(probabilities: Tensor([Float(0.8), 0.1, 0.2, 0.9], shape: [1, 2, 2]))
    try acc.add(probabilities: Tensor([Float(0.4), 0.1, 0.6, 0.9], shape: [1, 2, 2]))
    let map = try acc.varianceMap().to(.float32).floats()
    #expect(abs(Double(map[0]) - 0.04) < 1e-6)
    #expect(abs(Double(map[1])) < 1e-9)
    #expect(abs(try acc.score() - 0.02) < 1e-6)
}

@Test(.tags(.unit)) func tta_flips_identityFirstThenSingleAxesThenPairs() {
    #expect(TTAScoring.flips(dims: 3) == [[], [2], [3], [4], [2, 3], [2, 4], [3, 4], [2, 3, 4]])
    #expect(TTAScoring.flips(dims: 2) == [[], [2], [3], [2, 3]])
}

@Test(.tags(.unit)) func tta_predictionsAreFlippedBack_soAFlipEquivariantModelHasNoVariance() throws {
    Torch.manualSeed(3)
    let x = try Tensor.randn([1, 1, 4, 5, 6])
    let flips = TTAScoring.flips(dims: 3)
    // Voxel-wise logits commute with flips: once flipped back, every augmentation agrees.
    let pointwise = try TTAScoring.score(input: x, flips: flips) { try Tensor.cat([$0.neg(), $0], dim: 1) }
    #expect(pointwise < 1e-10)
    // A position-dependent model does not: the augmentations disagree.
    let ramp = try Tensor.arange(0, 4).reshape([1, 1, 4, 1, 1])
    let positional = try TTAScoring.score(input: x, flips: flips) { v in
        let y = try v.add(ramp)
        return try Tensor.cat([y.neg(), y], dim: 1)
    }
    #expect(positional > 1e-3)
}

// MARK: The ranking strategy

@Suite(.tags(.unit)) struct ScoreRankingStrategyTests {
    let tmp = TempDir()
    let store: LocalDatastore

    init() throws {
        let root = tmp.url.appendingPathComponent("studies")
        try DemoStudies.write(to: root, count: 5, labeled: 1, shape: [8, 8, 4], spacing: [1, 1, 1])
        store = try LocalDatastore(root: root)
    }

    @Test func ranking_highestScoreFirst_unscoredLast_labeledExcluded() throws {
        try store.updateImageInfo("spleen_01", info: ["epistemic_entropy": 0.2])
        try store.updateImageInfo("spleen_02", info: ["epistemic_entropy": 0.7])
        try store.updateImageInfo("spleen_03", info: ["epistemic_entropy": 0.1])
        try store.updateImageInfo("spleen_00", info: ["epistemic_entropy": 9.0])  // labeled: not a candidate
        let s = ScoreRankingStrategy(name: "epistemic")
        #expect(s.ranking(datastore: store).map(\.id) == ["spleen_02", "spleen_01", "spleen_03", "spleen_04"])
        let pick = try #require(try s.select(request: [:], datastore: store))
        #expect(pick["id"] == "spleen_02")
        #expect(pick["epistemic_entropy"] == ["score": 0.7, "ts": 86400])
    }

    @Test func ranking_recentlyServedGoLast_leastRecentlyServedFirst() throws {
        let now = 1_700_000_000
        try store.updateImageInfo("spleen_01", info: ["epistemic_entropy": 0.9, "strategy": ["epistemic": ["ts": .int(now - 60)]]])
        try store.updateImageInfo("spleen_02", info: ["epistemic_entropy": 0.8, "strategy": ["epistemic": ["ts": .int(now - 600)]]])
        // Served by another strategy, or more than a day ago: as good as never served.
        try store.updateImageInfo("spleen_03", info: ["epistemic_entropy": 0.3, "strategy": ["random": ["ts": .int(now - 1)]]])
        try store.updateImageInfo("spleen_04", info: ["epistemic_entropy": 0.1, "strategy": ["epistemic": ["ts": .int(now - 90_000)]]])
        let s = ScoreRankingStrategy(name: "epistemic")
        #expect(s.ranking(datastore: store, now: now).map(\.id) == ["spleen_03", "spleen_04", "spleen_02", "spleen_01"])
    }

    @Test func ranking_ttaKey_readsItsOwnScore() throws {
        try store.updateImageInfo("spleen_01", info: ["epistemic_entropy": 0.9, "tta_vvc": 0.1])
        try store.updateImageInfo("spleen_02", info: ["epistemic_entropy": 0.1, "tta_vvc": 0.5])
        let s = ScoreRankingStrategy(name: "tta", key: "tta_vvc", description: "Get First Sample Based on TTA score")
        #expect(s.ranking(datastore: store).first?.id == "spleen_02")
    }

    @Test func select_noUnlabeledImage_returnsNil() throws {
        let root = tmp.url.appendingPathComponent("all-labeled")
        try DemoStudies.write(to: root, count: 2, labeled: 2, shape: [8, 8, 4], spacing: [1, 1, 1])
        #expect(try ScoreRankingStrategy(name: "epistemic").select(request: [:], datastore: LocalDatastore(root: root)) == nil)
    }
}
