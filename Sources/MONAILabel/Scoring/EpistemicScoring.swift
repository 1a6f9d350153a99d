import Foundation
import Imaging
import TorchKit

/// Upstream's entropy of the mean prediction over Monte Carlo samples (`EpistemicScoring.entropy_3d_volume`):
/// every probability ≤ 0 becomes 5e-5, p̄ is the mean over samples per channel, H = Σ_c −p̄ ln p̄ per voxel,
/// and the image's score is the NaN-ignoring mean of H. With more than one channel the background (channel 0)
/// is left out, as upstream drops it before the entropy. Samples are summed as they come, so memory stays at
/// one probability map whatever the number of samples.
public struct EntropyAccumulator {
    /// Upstream's replacement for probabilities ≤ 0 (keeps `ln` finite).
    public static let floor = 5e-5
    private var sum: Tensor?
    public private(set) var samples = 0

    public init() {}

    /// Softmax over channels, or the sigmoid for a single-channel output (upstream's choice by `C`).
    public static func probabilities(logits: Tensor) throws -> Tensor {
        logits.shape[1] > 1 ? try logits.softmax(dim: 1) : try logits.sigmoid()
    }

    /// Adds one sample's probabilities, `[1, C, *spatial]`.
    public mutating func add(probabilities p: Tensor) throws {
        guard p.rank >= 3, p.shape[0] == 1 else {
            throw MONAILabelError.invalid("entropy: probabilities must be [1, C, *spatial], got \(p.shape)")
        }
        let c = p.shape[1]
        let kept = c > 1 ? try p.narrow(dim: 1, start: 1, length: c - 1) : p
        let floored = try Tensor.where(kept.le(0), Tensor.scalar(Self.floor, dtype: kept.dtype, device: kept.device), kept)
        if let s = sum {
            guard s.shape == floored.shape else {
                throw MONAILabelError.invalid("entropy: sample shape \(floored.shape) differs from \(s.shape)")
            }
            sum = try s.add(floored)
        } else {
            sum = try floored.to(dtype: .float32, device: floored.device)
        }
        samples += 1
    }

    /// H per voxel, `[*spatial]`.
    public func entropyMap() throws -> Tensor {
        guard let sum, samples > 0 else { throw MONAILabelError.invalid("entropy: no samples") }
        let mean = try sum.div(Double(samples))
        return try mean.mul(mean.log()).neg().sum(dims: [1]).squeeze(dim: 0)
    }

    /// `nanmean(H)`; NaN when every voxel is NaN, as numpy.
    public func score() throws -> Double {
        let h = try entropyMap()
        let nan = try h.isNaN()
        let valid = try nan.logicalNot().to(.float32).sum().item()
        let total = try Tensor.where(nan, Tensor.scalar(0, dtype: h.dtype, device: h.device), h).to(.float64).sum().item()
        return valid > 0 ? total / valid : .nan
    }
}

extension Module {
    /// Monte Carlo dropout mode: everything in evaluation mode except dropout layers with p > 0, which sample
    /// masks as in training. Returns how many dropout layers are active (0 means MC dropout cannot vary).
    ///
    /// Upstream calls `model.train()` on the whole network instead, which also makes BatchNorm normalise with
    /// each window's batch statistics and overwrite the running statistics it learned. The scores then measure
    /// normalisation noise as much as model uncertainty, so we do not copy that.
    @discardableResult
    public func enableMCDropout() -> Int {
        eval()
        return activateDropout()
    }

    private func activateDropout() -> Int {
        if let d = self as? Dropout {
            guard d.p > 0 else { return 0 }
            d.train(true)
            return 1
        }
        return children.reduce(0) { $0 + $1.module.activateDropout() }
    }
}

