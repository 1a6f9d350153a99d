import Foundation
import Imaging

/// Upstream's `HistogramBasedGraphCut` ("Histogram+GraphCut", spec section 4.5): segments the image from the
/// user's scribbles alone. Pre: load image + scribbles, `AddBackgroundScribblesFromROId`, `Spacingd`
/// (2.5, 2.5, 5.0), `ScaleIntensityRanged` (−300..200 → 0..1, clipped); likelihood: intensity histograms of the
/// background and foreground scribbles; post: ISeg unary with the scribbles as hard constraints, GraphCut
/// (our `GridMaxFlow`), `Restored` onto the image grid, `BoundingBoxd` into `bbox`.
///
/// One deliberate difference: upstream softmaxes the two histogram likelihoods as if they were logits
/// (spec pitfall 13), which squashes every probability towards 0.5 and leaves the unary almost flat. Here
/// they are normalised to sum to one, which is what ISeg's unary (Wang et al., TMI 2018, eq. 7) expects.
public final class HistogramGraphCutTask: InferTask, @unchecked Sendable {
    public let name: String
    public let type = "scribbles"
    public let labels: JSONValue
    public let dimension = 3
    public let description = "A post processing step with histogram-based GraphCut for Generic segmentation"
    public var config: JSONObject {
        DeviceList.config(["num_bins": .int(defaults.numBins), "lamda": .double(defaults.lamda),
                           "sigma": .double(defaults.sigma)])
    }
    public let modelPaths: [URL] = []

    let defaults: ScribblesParameters

    /// `labels` are the app's labels (upstream passes the last model config's), which fix the default
    /// scribble values.
    public init(name: String = "Histogram+GraphCut", labels: JSONValue, defaults: ScribblesParameters = .histogram) {
        self.name = name
        self.labels = labels
        self.defaults = defaults
    }

    public func infer(_ request: InferRequest) throws -> InferResult {
        var timings = Timings()
        let started = DispatchTime.now()
        let parameters = try defaults.overridden(by: request.params)
        let input = try ScribblesPipeline.prepare(request, task: name, labels: labels, requireScribbles: true,
                                                  timings: &timings)
        let likelihood = try timings.measure("stage", "infer") {
            try ScribblesPipeline.histogramLikelihood(
                input.intensities, scribbles: input.scribbles, ids: input.ids, bins: parameters.numBins)
        }
        timings.record("stage", "invert", 0)
        return try ScribblesPipeline.graphCutAndFinish(
            likelihood, input: input, parameters: parameters, request: request, labels: labels, timings: &timings,
            started: started)
    }
}

/// `lamda`, `sigma`, `num_bins`: the task's defaults, overridable per request.
public struct ScribblesParameters: Sendable {
    public var numBins: Int
    public var lamda: Double
    public var sigma: Double

    /// The radiology app's histogram defaults (64 bins, λ = 1, σ = 0.1).
    public static let histogram = ScribblesParameters(numBins: 64, lamda: 1.0, sigma: 0.1)

    func overridden(by p: JSONObject) throws -> ScribblesParameters {
        var r = self
        // Bounded so that the Float capacities the graph is built from stay finite and non-zero.
        if let b = try p.intParam("num_bins", in: 1...65536) { r.numBins = b }
        if let l = try p.doubleParam("lamda", in: 0...1e6) { r.lamda = l }
        if let s = try p.doubleParam("sigma", in: 1e-6...1e6) { r.sigma = s }
        return r
    }
}

/// Which label values are background and foreground scribbles.
struct ScribbleIDs: Sendable {
    var background: Float
    var foreground: Float

    /// Upstream's defaults for an app with `labels`: background = number of labels + 1, foreground = + 2.
    static func defaultValues(labels: JSONValue) -> (background: Int, foreground: Int) {
        let n: Int
        switch labels {
        case .object(let o): n = o.count
        case .array(let a): n = a.count
        case .string: n = 1
        default: n = 0
        }
        return (n + 1, n + 2)
    }

    /// `label_info` entries named `background_scribbles` / `foreground_scribbles` override the defaults.
    init(labelInfo: JSONValue?, background: Int, foreground: Int) throws {
        self.background = Float(background)
        self.foreground = Float(foreground)
        guard let info = labelInfo, info != .null else { return }
        guard let entries = info.arrayValue else {
            throw MONAILabelError.invalid("label_info must be a list of {\"name\", \"id\"}")
        }
        for e in entries {
            guard let name = e["name"]?.stringValue else { continue }
            // Scribble values are label voxel values; bounded so the Float round trip stays exact.
            let id = try e.objectValue?.intParam("id", in: 0...65_535) ?? e.objectValue?.intParam("idx", in: 0...65_535)
            if name == "background_scribbles", let id { self.background = Float(id) }
            if name == "foreground_scribbles", let id { self.foreground = Float(id) }
        }
        guard self.background != self.foreground else {
            throw MONAILabelError.invalid("background and foreground scribbles share the value \(Int(self.background))")
        }
    }
}

