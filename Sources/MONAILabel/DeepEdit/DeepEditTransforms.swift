import Foundation
import Imaging

/// The clicks of one label: voxel indices `[i, j, k]` on the grid of the volume they belong to.
public struct LabelGuidance: Sendable, Equatable {
    public var label: String
    public var points: [[Int]]

    public init(label: String, points: [[Int]]) {
        self.label = label
        self.points = points
    }
}

/// MONAI's `monai.apps.deepedit.transforms` for inference (spec section 5.2): clicks from the request, carried
/// through the pre-transforms onto the network's grid, then one Gaussian guidance channel per label.
public enum DeepEditGuidance {
    /// `AddGuidanceFromPointsDeepEditd`: one click list per label name of `labels` (in that order) from the
    /// request keys of the same names; a missing key means no clicks. Each click is `[i, j, k]` (extra leading
    /// entries are ignored, as upstream reads `point[-3:]`); numbers are truncated like NumPy's `astype(int)`.
    public static func clicks(from params: JSONObject, labels: [String]) throws -> [LabelGuidance] {
        try labels.map { name in
            guard let value = params[name], !value.isNull else { return LabelGuidance(label: name, points: []) }
            guard let list = value.arrayValue else {
                throw MONAILabelError.invalid("clicks for '\(name)' must be a list of [i, j, k] voxel indices")
            }
            let points = try list.map { p -> [Int] in
                guard let coords = p.arrayValue, coords.count >= 3,
                    case let numbers = coords.suffix(3).compactMap(\.doubleValue), numbers.count == 3,
                    numbers.allSatisfy({ $0.isFinite && abs($0) < 1e9 })
                else {
                    throw MONAILabelError.invalid("a click for '\(name)' must be [i, j, k] voxel indices, got \(p.compactString())")
                }
                return numbers.map { Int($0.rounded(.towardZero)) }
            }
            return LabelGuidance(label: name, points: points)
        }
    }

    /// Upstream's `OrientationGuidanceMultipleLabelDeepEditd`: moves clicks given on the loaded image's grid
    /// (`from`) onto the grid of the same image after `Orientationd` (`to`) through world space
    /// (`inv(to) @ from`). An axis permutation or flip maps indices to indices exactly; rounding only removes
    /// floating-point noise that `astype(int)` would otherwise turn into an off-by-one.
    public static func reorient(_ guidance: [LabelGuidance], from: Affine, to: Affine) throws -> [LabelGuidance] {
        guard let inv = to.inverted() else { throw MONAILabelError.invalid("the oriented image's affine is singular") }
        let map = inv * from
        return try guidance.map { g in
            LabelGuidance(label: g.label, points: try g.points.map { p in
                let q = map.apply((Double(p[0]), Double(p[1]), Double(p[2])))
                // A click far outside the image on a grid with a huge spacing can leave Int's range.
                guard [q.0, q.1, q.2].allSatisfy({ $0.isFinite && abs($0) < 1e15 }) else {
                    throw MONAILabelError.invalid("click \(p) for '\(g.label)' lies far outside the image")
                }
                return [Int(q.0.rounded()), Int(q.1.rounded()), Int(q.2.rounded())]
            })
        }
    }

    /// `ResizeGuidanceMultipleLabelDeepEditd`: scales clicks by `new / old` per axis, truncating like
    /// `astype(int)`, after `Resized` changed the grid from `oldShape` to `newShape`.
    public static func resize(_ guidance: [LabelGuidance], from oldShape: [Int], to newShape: [Int]) -> [LabelGuidance] {
        let factor = (0..<3).map { Double(newShape[$0]) / Double(max(oldShape[$0], 1)) }
        return guidance.map { g in
            LabelGuidance(label: g.label, points: g.points.map { p in
                (0..<3).map { Int((Double(p[$0]) * factor[$0]).rounded(.towardZero)) }
            })
        }
    }
}

