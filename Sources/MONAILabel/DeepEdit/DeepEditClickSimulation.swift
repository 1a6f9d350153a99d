import Foundation
import Imaging

/// A label of a DeepEdit model with its training index: `NormalizeLabelsInDatasetd` renumbers the labels of
/// the map to 1, 2, ... in map order, `background` to 0. That index is both the network's output channel and
/// the value of the class in a normalised label volume.
public struct DeepEditLabel: Sendable, Equatable {
    public var name: String
    /// The value in the datastore's label files (the map's value).
    public var value: Int
    /// The normalised value and output channel.
    public var index: Int

    public var isBackground: Bool { name == "background" }

    /// The labels of a `{name: value}` map in map order. Non-background labels are numbered from 1 in order;
    /// upstream numbers by position including `background`, which only agrees when `background` comes last
    /// (as in every upstream DeepEdit config), so a map with `background` elsewhere is numbered as if it were.
    public static func from(_ labels: JSONValue) throws -> [DeepEditLabel] {
        guard case .object(let map) = labels, !map.isEmpty else {
            throw MONAILabelError.invalid("a DeepEdit model needs its labels as a {name: value} map")
        }
        var out: [DeepEditLabel] = []
        var next = 1
        for (name, v) in map {
            guard let value = v.intValue, value >= 0 else {
                throw MONAILabelError.invalid("label '\(name)' needs a non-negative integer value")
            }
            if name == "background" {
                out.append(DeepEditLabel(name: name, value: value, index: 0))
            } else {
                out.append(DeepEditLabel(name: name, value: value, index: next))
                next += 1
            }
        }
        return out
    }
}

/// The training side of `monai.apps.deepedit.transforms`: label normalisation, initial seed clicks and the
/// discrepancy-driven clicks of the interaction loop. Volumes are normalised label volumes (one byte per voxel,
/// C order over a 3D `shape`); the last axis is upstream's "depth" axis whose slices seed the first clicks.
public struct DeepEditClickSimulation: Sendable {
    public var labels: [DeepEditLabel]
    public var shape: [Int]
    /// Connected regions of a slice that each get an initial click (upstream's `connected_regions`).
    public var connectedRegions = 5
    /// Wrongly predicted voxels of another label beyond which that label gets a click (upstream: 50).
    public var otherLabelAreaThreshold = 50

    public init(labels: [DeepEditLabel], shape: [Int]) {
        self.labels = labels
        self.shape = shape
    }

    /// `NormalizeLabelsInDatasetd`: label file values to normalised indices; values of no label become 0.
    public static func normalize(_ values: [Float], labels: [DeepEditLabel]) -> [UInt8] {
        var table: [Int: UInt8] = [:]
        for l in labels where !l.isBackground { table[l.value] = UInt8(clamping: l.index) }
        return values.map { table[$0.labelInteger ?? -1] ?? 0 }
    }

    /// Voxels of `label` in a normalised volume (`background`: index 0).
    func mask(_ volume: [UInt8], _ label: DeepEditLabel) -> [Bool] {
        let v = UInt8(clamping: label.index)
        return volume.map { $0 == v }
    }

    /// `FindAllValidSlicesMissingLabelsd`: per label, the indices along the last axis of the slices holding it.
    /// (Upstream fills a missing label with ten `-1`s, which end in a seed-less slice; empty means the same.)
    public func validSlices(_ volume: [UInt8]) -> [String: [Int]] {
        let (n0, n1, n2) = (shape[0], shape[1], shape[2])
        var present = [[Bool]](repeating: [Bool](repeating: false, count: n2), count: 256)
        for r in 0..<(n0 * n1) {
            for k in 0..<n2 { present[Int(volume[r * n2 + k])][k] = true }
        }
        var out: [String: [Int]] = [:]
        for l in labels {
            out[l.name] = (0..<n2).filter { present[min(l.index, 255)][$0] }
        }
        return out
    }