/// The scribbles transforms, as pure functions over flat C-order arrays.
enum ScribblesPipeline {
    /// Upstream's `Spacingd` target for scribbles.
    static let pixdim = [2.5, 2.5, 5.0]

    /// `AddBackgroundScribblesFromROId`: outside the ROI is background; with no foreground scribble at all, a
    /// ±5-voxel cube at the ROI centre becomes foreground so the likelihood has something to learn from.
    static func addBackgroundScribbles(_ v: Volume, roi: [Int]?, ids: ScribbleIDs) -> Volume {
        guard let roi else { return v }
        let shape = v.spatialShape
        let rank = shape.count
        var lo = Array(repeating: 0, count: rank), hi = shape
        for a in 0..<min(rank, roi.count / 2) {
            lo[a] = max(0, min(shape[a], roi[2 * a]))
            hi[a] = max(lo[a], min(shape[a], roi[2 * a + 1]))
        }
        var values = v.floats
        var strides = Array(repeating: 1, count: rank)
        for a in stride(from: rank - 2, through: 0, by: -1) { strides[a] = strides[a + 1] * shape[a + 1] }
        func inside(_ i: Int, _ lo: [Int], _ hi: [Int]) -> Bool {
            for a in 0..<rank {
                let c = (i / strides[a]) % shape[a]
                if c < lo[a] || c >= hi[a] { return false }
            }
            return true
        }
        for i in values.indices where !inside(i, lo, hi) { values[i] = ids.background }
        if !values.contains(ids.foreground) {
            let centre = (0..<rank).map { (lo[$0] + hi[$0]) / 2 }
            let cl = centre.enumerated().map { max(lo[$0.offset], $0.element - 5) }
            let ch = centre.enumerated().map { min(hi[$0.offset], $0.element + 5) }
            for i in values.indices where inside(i, cl, ch) { values[i] = ids.foreground }
        }
        return Volume(spatialShape: shape, channels: v.channels, data: .float32(values), affine: v.affine, source: v.source)
    }

    /// `MakeLikelihoodFromScribblesHistogramd`: normalised histograms (+1 per bin) of the scribbled
    /// intensities, looked up per voxel; returns the foreground probability `p_fg / (p_fg + p_bg)`.
    static func histogramLikelihood(_ image: [Float], scribbles: [Float], ids: ScribbleIDs, bins: Int) throws -> [Float] {
        guard image.count == scribbles.count else {
            throw MONAILabelError.invalid("scribbles and image differ in size after resampling")
        }
        // Upstream rescales to [0, 1] when the image is outside it; after the clipped window it never is,
        // but an image without variation still needs a defined bin.
        var lo = Float.infinity, hi = -Float.infinity
        for x in image { lo = min(lo, x); hi = max(hi, x) }
        let rescale = lo < 0 || hi > 1
        let span = hi - lo
        @inline(__always) func bin(_ x: Float) -> Int {
            let u = rescale ? (span > 0 ? (x - lo) / span : 0) : x
            // An image may hold NaN or infinities, which Int() would trap on: NaN goes to bin 0.
            let scaled = u * Float(bins)
            if !(scaled >= 0) { return 0 }
            if scaled >= Float(bins - 1) { return bins - 1 }
            return Int(scaled)
        }
        var fg = [Double](repeating: 1, count: bins), bg = [Double](repeating: 1, count: bins)
        var nfg = 0, nbg = 0
        for i in image.indices {
            if scribbles[i] == ids.foreground { fg[bin(image[i])] += 1; nfg += 1 }
            else if scribbles[i] == ids.background { bg[bin(image[i])] += 1; nbg += 1 }
        }
        guard nfg > 0 else {
            throw MONAILabelError.invalid("no foreground scribbles (value \(Int(ids.foreground))) in the label")
        }
        guard nbg > 0 else {
            throw MONAILabelError.invalid("no background scribbles (value \(Int(ids.background))) in the label")
        }
        let sf = fg.reduce(0, +), sb = bg.reduce(0, +)
        let pf = fg.map { $0 / sf }, pb = bg.map { $0 / sb }
        let table = (0..<bins).map { Float(pf[$0] / (pf[$0] + pb[$0])) }
        return image.map { table[bin($0)] }
    }

