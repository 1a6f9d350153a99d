import Foundation
import Imaging
import TorchCheckpoint
import TorchKit
import Testing
@testable import MONAILabel
@testable import MONAILabelCore

// MARK: Inference: `amp` / `amp_dtype`

@Test(.tags(.unit)) func inferAmp_defaultsOffOnTheCPU_onAsBF16WhenAsked() throws {
    #expect(try InferPrecision.autocast(params: [:], device: .cpu) == nil)
    #expect(try InferPrecision.autocast(params: ["amp": false, "amp_dtype": "bfloat16"], device: .cpu) == nil)
    #expect(try InferPrecision.autocast(params: ["amp": true], device: .cpu) == Autocast(device: .cpu, dtype: .bfloat16))
    #expect(try InferPrecision.autocast(params: ["amp": true, "amp_dtype": "bfloat16"], device: .cpu)
        == Autocast(device: .cpu, dtype: .bfloat16))
}

@Test(.tags(.unit)) func inferAmp_badValues_returns422NamingTheParam() throws {
    let cases: [(JSONObject, String)] = [
        (["amp": "yes"], "amp must be true or false"),
        (["amp": 1.5], "amp must be true or false"),
        (["amp": true, "amp_dtype": "float64"], "amp_dtype must be float16 or bfloat16"),
        (["amp_dtype": 16], "amp_dtype must be a string"),
        // The CPU has no float16 autocast: named, with what it does have.
        (["amp": true, "amp_dtype": "float16"], "amp_dtype float16 is not available"),
    ]
    for (params, detail) in cases {
        #expect {
            _ = try InferPrecision.autocast(params: params, device: .cpu)
        } throws: { e in
            let error = e as? MONAILabelError
            return error?.kind == .invalidInput && error?.message.hasPrefix(detail) == true
        }
    }
}

@Test(.tags(.unit)) func pipeline_ampBadDType_isRefusedByValidateBeforeAnyWork() throws {
    let tmp = TempDir()
    let task = try smallSpleenTask(tmp)
    #expect(throws: MONAILabelError.invalid("amp_dtype must be float16 or bfloat16, got 'half'")) {
        try task.validate(params: ["amp": true, "amp_dtype": "half"])
    }
    try task.validate(params: ["amp": true, "amp_dtype": "bfloat16"])
}

/// #22's acceptance: bf16 inference on the pipeline fixture labels within Dice 0.99 of float32's. The network's
/// output comes back to float32 before the sliding window accumulates it.
@Test(.tags(.unit)) func pipeline_ctLpsAniso_bf16Autocast_labelDiceAtLeast099AgainstFloat32() throws {
    let tmp = TempDir()
    let task = try smallSpleenTask(tmp)
    var x = try ImageIO.load(pipelineFixture("ct_lps_aniso.nii.gz"))
    for t in task.pre { x = try t.apply(x) }
    let input = try Tensor(x.floats, shape: [1] + x.shape)
    let fp32 = try task.predictTensor(input: input, params: [:])
    let bf16 = try task.predictTensor(input: input, params: ["amp": true, "amp_dtype": "bfloat16"])
    #expect(bf16.dtype == .float32)
    #expect(bf16.shape == fp32.shape)
    let a = try SegmentationTask.argmaxOverChannels(fp32).array(of: UInt8.self)
    let b = try SegmentationTask.argmaxOverChannels(bf16).array(of: UInt8.self)
    let both = zip(a, b).filter { $0 == 1 && $1 == 1 }.count
    let inA = a.filter { $0 == 1 }.count, inB = b.filter { $0 == 1 }.count
    try #require(inA > 100, "the fp32 label has a foreground to compare")
    let dice = 2 * Double(both) / Double(inA + inB)
    let maxDiff = try (bf16 - fp32).abs().max().item()
    #expect(dice >= 0.99, "Dice \(dice) (fp32 \(inA) voxels, bf16 \(inB)); max logit difference \(maxDiff)")
    // bf16 really ran: the logits differ from float32's by more than float32 rounding.
    #expect(maxDiff > 1e-5, "max logit difference \(maxDiff)")
}