/// Upstream's `EpistemicScoring` (`tasks/scoring/epistemic.py`, spec section 4.4 v1) for a segmentation model:
/// for every unlabeled image not yet scored with the current model file, the model's pre-transforms, then
/// `num_samples` Monte Carlo dropout passes of its sliding-window inferer, softmax, and the entropy of the mean
/// prediction (`EntropyAccumulator`). Stores `epistemic_entropy` and `epistemic_ts` (the model file's mtime in
/// whole seconds, as upstream) in the image info.
///
/// The network is the model's own definition with dropout 0.2 where it has none (upstream's
/// `network_with_dropout`); dropout modules have no parameters, so the served checkpoint loads strictly.
public struct EpistemicScoring: SegmentationModelScoring {
    public let name: String
    public let description = "Compute initial score based on dropout"
    /// Default Monte Carlo samples (`--conf epistemic_samples`, upstream's 5); a request's `num_samples` wins.
    public let samples: Int
    /// Dropout probability given to networks defined without dropout (upstream's 0.2).
    public static let dropout = 0.2
    let task: SegmentationTask
    public var modelName: String { task.name }
    static let keys = ModelScoreKeys(score: "epistemic_entropy", ts: "epistemic_ts", model: "epistemic_model")

    /// The network definition with MC dropout: MONAI's own keyword (`dropout` for UNet and BasicUNet,
    /// `dropout_prob` for SegResNet) set to 0.2 unless the model already uses a non-zero value. Nil for
    /// networks without dropout (DynUNet).
    public static func dropoutSpec(_ spec: JSONObject) -> JSONObject? {
        let key: String
        switch spec["name"]?.stringValue {
        case "UNet", "BasicUNet": key = "dropout"
        case "SegResNet": key = "dropout_prob"
        default: return nil
        }
        var s = spec
        if (spec[key]?.doubleValue ?? 0) <= 0 { s[key] = .double(dropout) }
        return s
    }

    /// Whether `task`'s network can be scored this way.
    static func supports(_ task: SegmentationTask) -> Bool { dropoutSpec(task.loader.networkSpec) != nil }

    public func score(request: JSONObject, datastore: Datastore, log: (String) -> Void) throws -> ScoringOutcome {
        log("Starting Epistemic Uncertainty scoring with model \(modelName)")
        var n = try ScoringService.numSamples(request) ?? samples
        if n < 2 {
            n = 2
            log("EPISTEMIC:: Fixing 'num_samples=2' as min 2 samples are needed to compute entropy")
        }
        let device = try DeviceList.requested(request["device"]) ?? .best
        let loop = ModelScoring(task: task, keys: Self.keys, prefix: "EPISTEMIC", samples: n, device: device)
        return try loop.run(datastore: datastore, log: log, network: { (f: URL) throws -> any Layer in
            try mcDropoutNetwork(f, on: device)
        }) { input, inferer, net in
            var acc = EntropyAccumulator()
            for _ in 0..<n {
                let logits = try SegmentationTask.logits(input, inferer) { try net($0) }
                try acc.add(probabilities: EntropyAccumulator.probabilities(logits: logits))
            }
            return try acc.score()
        }
    }

    /// The model's network with MC dropout and the weights of `file`.
    func mcDropoutNetwork(_ file: URL, on device: Device = .best) throws -> any Layer {
        guard file.pathExtension != "ts" else {
            throw MONAILabelError.invalid("model \(modelName): epistemic scoring needs a checkpoint; "
                + "TorchScript (\(file.lastPathComponent)) cannot take dropout layers")
        }
        guard let spec = Self.dropoutSpec(task.loader.networkSpec) else {
            let network = task.loader.networkSpec["name"]?.stringValue ?? "?"
            throw MONAILabelError.invalid("model \(modelName): network \(network) has no dropout")
        }
        let net = try ModelLoader.network(spec, weights: file)
        try net.to(device)
        guard net.enableMCDropout() > 0 else {
            throw MONAILabelError.invalid("model \(modelName): the network has no active dropout layer")
        }
        return net
    }
}