/// `AddGuidanceSignalDeepEditd`: keeps the first `intensityChannels` channels of the image and appends one
/// channel per label: 1 at each click (clicks with a negative index are skipped, the others clamped into the
/// volume), smoothed by MONAI's `GaussianFilter(sigma)` (erf kernel truncated at 4 sigma, zero padding), then
/// min-max normalised to 0..1. A label without clicks gets an all-zero channel, which is also what
/// `DiscardAddGuidanced` (the no-click, automatic-segmentation mode) gives every label.
public struct AddGuidanceSignalDeepEdit: Sendable {
    public var sigma: Double
    public var intensityChannels: Int

    public init(sigma: Double = 3, intensityChannels: Int = 1) {
        self.sigma = sigma
        self.intensityChannels = intensityChannels
    }

    public func callAsFunction(_ image: Volume, guidance: [LabelGuidance]) throws -> Volume {
        guard image.spatialShape.count == 3, image.channels >= intensityChannels else {
            throw MONAILabelError.invalid("AddGuidanceSignalDeepEditd needs a 3D image with \(intensityChannels) intensity channel(s)")
        }
        let vox = image.voxelCount
        var data = Array(image.floats.prefix(intensityChannels * vox))
        data.reserveCapacity((intensityChannels + guidance.count) * vox)
        for g in guidance { data += signal(g.points, shape: image.spatialShape) }
        return Volume(spatialShape: image.spatialShape, channels: intensityChannels + guidance.count,
                      data: .float32(data), affine: image.affine, source: image.source)
    }

    /// MONAI `gaussian_1d(sigma, truncated=4.0, approx="erf", normalize=False)`.
    public static func kernel(sigma: Double) -> [Float] {
        guard sigma > 0 else { return [1] }
        let tail = Int(max(sigma * 4, 0.5) + 0.5)
        let t = Float(0.70710678 / sigma)
        return (-tail...tail).map { i in
            let x = Float(i)
            return max(0, 0.5 * (erf(t * (x + 0.5)) - erf(t * (x - 0.5))))
        }
    }

    /// One label's guidance channel on a grid of `shape` (C order).
    public func signal(_ points: [[Int]], shape: [Int]) -> [Float] {
        let (n0, n1, n2) = (shape[0], shape[1], shape[2])
        var out = [Float](repeating: 0, count: n0 * n1 * n2)
        // Several clicks on one voxel set it to 1 once, as upstream's `signal[:, p1, p2, p3] = 1.0`.
        var seen = Set<[Int]>()
        for p in points where p.count == 3 && !p.contains(where: { $0 < 0 }) {
            seen.insert([min(p[0], n0 - 1), min(p[1], n1 - 1), min(p[2], n2 - 1)])
        }
        guard !seen.isEmpty else { return out }
        // The separable filter of a sum of unit impulses is the sum of their outer-product kernels, truncated at
        // the volume's edges (zero padding): only the boxes around the clicks are touched.
        let k = Self.kernel(sigma: sigma)
        let tail = k.count / 2
        for p in seen.sorted(by: { $0.lexicographicallyPrecedes($1) }) {
            for a in max(0, p[0] - tail)...min(n0 - 1, p[0] + tail) {
                let wa = k[a - p[0] + tail]
                for b in max(0, p[1] - tail)...min(n1 - 1, p[1] + tail) {
                    let wab = wa * k[b - p[1] + tail]
                    let row = (a * n1 + b) * n2
                    for c in max(0, p[2] - tail)...min(n2 - 1, p[2] + tail) {
                        out[row + c] += wab * k[c - p[2] + tail]
                    }
                }
            }
        }
        guard let lo = out.min(), let hi = out.max(), hi > lo else {
            // A constant signal: upstream divides 0 by 0 here; every voxel is equally close to a click.
            return [Float](repeating: 1, count: out.count)
        }
        let range = hi - lo
        for i in out.indices { out[i] = (out[i] - lo) / range }
        return out
    }
}