// MARK: Training: `amp` and the gradient scaler in the shared step

/// A tiny UNet training loop on the CPU, with a learnable blob target.
private func tinyLoop(_ tmp: TempDir, request: JSONObject, log: @escaping (String) -> Void = { _ in }) throws
    -> (TrainLoop, Tensor, Tensor)
{
    let definition = try #require(try TrainDefinition(model: "tiny", definition: [
        "labels": ["spleen": 1],
        "network": ["name": "UNet", "spatial_dims": 3, "in_channels": 1, "out_channels": 2, "channels": [4, 8],
                    "strides": [2], "num_res_units": 1],
        "train": ["spatial_size": [16, 16, 16]],
    ]))
    var request = request
    request["device"] = "cpu"
    let settings = try TrainSettings(definition: definition, request: request)
    let loop = try TrainLoop(
        definition: definition, settings: settings,
        paths: TrainPaths(modelDir: tmp.url.appendingPathComponent("tiny"), publishPath: tmp.url.appendingPathComponent("tiny.pt"),
                          loadPath: nil),
        epochLength: 1, validating: false, initialSeed: 3, log: log, progress: { _ in })
    // A bright cube on noise; the label is the cube.
    var image = [Float](repeating: 0, count: 16 * 16 * 16), label = image
    var g = SeededGenerator(seed: 5)
    for i in 0..<16 { for j in 0..<16 { for k in 0..<16 {
        let inside = (4..<11).contains(i) && (5..<12).contains(j) && (3..<10).contains(k)
        image[(i * 16 + j) * 16 + k] = (inside ? 1 : 0) + Float.random(in: -0.3...0.3, using: &g)
        label[(i * 16 + j) * 16 + k] = inside ? 1 : 0
    } } }
    return (loop, try Tensor(image, shape: [1, 1, 16, 16, 16]), try Tensor(label, shape: [1, 1, 16, 16, 16]))
}

@Test(.tags(.unit)) func trainAmp_defaultsOffOnTheCPU_bf16WhenAsked_andRefusesNonBool() throws {
    let tmp = TempDir()
    #expect(try tinyLoop(tmp, request: [:]).0.autocast == nil)
    #expect(try tinyLoop(tmp, request: ["amp": true]).0.autocast == Autocast(device: .cpu, dtype: .bfloat16))
    #expect(try tinyLoop(tmp, request: ["amp": true]).0.scaler == nil, "bfloat16 needs no loss scaling")
    #expect {
        _ = try tinyLoop(tmp, request: ["amp": "fast"])
    } throws: { e in
        (e as? MONAILabelError)?.message.hasPrefix("amp must be true or false") == true
    }
}

@Test(.tags(.unit)) func trainLoop_bf16AutocastOnTheCPU_lowersTheLoss() throws {
    let tmp = TempDir()
    let (loop, x, y) = try tinyLoop(tmp, request: ["amp": true])
    let optimizer = try loop.optimizer(named: "Adam", fallback: "Adam", weightDecay: 0)
    try optimizer.setLearningRate(0.01)
    let loss = DiceCELoss(squaredPred: true, batch: true)
    loop.net.train()
    var losses: [Double] = []
    for _ in 0..<25 {
        let (logits, l) = try loop.step(x, y, optimizer: optimizer) { try loss($0, $1) }
        #expect(logits.dtype == .float32, "the logits come back to float32 for the loss and the metric")
        losses.append(l)
    }
    #expect(losses.allSatisfy { $0.isFinite })
    #expect(losses.last! < losses.first! * 0.7, "loss \(losses.first!) -> \(losses.last!)")
}

