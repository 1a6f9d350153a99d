import Foundation
import Imaging

/// "Scribbles+GeoS": segmentation from the scribbles by geodesic distance (Criminisi, Sharp, Blake, "GeoS:
/// Geodesic Image Segmentation", ECCV 2008). Upstream 0.8.5 has no geodesic code; this task follows the
/// other scribbles tasks' request and result conventions (same pre-transforms, scribble values, `roi`,
/// `label_info`, `bbox`), with the geodesic distances taking the place of likelihood + GraphCut: a voxel is
/// foreground when it is geodesically closer to the foreground scribbles than to the background ones.
///
/// Config: `gamma` weighs intensity differences against distance (a step costs
/// `sqrt(Δx² + γ²ΔI²)` mm on the 0..1 windowed image), `theta` (mm, 0 = off) applies GeoS's symmetric
/// geodesic filtering (an opening then a closing) that removes islands and fills holes thinner than θ.
public final class GeoSTask: InferTask, @unchecked Sendable {
    public let name: String
    public let type = "scribbles"
    public let labels: JSONValue
    public let dimension = 3
    public let description = "A geodesic (GeoS) segmentation from foreground and background scribbles"
    public var config: JSONObject {
        DeviceList.config(["gamma": .double(defaults.gamma), "theta": .double(defaults.theta)])
    }
    public let modelPaths: [URL] = []

    let defaults: GeoSParameters

    /// `labels` are the app's labels, which fix the default scribble values as for `Histogram+GraphCut`.
    public init(name: String = "Scribbles+GeoS", labels: JSONValue, defaults: GeoSParameters = .standard) {
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
        let ids = input.ids
        guard input.scribbles.contains(ids.foreground) else {
            throw MONAILabelError.invalid("no foreground scribbles (value \(Int(ids.foreground))) in the label")
        }
        guard input.scribbles.contains(ids.background) else {
            throw MONAILabelError.invalid("no background scribbles (value \(Int(ids.background))) in the label")
        }
        let spacing = input.grid.affine.spacing
        let shape = input.grid.spatialShape
        let gamma = Float(parameters.gamma)
        var segmentation = try timings.measure("stage", "infer") {
            try GeoS.segment(
                image: input.intensities, shape: shape, spacing: spacing, scribbles: input.scribbles, ids: ids,
                gamma: gamma)
        }
        timings.record("stage", "invert", 0)
        if parameters.theta > 0 {
            segmentation = try timings.measure("post", "GeodesicSymmetricFilterd") {
                try GeoS.symmetricFilter(
                    segmentation, image: input.intensities, shape: shape, spacing: spacing, gamma: gamma,
                    theta: Float(parameters.theta), scribbles: input.scribbles, ids: ids)
            }
        }
        return try ScribblesPipeline.finish(
            segmentation, input: input, request: request, labels: labels, timings: &timings, started: started)
    }
}

/// `gamma` and `theta`: the GeoS task's defaults, overridable per request.
public struct GeoSParameters: Sendable {
    public var gamma: Double
    public var theta: Double

    /// γ = 200: an intensity edge of 0.15 on the 0..1 window (≈ 75 HU) costs as much as 30 mm of travel;
    /// no smoothing. On the synthetic spleen (12 HU noise) Dice rises with γ from 0.53 (γ = 0, plain
    /// distance) through 0.93 (γ = 100) to 0.997 (γ = 200).
    public static let standard = GeoSParameters(gamma: 200, theta: 0)

    func overridden(by p: JSONObject) throws -> GeoSParameters {
        var r = self
        // Bounded so that gamma squared stays a finite Float.
        if let g = try p.doubleParam("gamma", in: 0...1e6) { r.gamma = g }
        if let t = try p.doubleParam("theta", in: 0...1e6) { r.theta = t }
        return r
    }
}

/// GeoS segmentation and filtering over flat C-order arrays.
public enum GeoS {
    /// `segment` with scribble values given directly (for benchmarks and callers outside this module):
    /// 1 where a voxel is geodesically closer to the `foreground`-valued scribbles than to the `background` ones.
    public static func segment(
        image: [Float], shape: [Int], spacing: [Double], scribbles: [Float], background: Float, foreground: Float,
        gamma: Float
    ) throws -> [UInt8] {
        let ids = try ScribbleIDs(labelInfo: nil, background: Int(background), foreground: Int(foreground))
        return try segment(image: image, shape: shape, spacing: spacing, scribbles: scribbles, ids: ids, gamma: gamma)
    }

    /// 1 where the geodesic distance to the foreground scribbles is below the one to the background scribbles.
    static func segment(
        image: [Float], shape: [Int], spacing: [Double], scribbles: [Float], ids: ScribbleIDs, gamma: Float
    ) throws -> [UInt8] {
        let seeds = [GeodesicDistance.seeds(scribbles, equal: ids.foreground),
                     GeodesicDistance.seeds(scribbles, equal: ids.background)]
        let maps = try GeodesicDistance.transform(image: image, shape: shape, spacing: spacing, initial: seeds, gamma: gamma)
        let fg = maps[0], bg = maps[1]
        return (0..<fg.count).map { fg[$0] < bg[$0] ? 1 : 0 }
    }

    /// GeoS's symmetric geodesic filter: an opening (erode, dilate) removes foreground parts thinner than θ,
    /// then a closing (dilate, erode) fills background gaps thinner than θ, each step a geodesic distance
    /// threshold; the scribbles stay what they say.
    static func symmetricFilter(
        _ mask: [UInt8], image: [Float], shape: [Int], spacing: [Double], gamma: Float, theta: Float,
        scribbles: [Float], ids: ScribbleIDs
    ) throws -> [UInt8] {
        func within(_ set: [UInt8], _ value: UInt8) throws -> [UInt8] {
            let seeds = set.map { $0 == value ? Float(0) : .infinity }
            let d = try GeodesicDistance.transform(
                image: image, shape: shape, spacing: spacing, initial: seeds, gamma: gamma)
            return d.map { $0 <= theta ? 1 : 0 }
        }
        func dilate(_ m: [UInt8]) throws -> [UInt8] { try within(m, 1) }
        func erode(_ m: [UInt8]) throws -> [UInt8] { try within(m, 0).map { 1 - $0 } }
        var m = try dilate(try erode(mask))
        m = try erode(try dilate(m))
        for i in m.indices {
            if scribbles[i] == ids.foreground { m[i] = 1 } else if scribbles[i] == ids.background { m[i] = 0 }
        }
        return m
    }
}