    /// `MakeISegUnaryd`: the foreground probability with scribbles as hard constraints, (bg, fg) = (1−ε, ε) on
    /// background scribbles and (ε, 1−ε) on foreground ones.
    static func isegUnary(foreground p: [Float], scribbles: [Float], ids: ScribbleIDs) -> [Float] {
        let eps = Float.ulpOfOne
        var out = p
        for i in out.indices {
            if scribbles[i] == ids.background { out[i] = eps }
            else if scribbles[i] == ids.foreground { out[i] = 1 - eps }
        }
        return out
    }

    /// `ApplyGraphCutOptimisationd`: t-links −ln(max(p, ε)), n-links λ·exp(−ΔI²/(2σ²)) between axis neighbours;
    /// returns 1 for foreground voxels.
    ///
    /// Scribbled voxels get t-links no labelling of their neighbours can outweigh (more than all their n-links
    /// together), which makes ISeg's constraint (eq. 7: probability 1 for the scribbled label) hard as the
    /// paper states it. With ε-probabilities alone, −ln ε ≈ 15.9 loses to the n-links once λ > 2.6 and the cut
    /// can overrule the user.
    static func graphCut(
        _ image: [Float], shape: [Int], foreground p: [Float], scribbles: [Float], ids: ScribbleIDs, lamda: Double,
        sigma: Double
    ) throws -> [UInt8] {
        let eps = Float.ulpOfOne
        let g: GridMaxFlow
        do { g = try GridMaxFlow(shape: shape) } catch let e as MaxFlowError { throw MONAILabelError.invalid(e.description) }
        let hard = Float(2 * shape.count) * Float(lamda) - log(eps) + 1
        // Labelling a voxel background cuts its source link, so the source capacity is the background cost.
        var source = p.map { -log(max(1 - $0, eps)) }
        var sink = p.map { -log(max($0, eps)) }
        for i in scribbles.indices {
            if scribbles[i] == ids.foreground { source[i] = hard; sink[i] = 0 }
            else if scribbles[i] == ids.background { source[i] = 0; sink[i] = hard }
        }
        do {
            try g.addTerminalCapacities(source: source, sink: sink)
            try g.setContrastNeighbourCapacities(image: image, lamda: Float(lamda), sigma: Float(sigma))
        } catch let e as MaxFlowError {
            // Capacities come from the client's image and parameters (a NaN voxel, say).
            throw MONAILabelError.invalid(e.description)
        }
        g.solve()
        return g.sourceSide().map { $0 ? 1 : 0 }
    }

    /// MONAI's `BoundingRect` of a one-channel label, squeezed: `[start0, end0, start1, end1, ...]` over the
    /// non-zero voxels (end exclusive); all zeros when the label is empty.
    static func boundingRect(_ values: [Float], shape: [Int]) -> [Int] {
        let rank = shape.count
        var strides = Array(repeating: 1, count: rank)
        for a in stride(from: rank - 2, through: 0, by: -1) { strides[a] = strides[a + 1] * shape[a + 1] }
        var lo = shape, hi = Array(repeating: -1, count: rank)
        for i in values.indices where values[i] != 0 {
            for a in 0..<rank {
                let c = (i / strides[a]) % shape[a]
                lo[a] = min(lo[a], c)
                hi[a] = max(hi[a], c)
            }
        }
        guard hi.allSatisfy({ $0 >= 0 }) else { return Array(repeating: 0, count: 2 * rank) }
        return (0..<rank).flatMap { [lo[$0], hi[$0] + 1] }
    }
}

/// What every scribbles task works on: the original image, and on the scribbles grid (`pixdim`) the windowed
/// intensities and the scribble values.
struct ScribblesInput {
    let image: Volume
    let grid: Grid
    let intensities: [Float]
    let scribbles: [Float]
    let ids: ScribbleIDs
}

