import Foundation
import Imaging
import TorchKit

/// A model's foreground probability for one of its labels, on the model's own grid (any affine: the caller
/// resamples it in world space).
public protocol ForegroundProbabilitySource: Sendable {
    /// The model's name, for messages.
    var name: String { get }
    /// The model's labels: `{name: value}` or a list of names.
    var labels: JSONValue { get }
    /// Changes whenever the model's answer for the same image may change (new weights).
    var weightsVersion: String { get }
    /// P(voxel belongs to `label`) for the image at `imagePath`, one channel of float voxels.
    func foregroundProbability(imagePath: String, label: String, params: JSONObject) throws -> Volume
}

/// "ISeg+GraphCut": scribbles-based refinement of a segmentation model's prediction (Wang et al.,
/// "Interactive Medical Image Segmentation Using Deep Learning With Image-Specific Fine Tuning", IEEE TMI
/// 2018, eq. 5 and 7), under the name upstream's scribbles post-processing apps gave it. The model's softmax
/// probability of the selected label is the likelihood; the user's scribbles are hard constraints on it
/// (ISeg eq. 7: probability 1 for the scribbled label, which the GraphCut enforces with t-links no smoothing
/// can outweigh); GraphCut with the same contrast-sensitive n-links as `Histogram+GraphCut` gives the refined
/// label, restored onto the image grid.
///
/// Upstream's apps saved the model's logits at segmentation time and loaded them here; this task runs the
/// app's segmentation model itself (its full pipeline: pre-transforms, sliding window, softmax) and keeps
/// the last image's probabilities, so repeated scribble updates on one image cost only the GraphCut.
/// The label refined is `selected_label_name` (what Slicer sends: the segment the result is merged into),
/// taken from the first of the task's models that segments it; when it names no label of any of them (a
/// scribbles segment, or nothing) the first model's first label. Scribbles are optional: without a `label` upload the result is the model's
/// prediction smoothed by the GraphCut. Pre/post-transforms, `roi` and `label_info` as for the other
/// scribbles tasks.
public final class ISegGraphCutTask: InferTask, @unchecked Sendable {
    public let name: String
    public let type = "scribbles"
    /// The first model's labels (they fix the default scribble values).
    public var labels: JSONValue { models[0].labels }
    public let dimension = 3
    public var description: String {
        let names = models.map(\.name).joined(separator: ", ")
        return "A post processing step refining the \(names) model's prediction with scribbles (ISeg + GraphCut)"
    }
    public var config: JSONObject {
        DeviceList.config(["lamda": .double(defaults.lamda), "sigma": .double(defaults.sigma)])
    }
    public let modelPaths: [URL] = []

    /// Never empty.
    let models: [any ForegroundProbabilitySource]
    let defaults: ScribblesParameters
    private let cache = ProbabilityCache()

    /// Refines `model`'s predictions. Default scribble values follow the model's labels (n + 1, n + 2).
    public convenience init(name: String = "ISeg+GraphCut", model: any ForegroundProbabilitySource, defaults: ScribblesParameters = .iseg) {
        self.init(name: name, first: model, others: [], defaults: defaults)
    }

    /// Refines the predictions of whichever of `first`, `others` segments the selected label.
    public init(
        name: String = "ISeg+GraphCut", first: any ForegroundProbabilitySource, others: [any ForegroundProbabilitySource],
        defaults: ScribblesParameters = .iseg
    ) {
        self.name = name
        models = [first] + others
        self.defaults = defaults
    }

    public func infer(_ request: InferRequest) throws -> InferResult {
        let p = request.params
        var timings = Timings()
        let started = DispatchTime.now()
        let parameters = try defaults.overridden(by: p)
        let input = try ScribblesPipeline.prepare(request, task: name, labels: labels, requireScribbles: false,
                                                  timings: &timings)
        let (model, label) = try refinedLabel(p["selected_label_name"]?.stringValue)

        let probability = try timings.measure("stage", "infer") { () throws -> [Float] in
            let key = ProbabilityCache.Key(
                imagePath: request.imagePath, imageTime: FileOps.modificationTime(request.imagePath),
                model: model.name, label: label, weights: model.weightsVersion, grid: input.grid)
            if let hit = cache.get(key) { return hit }
            let onModelGrid = try model.foregroundProbability(imagePath: request.imagePath, label: label, params: p)
            let resampled = try SpatialResample.resample(onModelGrid, to: input.grid, mode: .bilinear, padding: .border)
            let values = resampled.floats.map { min(1, max(0, $0)) }
            cache.set(key, values)
            return values
        }
        timings.record("stage", "invert", 0)
        return try ScribblesPipeline.graphCutAndFinish(
            probability, input: input, parameters: parameters, request: request, labels: model.labels,
            timings: &timings, started: started)
    }

