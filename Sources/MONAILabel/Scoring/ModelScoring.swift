import Foundation
import Imaging
import TorchKit

/// A scoring method whose scores depend on a model's weights: stale once a new model file is published.
public protocol ModelDependentScoring: ScoringMethod {
    var modelName: String { get }
    /// True when some unlabeled image has no score from the current weights of `modelName`.
    func isStale(datastore: Datastore) -> Bool
}

/// A score of one segmentation model's predictions, stored under `keys` in the image info.
protocol SegmentationModelScoring: ModelDependentScoring {
    var task: SegmentationTask { get }
    static var keys: ModelScoreKeys { get }
}

extension SegmentationModelScoring {
    public func isStale(datastore: Datastore) -> Bool {
        ModelScoring.isStale(task: task, keys: Self.keys, datastore: datastore)
    }
}

/// Where a model-based score lives in an image's info: upstream's `<score>` and `<prefix>_ts`, plus the model
/// that computed it (not upstream: with several models scoring, a model-file time alone cannot tell whose
/// score it is).
struct ModelScoreKeys: Sendable {
    var score: String
    var ts: String
    var model: String
}

/// The loop upstream's `EpistemicScoring` and `TTAScoring` share: the model file's mtime in whole seconds as
/// the scores' version (`<prefix>_ts`), unlabeled images already scored with it skipped, then each other image
/// preprocessed with the model's pre-transforms and scored.
struct ModelScoring {
    let task: SegmentationTask
    let keys: ModelScoreKeys
    /// Upstream's log prefix (`EPISTEMIC`, `TTA`).
    let prefix: String
    let samples: Int
    /// Where the network runs: the scoring request's `device`, else the backend's first device.
    var device: Device = .best

    /// Upstream's `int(os.stat(model_file).st_mtime)`.
    static func modelTS(_ file: URL) -> Int? {
        FileOps.modificationTime(file.path).map { Int($0 / 1_000_000_000) }
    }

    /// Scored with the weights of time `ts` by `model`; a score without a model name (written by upstream)
    /// counts as the current model's.
    static func isCurrent(_ info: JSONObject?, keys: ModelScoreKeys, ts: Int, model: String) -> Bool {
        guard let info, info[keys.ts]?.intValue == ts else { return false }
        return info[keys.model]?.stringValue.map { $0 == model } ?? true
    }

    static func isStale(task: SegmentationTask, keys: ModelScoreKeys, datastore: Datastore) -> Bool {
        guard let file = task.currentModelFile, let ts = modelTS(file) else { return false }
        return datastore.unlabeledImages().contains { !isCurrent(datastore.imageInfo($0), keys: keys, ts: ts, model: task.name) }
    }

    /// Scores every unlabeled image not scored with the current model file: `network` builds the network once
    /// (only when some image needs it), `scoreImage` scores one preprocessed input (`[1, C, *spatial]` on the
    /// network's device) with the model's sliding-window inferer (nil for whole-volume models).
    func run<Network>(datastore: Datastore, log: (String) -> Void, network: (URL) throws -> Network,
                      scoreImage: (Tensor, SlidingWindowInferer?, Network) throws -> Double) throws -> ScoringOutcome
    {
        // Upstream scores random weights when no file exists; such scores rank noise, so we refuse instead.
        guard let file = task.currentModelFile, let ts = Self.modelTS(file) else {
            throw MONAILabelError.invalid("model \(task.name) has no weights file yet: train or publish one before scoring")
        }
        let images = datastore.unlabeledImages().sorted()
        log("\(prefix):: Total unlabeled images: \(images.count); model file \(file.lastPathComponent) (ts \(ts))")
        var out = ScoringOutcome()
        let todo = images.filter { !Self.isCurrent(datastore.imageInfo($0), keys: keys, ts: ts, model: task.name) }
        guard !todo.isEmpty else {
            log("\(prefix):: Total: \(images.count); Skipped = \(images.count); Executed: 0")
            return out
        }
        let net = try network(file)
        let inferer = try task.slidingWindow()
        for id in todo {
            guard let path = datastore.imageURI(id) else { continue }
            let started = Date()
            let score: Double
            do {
                score = try Torch.withNoGrad {
                    try scoreImage(try task.networkInput(imagePath: path).to(device), inferer, net)
                }
            } catch {
                log("\(prefix):: \(id): cannot score: \(error)")
                continue
            }
            guard score.isFinite else {
                log("\(prefix):: \(id): the model's output is NaN everywhere; not scored")
                continue
            }
            log(String(format: "%@:: %@ => %@: %.6g (%d samples, %.2f s)", prefix, id, keys.score, score, samples,
                       Date().timeIntervalSince(started)))
            let info: JSONObject = [keys.score: .double(score), keys.ts: .int(ts), keys.model: .string(task.name)]
            out.imageInfo[id] = info
            out.result[id] = .object(info)
        }
        DeviceMemory.releaseAfterRequest()
        log("\(prefix):: Total: \(images.count); Skipped = \(images.count - todo.count); Executed: \(out.result.count)")
        return out
    }
}

extension SegmentationTask {
    /// The image after the model's pre-transforms as the network's input, `[1, C, *spatial]`.
    func networkInput(imagePath: String) throws -> Tensor {
        var x: Volume
        do {
            x = try ImageIO.load(URL(fileURLWithPath: imagePath))
        } catch {
            throw MONAILabelError.invalid("cannot read image \(URL(fileURLWithPath: imagePath).lastPathComponent): \(error)")
        }
        for t in pre { try t.run(&x) }
        return try Tensor(x.floats, shape: [1] + x.shape)
    }

    /// The model's sliding-window inferer as its definition configures it; nil for a whole-volume model.
    func slidingWindow() throws -> SlidingWindowInferer? {
        guard let r = inferer["roi_size"] else { return nil }
        let roi: [Int]
        if let i = r.intValue {
            roi = Array(repeating: i, count: dimension)
        } else if let a = r.arrayValue, a.count == dimension, a.allSatisfy({ ($0.intValue ?? 0) > 0 }) {
            roi = a.compactMap(\.intValue)
        } else {
            throw MONAILabelError.invalid("model \(name): roi_size must be \(dimension) positive integers")
        }
        return SlidingWindowInferer(
            roiSize: roi, swBatchSize: inferer["sw_batch_size"]?.intValue ?? 1,
            overlap: inferer["overlap"]?.doubleValue ?? 0.25,
            mode: BlendMode(rawValue: inferer["mode"]?.stringValue ?? "constant") ?? .constant,
            padding: inferer["padding_mode"]?.stringValue == "replicate" ? .replicate : .constant(0))
    }

    /// The model's logits for `input` with `network`: through its sliding window when it has one.
    static func logits(_ input: Tensor, _ inferer: SlidingWindowInferer?, _ network: (Tensor) throws -> Tensor) throws
        -> Tensor
    {
        guard let inferer else { return try network(input) }
        return try inferer(input, accumulate: .auto) { try network($0) }
    }
}