/// The scaler's path through the shared step: a scale so large that the scaled loss overflows makes every
/// gradient non-finite, so the step leaves the weights alone, halves the scale and says so; once the scale is
/// back in range, steps go through.
@Test(.tags(.unit)) func trainLoop_scalerOverflow_skipsTheStepAndBacksOff_thenTrains() throws {
    let tmp = TempDir()
    let lines = LogLines()
    let (loop, x, y) = try tinyLoop(tmp, request: [:], log: { lines.append($0) })
    // Past float32's range: the scaled loss is inf, so every gradient is inf or NaN.
    loop.scaler = GradScaler(initScale: 1e39)
    let optimizer = try loop.optimizer(named: "SGD", fallback: "SGD", weightDecay: 0)
    try optimizer.setLearningRate(0.1)
    let loss = DiceCELoss(squaredPred: true, batch: true)
    loop.net.train()
    let before = try loop.net.parameters().map { try $0.floats() }
    _ = try loop.step(x, y, optimizer: optimizer) { try loss($0, $1) }
    #expect(try loop.net.parameters().map { try $0.floats() } == before, "a skipped step changes no weight")
    #expect(loop.scaler?.scale == 5e38)
    #expect(lines.all.contains { $0.hasPrefix("Gradient scaler: inf/NaN gradients, step skipped") })
    loop.scaler = GradScaler(initScale: 1024)
    _ = try loop.step(x, y, optimizer: optimizer) { try loss($0, $1) }
    #expect(try loop.net.parameters().map { try $0.floats() } != before)
    #expect(loop.scaler?.scale == 1024)
    #expect(loop.scaler?.growthTracker == 1)
}

private final class LogLines: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [String] = []
    func append(_ s: String) { lock.withLock { lines.append(s) } }
    var all: [String] { lock.withLock { lines } }
}

/// Data-parallel training with a scaler: gradients are averaged first, then unscaled, and the ranks agree to skip,
/// so one rank's overflow leaves every rank's weights where they were and halves every rank's scale.
@Test(.tags(.unit), .enabled(if: ProcessGroup.isAvailable, "the backend was built without gloo's headers (libgloo-dev)"))
func dataParallel_oneRanksOverflow_everyRankSkipsAndBacksOff() throws {
    let port = try Rendezvous.unusedPort()
    let outcome = RankOutcomes()
    let done = DispatchGroup()
    for rank in 0..<2 {
        done.enter()
        Thread {
            defer { done.leave() }
            var text: String
            do {
                let dp = try DataParallel(Rendezvous(host: "127.0.0.1", port: port, rank: rank, worldSize: 2,
                                                     timeout: .seconds(30)))
                let flags = (try dp.anyRank(rank == 1), try dp.anyRank(false))
                let p = try Tensor([1, 1] as [Float])
                try p.setRequiresGrad(true)
                let sgd = try SGD(parameters: [p], lr: 0.5)
                let scaler = GradScaler()
                let w = try Tensor(rank == 1 ? [Float.infinity, 1] : [1, 1])
                try scaler.scaled((p * w).sum()).backward()
                try dp.averageGradients(of: [p])
                let overflow = try dp.anyRank(try scaler.unscale([p]))
                let stepped = try scaler.step(sgd, foundNonFinite: overflow)
                text = "\(flags) \(stepped) \(try p.floats()) \(scaler.scale)"
            } catch {
                text = "error: \(error)"
            }
            outcome.record(rank, text)
        }.start()
    }
    // The rendezvous and collectives time out on their own; this bounds the test even so.
    try #require(done.wait(timeout: .now() + 600) == .success, "the ranks did not finish within 10 minutes")
    let expected = "(true, false) false [1.0, 1.0] 32768.0"
    #expect(outcome.values == [0: expected, 1: expected])
}

private final class RankOutcomes: @unchecked Sendable {
    private let lock = NSLock()
    private var byRank: [Int: String] = [:]
    func record(_ rank: Int, _ s: String) { lock.withLock { byRank[rank] = s } }
    var values: [Int: String] { lock.withLock { byRank } }
}