    /// The model and label to refine: the first model that segments `selected`, else the first model's first
    /// label (Slicer may have a scribbles segment selected, which no model segments).
    private func refinedLabel(_ selected: String?) throws -> (any ForegroundProbabilitySource, String) {
        if let selected, let m = models.first(where: { ModelLabels.names($0.labels).contains(selected) }) {
            return (m, selected)
        }
        guard let first = ModelLabels.names(models[0].labels).first else {
            throw MONAILabelError.invalid("model \(models[0].name) has no labels to refine")
        }
        return (models[0], first)
    }
}

extension ScribblesParameters {
    /// ISeg+GraphCut defaults, λ = 7, σ = 0.03 (on the 0..1 window, i.e. 15 HU): a model's probabilities are
    /// sharper than histogram likelihoods, so corrections need a stronger pairwise term than
    /// `Histogram+GraphCut`'s λ = 1 to spread from the strokes into the region they mark, and a smaller σ so
    /// that organ edges (≈ 0.15) stay cheap to cut while CT noise (≈ 0.03) does not. On the synthetic spleen
    /// the useful range is λ ∈ [5, 10] at this σ: below, strokes fix only their own voxels; above, the
    /// smoothing starts to erase correct predictions. `numBins` is unused.
    public static let iseg = ScribblesParameters(numBins: 64, lamda: 7.0, sigma: 0.03)
}

/// A model's label names in output-channel order: a `{name: value}` map sorted by value (the order the
/// segmentation models' channels follow), `background` left out; a list as given.
enum ModelLabels {
    static func names(_ labels: JSONValue) -> [String] {
        switch labels {
        case .object(let o):
            return o.filter { $0.key != "background" }.map { ($0.key, $0.value.doubleValue ?? 0) }
                .sorted { $0.1 < $1.1 }.map(\.0)
        case .array(let a): return a.compactMap(\.stringValue).filter { $0 != "background" }
        case .string(let s): return [s]
        default: return []
        }
    }
}

/// The last image's probabilities on the scribbles grid: Slicer sends the whole scribbles labelmap again on
/// every update of one image, and the model's answer does not change between them.
private final class ProbabilityCache: @unchecked Sendable {
    struct Key: Equatable {
        var imagePath: String
        var imageTime: Int64?
        var model: String
        var label: String
        var weights: String
        var grid: Grid
    }

    private let lock = NSLock()
    private var entry: (Key, [Float])?

    func get(_ key: Key) -> [Float]? {
        lock.lock()
        defer { lock.unlock() }
        guard let entry, entry.0 == key else { return nil }
        return entry.1
    }

    func set(_ key: Key, _ values: [Float]) {
        lock.lock()
        entry = (key, values)
        lock.unlock()
    }
}

extension SegmentationTask: ForegroundProbabilitySource {
    public var weightsVersion: String {
        guard let f = loader.currentFile else { return "untrained" }
        return "\(f.path)@\(FileOps.modificationTime(f.path) ?? 0)"
    }

    /// The network's softmax output for `label` on the preprocessed grid: the same pre-transforms and
    /// inferer as `infer`, the channel of `label` (its position among the labels sorted by value, plus one
    /// for background) instead of the argmax.
    public func foregroundProbability(imagePath: String, label: String, params: JSONObject) throws -> Volume {
        var timings = Timings()
        let (input, grid, _) = try preprocess(imagePath: imagePath, timings: &timings)
        let logits = try predictTensor(input: input, params: params)
        let spatial = grid.spatialShape
        guard logits.shape.count == spatial.count + 2, Array(logits.shape.dropFirst(2)) == spatial else {
            throw MONAILabelError.io("model \(name): the network returned \(logits.shape) for an input of \(spatial)")
        }
        guard let index = ModelLabels.names(labels).firstIndex(of: label) else {
            throw MONAILabelError.invalid("model \(name) has no label '\(label)'")
        }
        let channels = logits.shape[1]
        let probability: Tensor
        if channels == 1 {
            // A single-channel network predicts its one label through a sigmoid.
            probability = try logits.sigmoid()
        } else {
            guard index + 1 < channels else {
                throw MONAILabelError.io("model \(name) has \(channels) output channels; label '\(label)' needs \(index + 2)")
            }
            probability = try logits.softmax(dim: 1).narrow(dim: 1, start: index + 1, length: 1)
        }
        let values = try probability.contiguous().floats()
        return Volume(spatialShape: spatial, channels: 1, data: .float32(values), affine: grid.affine)
    }
}