    /// `AddInitialSeedPointMissingLabelsd`: per label, a random slice among its valid ones, then in that slice one
    /// click in each of its first `connectedRegions` 8-connected regions, drawn with weight `exp(d) - 1` where
    /// `d` is the chessboard distance to the region's edge (so clicks fall deep inside).
    public func initialSeeds(_ volume: [UInt8], using rng: inout SeededGenerator) -> [LabelGuidance] {
        let sids = validSlices(volume)
        let (n0, n1, n2) = (shape[0], shape[1], shape[2])
        return labels.map { l in
            guard let slices = sids[l.name], !slices.isEmpty else { return LabelGuidance(label: l.name, points: []) }
            let sid = slices[Int(rng.next() % UInt64(slices.count))]
            let v = UInt8(clamping: l.index)
            var slice = [Bool](repeating: false, count: n0 * n1)
            for r in 0..<(n0 * n1) { slice[r] = volume[r * n2 + sid] == v }
            let regions = ConnectedRegions2D.label(slice, n0, n1)
            var points: [[Int]] = []
            for region in 1...max(connectedRegions, 1) where region <= regions.count {
                let m = regions.labels.map { $0 == Int32(region) }
                if let p = Self.deepPoint(m, shape: [n0, n1, 1], using: &rng) { points.append([p[0], p[1], sid]) }
            }
            return LabelGuidance(label: l.name, points: points)
        }
    }

    /// `FindDiscrepancyRegionsDeepEditd`: per label, where the truth has it and the prediction misses it
    /// (`pos`) and where the prediction claims it wrongly (`neg`).
    public func discrepancies(label: [UInt8], prediction: [UInt8]) -> [String: (pos: [Bool], neg: [Bool])] {
        var out: [String: (pos: [Bool], neg: [Bool])] = [:]
        for l in labels {
            let v = UInt8(clamping: l.index)
            var pos = [Bool](repeating: false, count: label.count), neg = pos
            for i in label.indices {
                let t = label[i] == v, p = prediction[i] == v
                pos[i] = t && !p
                neg[i] = p && !t
            }
            out[l.name] = (pos, neg)
        }
        return out
    }

    /// `AddRandomGuidanceDeepEditd`: with probability `probability`, each label gets a click deep inside what
    /// the prediction missed of it, and every label covering more than `otherLabelAreaThreshold` voxels of a
    /// wrong prediction gets a click there; then a random 1...10 click budget keeps the clicks of randomly
    /// chosen labels until the budget is reached and drops the others' (upstream's way of varying how many
    /// clicks a sample sees). Without interaction the guidance is returned unchanged.
    public func addRandomGuidance(
        _ guidance: [LabelGuidance], label: [UInt8], prediction: [UInt8], probability: Double,
        using rng: inout SeededGenerator
    ) -> [LabelGuidance] {
        guard rng.uniform() < probability else { return guidance }
        let disc = discrepancies(label: label, prediction: prediction)
        var clicks: [String: [[Int]]] = [:]
        for l in labels {
            clicks[l.name] = guidance.first { $0.label == l.name }?.points.filter { !$0.contains(-1) } ?? []
        }
        let truth = labels.map { mask(label, $0) }
        for l in labels {
            guard let d = disc[l.name] else { continue }
            if let p = Self.deepPoint(d.pos, shape: shape, using: &rng) { clicks[l.name, default: []].append(p) }
            for (o, other) in labels.enumerated() {
                var overlap = [Bool](repeating: false, count: label.count)
                var area = 0
                for i in overlap.indices where d.neg[i] && truth[o][i] {
                    overlap[i] = true
                    area += 1
                }
                if area > otherLabelAreaThreshold, let p = Self.deepPoint(overlap, shape: shape, using: &rng) {
                    clicks[other.name, default: []].append(p)
                }
            }
        }
        let budget = Int(rng.next() % 10) + 1
        var kept: [String] = [], counter = 0
        while kept.count < labels.count {
            let pick = labels[Int(rng.next() % UInt64(labels.count))].name
            if kept.contains(pick) { continue }
            kept.append(pick)
            counter += clicks[pick]?.count ?? 0
            if counter >= budget {
                for l in labels where !kept.contains(l.name) { clicks[l.name] = [] }
                break
            }
        }
        return labels.map { LabelGuidance(label: $0.name, points: clicks[$0.name] ?? []) }
    }

    /// A voxel of `mask` drawn with weight `exp(d) - 1`, `d` its chessboard distance to the nearest voxel outside
    /// the mask (scipy's `distance_transform_cdt`); nil for an empty mask. A mask filling the whole volume has no
    /// distance (scipy gives -1, on which upstream fails): then every voxel is equally likely.
    static func deepPoint(_ mask: [Bool], shape: [Int], using rng: inout SeededGenerator) -> [Int]? {
        let d = ChessboardDistance.transform(mask, shape: shape)
        var indices: [Int] = [], weights: [Double] = []
        for i in mask.indices where mask[i] {
            indices.append(i)
            weights.append(d[i] > 0 ? exp(Double(min(d[i], 700))) - 1 : 1)
        }
        guard !indices.isEmpty else { return nil }
        let total = weights.reduce(0, +)
        var r = rng.uniform() * total
        var chosen = indices[indices.count - 1]
        for (n, w) in weights.enumerated() {
            r -= w
            if r < 0 {
                chosen = indices[n]
                break
            }
        }
        let (n1, n2) = (shape[1], shape[2])
        return [chosen / (n1 * n2), (chosen / n2) % n1, chosen % n2]
    }
}

