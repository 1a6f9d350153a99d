import Foundation
import TorchKit

/// The per-voxel variance of probabilities across samples, summed over the foreground channels (channel 0 is
/// left out when there are several, as for the entropy), and its NaN-ignoring mean over voxels: upstream's
/// `epistemic_v2` variance mode. Population variance (numpy's `var`), from running sums.
public struct VarianceAccumulator {
    private var sum: Tensor?
    private var sumOfSquares: Tensor?
    public private(set) var samples = 0

    public init() {}

    /// Adds one sample's probabilities, `[1, C, *spatial]`.
    public mutating func add(probabilities p: Tensor) throws {
        guard p.rank >= 3, p.shape[0] == 1 else {
            throw MONAILabelError.invalid("variance: probabilities must be [1, C, *spatial], got \(p.shape)")
        }
        let c = p.shape[1]
        let kept = try (c > 1 ? p.narrow(dim: 1, start: 1, length: c - 1) : p).to(dtype: .float64, device: p.device)
        if let s = sum, let q = sumOfSquares {
            guard s.shape == kept.shape else {
                throw MONAILabelError.invalid("variance: sample shape \(kept.shape) differs from \(s.shape)")
            }
            sum = try s.add(kept)
            sumOfSquares = try q.add(kept.square())
        } else {
            sum = kept
            sumOfSquares = try kept.square()
        }
        samples += 1
    }

    /// Σ_c var per voxel, `[*spatial]`.
    public func varianceMap() throws -> Tensor {
        guard let sum, let sumOfSquares, samples > 0 else { throw MONAILabelError.invalid("variance: no samples") }
        let mean = try sum.div(Double(samples))
        // E[p²] − E[p]² can dip below 0 by rounding.
        let v = try sumOfSquares.div(Double(samples)).sub(mean.square()).clamp(min: 0)
        return try v.sum(dims: [1]).squeeze(dim: 0)
    }

    public func score() throws -> Double {
        let v = try varianceMap()
        let nan = try v.isNaN()
        let valid = try nan.logicalNot().to(.float64).sum().item()
        let total = try Tensor.where(nan, Tensor.scalar(0, dtype: v.dtype, device: v.device), v).sum().item()
        return valid > 0 ? total / valid : .nan
    }
}

/// Test-time augmentation scoring (upstream's `TTAScoring` idea, `tasks/scoring/tta.py`), cheap and
/// deterministic: the model in evaluation mode on the image flipped along each combination of spatial axes
/// (identity first), each prediction flipped back, softmax, and the mean per-voxel variance across them
/// (`VarianceAccumulator`). Stored as `tta_variance` and `tta_ts` (the model file's mtime) in the image info.
///
/// Upstream draws random affine transforms, rotations and flips, thresholds sigmoid outputs and stores
/// `tta_vvc` = std/mean over the whole stack, which mostly measures how small the foreground is rather than
/// how much the predictions disagree; hence another key for another quantity.
public struct TTAScoring: SegmentationModelScoring {
    public let name: String
    public let description = "Compute initial score based on TTA"
    /// Default augmentations (`--conf tta_samples`, upstream's 5), at most the 2^dims flip combinations.
    public let samples: Int
    let task: SegmentationTask
    public var modelName: String { task.name }
    static let keys = ModelScoreKeys(score: "tta_variance", ts: "tta_ts", model: "tta_model")

    /// The flip combinations over spatial dims `2..<2+dims` of a `[1, C, *spatial]` tensor: the identity, then
    /// single axes, then pairs, ...
    static func flips(dims: Int) -> [[Int]] {
        let axes = Array(2..<(2 + dims))
        var all: [[Int]] = []
        for mask in 0..<(1 << dims) {
            all.append(axes.enumerated().filter { mask & (1 << $0.offset) != 0 }.map(\.element))
        }
        return all.sorted { $0.count != $1.count ? $0.count < $1.count : $0.lexicographicallyPrecedes($1) }
    }

    public func score(request: JSONObject, datastore: Datastore, log: (String) -> Void) throws -> ScoringOutcome {
        log("Starting TTA scoring with model \(modelName)")
        let flips = Self.flips(dims: task.dimension)
        let n = min(max(try ScoringService.numSamples(request) ?? samples, 2), flips.count)
        let device = try DeviceList.requested(request["device"]) ?? .best
        let loop = ModelScoring(task: task, keys: Self.keys, prefix: "TTA", samples: n, device: device)
        return try loop.run(datastore: datastore, log: log, network: { (f: URL) throws -> (Tensor) throws -> Tensor in
            try evalNetwork(f, on: device)
        }) { input, inferer, net in
            try Self.score(input: input, flips: Array(flips.prefix(n))) { try SegmentationTask.logits($0, inferer, net) }
        }
    }

    /// The variance score of `predict` over `input` flipped by each of `flips` (and flipped back).
    static func score(input: Tensor, flips: [[Int]], predict: (Tensor) throws -> Tensor) throws -> Double {
        var acc = VarianceAccumulator()
        for axes in flips {
            let x = axes.isEmpty ? input : try input.flip(axes)
            var logits = try predict(x)
            if !axes.isEmpty { logits = try logits.flip(axes) }
            try acc.add(probabilities: EntropyAccumulator.probabilities(logits: logits))
        }
        return try acc.score()
    }

    /// The served network in evaluation mode (a TorchScript file works too: no layer is changed).
    func evalNetwork(_ file: URL, on device: Device) throws -> (Tensor) throws -> Tensor {
        if file.pathExtension == "ts" {
            let s = try ScriptModule(contentsOf: file, device: device)
            try s.eval()
            return { try s.forward($0) }
        }
        let net = try ModelLoader.network(task.loader.networkSpec, weights: file)
        try net.to(device)
        net.eval()
        return { try net($0) }
    }
}