extension ScribblesPipeline {
    /// Pre-transforms shared by the scribbles tasks: `LoadImaged` (image + `label` scribbles),
    /// `AddBackgroundScribblesFromROId` (params `roi`), `Spacingd` to `pixdim` (bilinear / nearest),
    /// `ScaleIntensityRanged` (−300..200 → 0..1). The scribble values are the request's `label_info`, else
    /// upstream's defaults for the app's `labels`. Without `requireScribbles` a missing `label` means no
    /// scribbles at all.
    static func prepare(
        _ request: InferRequest, task: String, labels: JSONValue, requireScribbles: Bool, timings: inout Timings
    ) throws -> ScribblesInput {
        let p = request.params
        let (background, foreground) = ScribbleIDs.defaultValues(labels: labels)
        let ids = try ScribbleIDs(labelInfo: p["label_info"], background: background, foreground: foreground)
        let labelPath = p["label"]?.stringValue.flatMap { $0.isEmpty ? nil : $0 }
        if labelPath == nil && requireScribbles {
            throw MONAILabelError.invalid("\(task) needs the scribbles: upload them as the 'label' file part")
        }
        let roi = try Self.roi(p["roi"])
        let (image, loaded) = try timings.measure("pre", "LoadImaged") { () throws -> (Volume, Volume) in
            let image = try Self.load(request.imagePath, what: "image")
            guard let labelPath else {
                let none = [UInt8](repeating: 0, count: image.voxelCount)
                return (image, Volume(spatialShape: image.spatialShape, data: .uint8(none), affine: image.affine))
            }
            let scribbles = try Self.load(labelPath, what: "scribbles")
            guard scribbles.spatialShape == image.spatialShape, scribbles.channels == 1 else {
                throw MONAILabelError.invalid(
                    "scribbles \(scribbles.shape) do not match the image \(image.shape): draw them on the image's grid")
            }
            return (image, scribbles)
        }
        timings.record("pre", "EnsureChannelFirstd", 0)
        let scribbles = timings.measure("pre", "AddBackgroundScribblesFromROId") {
            addBackgroundScribbles(loaded, roi: roi, ids: ids)
        }
        let (windowed, marks) = try timings.measure("pre", "Spacingd") { () throws -> (Volume, Volume) in
            let img = try Spacing(pixdim: pixdim, mode: .bilinear)(image)
            let lab = try Spacing(pixdim: pixdim, mode: .nearest)(scribbles)
            return (img, lab)
        }
        let intensities = timings.measure("pre", "ScaleIntensityRanged") {
            ScaleIntensityRange(aMin: -300, aMax: 200, bMin: 0, bMax: 1, clip: true)(windowed).floats
        }
        return ScribblesInput(image: image, grid: marks.grid, intensities: intensities, scribbles: marks.floats, ids: ids)
    }

    /// The post-transforms of the GraphCut tasks: ISeg's unary from the `foreground` likelihood with the
    /// scribbles as hard constraints, GraphCut (`lamda`, `sigma`), then `finish`.
    static func graphCutAndFinish(
        _ foreground: [Float], input: ScribblesInput, parameters: ScribblesParameters, request: InferRequest,
        labels: JSONValue, timings: inout Timings, started: DispatchTime
    ) throws -> InferResult {
        let unary = timings.measure("post", "MakeISegUnaryd") {
            isegUnary(foreground: foreground, scribbles: input.scribbles, ids: input.ids)
        }
        let segmentation = try timings.measure("post", "ApplyGraphCutOptimisationd") {
            try graphCut(
                input.intensities, shape: input.grid.spatialShape, foreground: unary, scribbles: input.scribbles,
                ids: input.ids, lamda: parameters.lamda, sigma: parameters.sigma)
        }
        return try finish(segmentation, input: input, request: request, labels: labels, timings: &timings, started: started)
    }

    /// Post-transforms shared by the scribbles tasks: `Restored` of the 0/1 result onto the image grid,
    /// `BoundingBoxd` into `bbox`, the writer (`result_extension`, `result_dtype`, `skip_writer`), and the
    /// result JSON (`bbox`, `label_names`, `latencies`, `centroids`).
    static func finish(
        _ segmentation: [UInt8], input: ScribblesInput, request: InferRequest, labels: JSONValue, timings: inout Timings,
        started: DispatchTime
    ) throws -> InferResult {
        let pred = Volume(
            spatialShape: input.grid.spatialShape, channels: 1, data: .uint8(segmentation), affine: input.grid.affine)
        let restored = try timings.measure("post", "Restored") { try Restored(original: input.image)(pred) }
        let restoredLabels = restored.data.converted(to: .uint8)
        let bbox = timings.measure("post", "BoundingBoxd") {
            boundingRect(restoredLabels.asFloat(), shape: restored.spatialShape)
        }
        return try .written(restored, for: request, labels: labels, timings: &timings, started: started,
                            extra: ["bbox": .array(bbox.map { .int($0) })])
    }

    static func load(_ path: String, what: String) throws -> Volume {
        let url = URL(fileURLWithPath: path)
        do {
            return try ImageIO.load(url)
        } catch {
            throw MONAILabelError.invalid("cannot read the \(what) \(url.lastPathComponent): \(error)")
        }
    }

    /// `roi` `[x0, x1, y0, y1, z0, z1]` (voxel indices of the image, end exclusive); absent or empty means none.
    static func roi(_ v: JSONValue?) throws -> [Int]? {
        guard let v, v != .null else { return nil }
        guard let a = v.arrayValue else { throw MONAILabelError.invalid("roi must be a list [x0, x1, y0, y1, z0, z1]") }
        if a.isEmpty { return nil }
        let ints = a.compactMap(\.intValue)
        guard ints.count == a.count, ints.count % 2 == 0, ints.count >= 4 else {
            throw MONAILabelError.invalid("roi must be a list of integers [x0, x1, y0, y1, z0, z1]")
        }
        return ints
    }
}