/// scipy's `distance_transform_cdt(metric="chessboard")`: for every voxel inside the mask, the chessboard
/// distance to the nearest voxel outside it (0 outside; the volume's edge is not "outside"), by the two-pass
/// raster scan over the 26-neighbourhood, which is exact for this metric. Work is limited to the mask's
/// bounding box grown by one voxel: that shell is all outside, so no nearer outside voxel can lie beyond it.
enum ChessboardDistance {
    static let unreachable = Int32.max

    static func transform(_ mask: [Bool], shape: [Int]) -> [Int32] {
        let (n0, n1, n2) = (shape[0], shape[1], shape[2])
        var out = [Int32](repeating: 0, count: mask.count)
        var lo = [n0, n1, n2], hi = [-1, -1, -1]
        for i in mask.indices where mask[i] {
            let c = [i / (n1 * n2), (i / n2) % n1, i % n2]
            for a in 0..<3 {
                lo[a] = min(lo[a], c[a])
                hi[a] = max(hi[a], c[a])
            }
        }
        guard hi[0] >= 0 else { return out }
        let n = [n0, n1, n2]
        for a in 0..<3 {
            lo[a] = max(0, lo[a] - 1)
            hi[a] = min(n[a] - 1, hi[a] + 1)
        }
        for i in mask.indices where mask[i] { out[i] = unreachable }
        // Offsets that precede a voxel in raster order; the backward pass uses their negations.
        var before: [(Int, Int, Int)] = []
        for a in -1...1 {
            for b in -1...1 {
                for c in -1...1 where (a, b, c) < (0, 0, 0) { before.append((a, b, c)) }
            }
        }
        func relax(_ i: Int, _ j: Int, _ k: Int, _ offsets: [(Int, Int, Int)], _ sign: Int) {
            let idx = (i * n1 + j) * n2 + k
            var best = out[idx]
            guard best > 0 else { return }
            for (a, b, c) in offsets {
                let x = i + sign * a, y = j + sign * b, z = k + sign * c
                guard x >= lo[0], x <= hi[0], y >= lo[1], y <= hi[1], z >= lo[2], z <= hi[2] else { continue }
                let v = out[(x * n1 + y) * n2 + z]
                if v != unreachable && v + 1 < best { best = v + 1 }
            }
            out[idx] = best
        }
        for i in lo[0]...hi[0] {
            for j in lo[1]...hi[1] {
                for k in lo[2]...hi[2] { relax(i, j, k, before, 1) }
            }
        }
        for i in stride(from: hi[0], through: lo[0], by: -1) {
            for j in stride(from: hi[1], through: lo[1], by: -1) {
                for k in stride(from: hi[2], through: lo[2], by: -1) { relax(i, j, k, before, -1) }
            }
        }
        for i in out.indices where out[i] == unreachable { out[i] = -1 }
        return out
    }
}

/// skimage's `measure.label` on a 2D mask with full (8-) connectivity: regions numbered 1, 2, ... in raster
/// order of their first pixel, 0 outside the mask.
enum ConnectedRegions2D {
    static func label(_ mask: [Bool], _ n0: Int, _ n1: Int) -> (labels: [Int32], count: Int) {
        var labels = [Int32](repeating: 0, count: mask.count)
        var count: Int32 = 0
        var stack: [Int] = []
        for start in mask.indices where mask[start] && labels[start] == 0 {
            count += 1
            labels[start] = count
            stack.append(start)
            while let p = stack.popLast() {
                let i = p / n1, j = p % n1
                for a in max(0, i - 1)...min(n0 - 1, i + 1) {
                    for b in max(0, j - 1)...min(n1 - 1, j + 1) {
                        let q = a * n1 + b
                        if mask[q] && labels[q] == 0 {
                            labels[q] = count
                            stack.append(q)
                        }
                    }
                }
            }
        }
        return (labels, Int(count))
    }
}