// MARK: Which networks run under CPU bf16 autocast

/// Every network the apps build, under bf16 autocast on the CPU, against PyTorch's float32 output of the same
/// weights (the parity fixtures): it runs on this backend, and stays within a few percent of the output's range
/// (bf16 keeps 8 bits of mantissa).
@Test(.tags(.unit), arguments: ["unet_segmentation_spleen", "basicunet_deepgrow_2d", "basicunet_deepgrow_3d",
                                "segresnet_segmentation", "dynunet_deepedit", "unetr", "swin_unetr"])
func bf16Autocast_fixtureNetwork_runsAndStaysNearFloat32(fixture: String) throws {
    let net: Module & Layer
    switch fixture {
    case "unet_segmentation_spleen":
        net = try UNet(spatialDims: 3, inChannels: 1, outChannels: 2, channels: [4, 8, 16, 32], strides: [2, 2, 2],
                       numResUnits: 2, norm: .batch)
    case "basicunet_deepgrow_2d":
        net = try BasicUNet(spatialDims: 2, inChannels: 3, outChannels: 1, features: [4, 8, 8, 16, 16, 4])
    case "basicunet_deepgrow_3d":
        net = try BasicUNet(spatialDims: 3, inChannels: 3, outChannels: 1, features: [4, 8, 8, 16, 16, 4])
    case "segresnet_segmentation":
        net = try SegResNet(spatialDims: 3, initFilters: 8, inChannels: 1, outChannels: 3, dropoutProb: 0.2,
                            blocksDown: [1, 2, 2, 4], blocksUp: [1, 1, 1])
    case "dynunet_deepedit":
        net = try DynUNet(spatialDims: 3, inChannels: 4, outChannels: 3, kernelSize: [[3], [3], [3], [3]],
                          strides: [[1], [2], [2], [2, 2, 1]], upsampleKernelSize: [[2], [2], [2, 2, 1]],
                          filters: [8, 16, 32, 64], norm: .instance(), resBlock: true)
    case "unetr":
        net = try UNETR(inChannels: 2, outChannels: 3, imgSize: [32, 32, 32], featureSize: 4, hiddenSize: 16,
                        mlpDim: 32, numHeads: 4)
    default:
        net = try SwinUNETR(inChannels: 1, outChannels: 2, featureSize: 12)
    }
    let input: Tensor, expected: Tensor
    switch fixture {
    case "unetr", "swin_unetr":
        if fixture == "unetr" {
            let state = try Checkpoint.stateDict(from: TransformerNetworkTests.file("unetr.small.pt"), key: nil)
            try net.load(stateDict: state.map { ($0.name, $0.tensor) }, strict: true)
        } else {
            try net.load(stateDict: TransformerNetworkTests.formulaState(net), strict: true)
        }
        input = try NetworkFixtures.floatNpy(at: TransformerNetworkTests.file("\(fixture).input.npy"))
        expected = try NetworkFixtures.floatNpy(at: TransformerNetworkTests.file("\(fixture).output.npy"))
    default:
        let script = try ScriptModule(contentsOf: NetworkFixtures.monai("\(fixture).small.ts"))
        try net.load(stateDict: script.stateDict(), strict: true)
        input = try NetworkFixtures.floatNpy("\(fixture).input.npy")
        expected = try NetworkFixtures.floatNpy("\(fixture).output.npy")
    }
    net.eval()
    let output = try Torch.withNoGrad { try Autocast(device: .cpu, dtype: .bfloat16).run { try net(input) }.to(.float32) }
    #expect(output.shape == expected.shape)
    let err = try (output - expected).abs().max().item()
    let range = try expected.abs().max().item()
    #expect(err <= 0.05 * range, "\(fixture): max error \(err) against outputs up to \(range) on libtorch \(Torch.versionString)")
    #expect(err > 0, "bf16 ran")
}
