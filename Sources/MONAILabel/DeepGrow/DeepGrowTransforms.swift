import Foundation
import Imaging

/// Clicks in the index space of the array they refer to: positive (foreground) and negative (background)
/// points, each with one coordinate per spatial axis (depth first for 3D, as `monai.apps.deepgrow` keeps them).
public struct Guidance: Sendable, Equatable {
    public var positive: [[Int]]
    public var negative: [[Int]]

    public init(positive: [[Int]], negative: [[Int]]) {
        self.positive = positive
        self.negative = negative
    }

    public var isEmpty: Bool { positive.isEmpty && negative.isEmpty }
}

/// The transforms of `monai.apps.deepgrow.transforms` as MONAI Label's DeepGrow tasks chain them, on flat
/// C-order arrays. Index arithmetic follows MONAI's to the rounding: NumPy's `astype(int)` truncates toward zero,
/// boxes are half-open, and crops that run past the array are clipped as Python slicing clips them.
public enum DeepGrow {
    /// `AddGuidanceFromPointsd(depth_first=True, axis=0)`: user clicks `[i, j, k]` on the image as loaded
    /// (`originalShape` = `[ni, nj, nk]`) become `[k, i', j']` on the depth-first, in-plane resampled array
    /// (`currentShape` = `[nk, ni', nj']`), each coordinate scaled by current / original and truncated. For 2D
    /// models only the clicks on one slice (`slice`, else the lowest clicked slice) are kept, as `[i', j']`, and
    /// that slice is returned.
    public static func guidanceFromPoints(
        foreground: [[Int]], background: [[Int]], originalShape: [Int], currentShape: [Int], dimension: Int,
        slice: Int?
    ) throws -> (Guidance, slice: Int?) {
        guard originalShape.count == 3, currentShape.count == 3 else {
            throw MONAILabelError.invalid("DeepGrow needs a 3D image, got shape \(originalShape)")
        }
        guard !(foreground.isEmpty && background.isEmpty) else {
            throw MONAILabelError.invalid("DeepGrow needs at least one click: give 'foreground' and/or 'background' "
                + "as lists of [i, j, k] voxel indices")
        }
        for p in foreground + background {
            guard p.count == 3, (0..<3).allSatisfy({ p[$0] >= 0 && p[$0] < originalShape[$0] }) else {
                throw MONAILabelError.invalid("click \(p) is not an [i, j, k] voxel index inside the image \(originalShape)")
            }
        }
        let rolledOriginal = [originalShape[2], originalShape[0], originalShape[1]]
        let factor = (0..<3).map { Double(currentShape[$0]) / Double(rolledOriginal[$0]) }
        func roll(_ p: [Int]) -> [Int] { [p[2], p[0], p[1]] }
        func scale(_ p: [Int]) -> [Int] { (0..<p.count).map { Int((Double(p[$0]) * factor[$0]).rounded(.towardZero)) } }
        let pos = foreground.map(roll), neg = background.map(roll)
        if dimension == 3 {
            return (Guidance(positive: pos.map(scale), negative: neg.map(scale)), nil)
        }
        let slices = Set((pos + neg).map { $0[0] }).sorted()
        let chosen: Int
        if let slice {
            guard slices.contains(slice) else {
                throw MONAILabelError.invalid("no click lies on slice \(slice) (clicked slices: \(slices))")
            }
            chosen = slice
        } else {
            chosen = slices[0]
        }
        func onSlice(_ ps: [[Int]]) -> [[Int]] { ps.filter { $0[0] == chosen }.map { Array(scale($0).dropFirst()) } }
        return (Guidance(positive: onSlice(pos), negative: onSlice(neg)), chosen)
    }

    /// `SpatialCropGuidanced(spatial_size, margin=20)`: the box around the clicks (plus margin), or, when that box
    /// is smaller than `spatialSize` on every axis, a `spatialSize` box centred on it (for 3D, centred at
    /// `spatialSize[0] / 2` along depth, as MONAI does). A 2-value `spatialSize` on a 3D array takes the array's
    /// second extent for depth, MONAI's reading of `[256, 256]` for 3D. Returns the start (the guidance shift)
    /// and the end clipped to the array.
    public static func guidanceCropBox(_ g: Guidance, shape: [Int], spatialSize: [Int], margin: Int = 20) -> SpatialBox {
        let nd = shape.count
        let points = g.positive + g.negative
        var start = [Int](repeating: 0, count: nd), end = [Int](repeating: 0, count: nd)
        for d in 0..<nd {
            let values = points.map { $0[d] }
            start[d] = max((values.min() ?? 0) - margin, 0)
            end[d] = min(shape[d], (values.max() ?? 0) + margin + 1)
        }
        var size = Array(spatialSize.suffix(nd))
        if size.count < nd { size = Array(shape[1..<(1 + nd - size.count)]) + size }
        var center = (0..<nd).map { (start[$0] + end[$0]) / 2 }
        let boxSize = (0..<nd).map { end[$0] - start[$0] }
        if (0..<nd).allSatisfy({ boxSize[$0] < size[$0] }) {
            if nd == 3 { center[0] = size[0] / 2 }
            for d in 0..<nd {
                start[d] = max(center[d] - size[d] / 2, 0)
                end[d] = start[d] + size[d]
            }
        } else {
            for d in 0..<nd { end[d] = max(end[d], start[d]) }
        }
        for d in 0..<nd { end[d] = min(end[d], shape[d]) }
        return SpatialBox(start: start, end: end)
    }

    /// The guidance after `SpatialCropGuidanced` (shifted by the box start) and `ResizeGuidanced` (scaled by
    /// resized / cropped shape, truncated).
    public static func cropAndResizeGuidance(_ g: Guidance, box: SpatialBox, resizedShape: [Int]) -> Guidance {
        let cropped = box.size
        let factor = (0..<cropped.count).map { Double(resizedShape[$0]) / Double(cropped[$0]) }
        func map(_ p: [Int]) -> [Int] {
            (0..<p.count).map { Int((Double(p[$0] - box.start[$0]) * factor[$0]).rounded(.towardZero)) }
        }
        return Guidance(positive: g.positive.map(map), negative: g.negative.map(map))
    }

    /// `AddGuidanceSignald(sigma=2)`: two channels (positive, negative) over `shape`, each a Gaussian-smoothed
    /// (MONAI's erf kernel truncated at 4 sigma, zero padding) map of its clicks, min-max normalised; points with
    /// a negative coordinate are skipped, the others clamped into the array. The smoothing of a click map is the
    /// sum of the separable kernel's outer products placed at the clicks, so only the voxels within the kernel's
    /// reach of a click are computed.
    public static func guidanceSignal(_ g: Guidance, shape: [Int], sigma: Double = 2) -> [Float] {
        let nd = shape.count
        let n = shape.reduce(1, *)
        let kernel = GaussianSmooth.kernel(sigma)
        let tail = kernel.count / 2
        var strides = [Int](repeating: 1, count: nd)
        for d in stride(from: nd - 2, through: 0, by: -1) { strides[d] = strides[d + 1] * shape[d + 1] }
        var out = [Float](repeating: 0, count: 2 * n)
        out.withUnsafeMutableBufferPointer { buffer in
            for (c, points) in [g.positive, g.negative].enumerated() {
                let base = buffer.baseAddress! + c * n
                // Distinct clicks only: MONAI sets the voxel to 1 however often it is clicked.
                var seen = Set<[Int]>()
                for p in points where p.count == nd && !p.contains(where: { $0 < 0 }) {
                    let q = (0..<nd).map { min(p[$0], shape[$0] - 1) }
                    guard seen.insert(q).inserted else { continue }
                    let lo = (0..<nd).map { max(q[$0] - tail, 0) }, hi = (0..<nd).map { min(q[$0] + tail, shape[$0] - 1) }
                    var idx = lo
                    while true {
                        var w: Float = 1, offset = 0
                        for d in 0..<nd {
                            w *= kernel[idx[d] - q[d] + tail]
                            offset += idx[d] * strides[d]
                        }
                        base[offset] += w
                        var d = nd - 1
                        while d >= 0 {
                            idx[d] += 1
                            if idx[d] <= hi[d] { break }
                            idx[d] = lo[d]
                            d -= 1
                        }
                        if d < 0 { break }
                    }
                }
                guard !seen.isEmpty else { continue }
                var lo = base[0], hi = base[0]
                for i in 0..<n {
                    lo = min(lo, base[i])
                    hi = max(hi, base[i])
                }
                guard hi > lo else { continue }
                let r = hi - lo
                for i in 0..<n { base[i] = (base[i] - lo) / r }
            }
        }
        return out
    }

    /// `RestoreLabeld(mode="nearest")` then `AsChannelLastd`: undoes `Resized` (nearest back to the crop's
    /// shape), the crop (zeros around), the in-plane `Spacingd` (nearest back to the loaded in-plane shape) and,
    /// for 2D, the slice fetch (the mask fills slice `slice`, zeros elsewhere). `prediction` is a binary mask on
    /// the model's grid; the result is on the loaded image's `[ni, nj, nk]` grid, C order.
    public static func restoreLabel(
        _ prediction: [Float], modelShape: [Int], box: SpatialBox, preCropShape: [Int], originalShape: [Int],
        slice: Int?
    ) throws -> [UInt8] {
        let (ni, nj, nk) = (originalShape[0], originalShape[1], originalShape[2])
        var v = Volume(spatialShape: modelShape, data: .float32(prediction), affine: .identity)
        v = try Resize(spatialSize: box.size, mode: .nearest)(v)
        v = try v.cropped(to: SpatialBox(start: box.start.map { -$0 },
                                         end: zip(box.start, preCropShape).map { $1 - $0 }))
        let inPlane: [Int] = slice == nil ? [nk, ni, nj] : [ni, nj]
        v = try Resize(spatialSize: inPlane, mode: .nearest)(v)
        let restored = v.floats
        // Depth-first [k, i, j] (or one [i, j] slice) back to the file's [i, j, k] order.
        var out = [UInt8](repeating: 0, count: ni * nj * nk)
        for i in 0..<ni {
            for j in 0..<nj {
                let row = (i * nj + j) * nk
                if let s = slice {
                    out[row + s] = restored[i * nj + j] > 0 ? 1 : 0
                } else {
                    for k in 0..<nk where restored[(k * ni + i) * nj + j] > 0 { out[row + k] = 1 }
                }
            }
        }
        return out
    }

    /// `Transposed(indices=[2, 0, 1])` of one channel: `[ni, nj, nk]` to depth-first `[nk, ni, nj]`.
    static func depthFirst(_ x: [Float], shape: [Int]) -> [Float] {
        let (ni, nj, nk) = (shape[0], shape[1], shape[2])
        var out = [Float](repeating: 0, count: x.count)
        for i in 0..<ni {
            for j in 0..<nj {
                let src = (i * nj + j) * nk
                for k in 0..<nk { out[(k * ni + i) * nj + j] = x[src + k] }
            }
        }
        return out
    }

    // MARK: Click simulation (training)

    /// `FindAllValidSlicesd`: depth indices whose slice of the `[D, H, W]` label has foreground.
    public static func validSlices(_ label: [Float], shape: [Int]) -> [Int] {
        let plane = shape[1] * shape[2]
        return (0..<shape[0]).filter { s in (0..<plane).contains { label[s * plane + $0] > 0 } }
    }

    /// `SpatialCropForegroundd(source_key="label", spatial_size)`: the label's bounding box or, when it is smaller
    /// than `spatialSize` on every axis, a `spatialSize` box centred on it; clipped to the array.
    public static func foregroundCropBox(_ label: [Float], shape: [Int], spatialSize: [Int]) -> SpatialBox {
        let nd = shape.count
        var lo = shape, hi = [Int](repeating: -1, count: nd)
        var strides = [Int](repeating: 1, count: nd)
        for d in stride(from: nd - 2, through: 0, by: -1) { strides[d] = strides[d + 1] * shape[d + 1] }
        for idx in 0..<label.count where label[idx] > 0 {
            for d in 0..<nd {
                let c = (idx / strides[d]) % shape[d]
                lo[d] = min(lo[d], c)
                hi[d] = max(hi[d], c)
            }
        }
        guard hi[0] >= 0 else { return SpatialBox(start: [Int](repeating: 0, count: nd), end: shape) }
        var start = lo, end = hi.map { $0 + 1 }
        let center = (0..<nd).map { (start[$0] + end[$0]) / 2 }
        if (0..<nd).allSatisfy({ end[$0] - start[$0] < spatialSize[$0] }) {
            for d in 0..<nd {
                start[d] = max(center[d] - spatialSize[d] / 2, 0)
                end[d] = min(start[d] + spatialSize[d], shape[d])
            }
        }
        return SpatialBox(start: start, end: end)
    }

    /// `FindDiscrepancyRegionsd`: voxels the prediction (probabilities) misses, and voxels it adds.
    public static func discrepancy(label: [Float], probability: [Float]) -> (missed: [Float], extra: [Float]) {
        var missed = [Float](repeating: 0, count: label.count), extra = missed
        for i in 0..<label.count {
            let l = label[i] > 0.5, p = probability[i] > 0.5
            if l && !p { missed[i] = 1 } else if p && !l { extra[i] = 1 }
        }
        return (missed, extra)
    }

    /// `AddRandomGuidanced` for one item: with probability `probability`, one click in the larger discrepancy
    /// (missed wins ties), drawn where it is deepest (`exp(distance) - 1` weights).
    public static func addRandomGuidance(
        _ g: inout Guidance, missed: [Float], extra: [Float], shape: [Int], probability: Double,
        using rng: inout SeededGenerator
    ) {
        guard rng.uniform() < probability else { return }
        let nMissed = missed.reduce(0, +), nExtra = extra.reduce(0, +)
        if nMissed >= nExtra && nMissed > 0 {
            if let p = deepPoint(missed, shape: shape, using: &rng) { g.positive.append(p) }
        } else if nMissed < nExtra && nExtra > 0 {
            if let p = deepPoint(extra, shape: shape, using: &rng) { g.negative.append(p) }
        }
    }

    /// `AddInitialSeedPointd` (5 connected regions): on one random valid slice of a `[D, H, W]` label (3D; `sids`)
    /// or on the `[H, W]` label (2D), one positive click per 8-connected region (up to five), drawn deep inside it.
    public static func initialSeedPoints(
        label: [Float], shape: [Int], validSlices: [Int], using rng: inout SeededGenerator
    ) throws -> Guidance {
        let plane = shape.count == 3 ? shape[1] * shape[2] : label.count
        let hw = Array(shape.suffix(2))
        var sid: Int?
        var slice = label
        if shape.count == 3 {
            guard !validSlices.isEmpty else { throw MONAILabelError.invalid("DeepGrow training: label has no foreground") }
            let s = validSlices[Int(rng.next() % UInt64(validSlices.count))]
            sid = s
            slice = Array(label[s * plane..<(s + 1) * plane])
        }
        let regions = connectedRegions8(slice, shape: hw)
        guard regions.count > 0 else { throw MONAILabelError.invalid("DeepGrow training: label has no foreground") }
        var positive: [[Int]] = []
        for r in 1...min(5, regions.count) {
            let mask = regions.labels.map { $0 == r ? Float(1) : 0 }
            if let p = deepPoint(mask, shape: hw, using: &rng) { positive.append(sid.map { [$0] + p } ?? p) }
        }
        return Guidance(positive: positive, negative: [])
    }

    /// A voxel of `mask` drawn with weight `exp(d) - 1`, `d` its chessboard distance to the nearest 0 voxel
    /// (`scipy.ndimage.distance_transform_cdt`); nil when the mask is empty.
    static func deepPoint(_ mask: [Float], shape: [Int], using rng: inout SeededGenerator) -> [Int]? {
        let d = chessboardDistance(mask, shape: shape)
        let idx = (0..<mask.count).filter { mask[$0] > 0 }
        guard !idx.isEmpty else { return nil }
        // Weights relative to the deepest voxel, so that exp() cannot overflow on large regions.
        let dmax = Double(idx.map { d[$0] }.max() ?? 1)
        let w = idx.map { Foundation.exp(Double(d[$0]) - dmax) - Foundation.exp(-dmax) }
        let total = w.reduce(0, +)
        var pick = idx[idx.count - 1]
        if total > 0 {
            var u = rng.uniform() * total
            for (n, i) in idx.enumerated() {
                u -= w[n]
                if u < 0 {
                    pick = i
                    break
                }
            }
        } else {
            pick = idx[Int(rng.next() % UInt64(idx.count))]
        }
        var p = [Int](repeating: 0, count: shape.count), rest = pick
        for a in stride(from: shape.count - 1, through: 0, by: -1) {
            p[a] = rest % shape[a]
            rest /= shape[a]
        }
        return p
    }

    /// Chessboard distance of every nonzero voxel to the nearest zero voxel (two raster passes over the full
    /// 3^n neighbourhood; voxels beyond the array are not background, as in SciPy). A mask without zeros gets
    /// the largest extent everywhere.
    static func chessboardDistance(_ mask: [Float], shape: [Int]) -> [Int32] {
        let s3 = shape.count == 3 ? shape : [1] + shape
        let (nz, ny, nx) = (s3[0], s3[1], s3[2])
        let inf = Int32(max(nz, ny, nx) + 1)
        var d = mask.map { $0 > 0 ? inf : 0 }
        // The 13 neighbours that precede a voxel in raster order; the backward pass uses their mirror images.
        var before: [(Int, Int, Int)] = []
        for dz in -1...0 {
            for dy in -1...1 {
                for dx in -1...1 where dz < 0 || dy < 0 || (dy == 0 && dx < 0) { before.append((dz, dy, dx)) }
            }
        }
        d.withUnsafeMutableBufferPointer { b in
            let p = b.baseAddress!
            for forward in [true, false] {
                let sgn = forward ? 1 : -1
                for step in 0..<(nz * ny * nx) {
                    let i = forward ? step : nz * ny * nx - 1 - step
                    guard p[i] > 0 else { continue }
                    let z = i / (ny * nx), y = (i / nx) % ny, x = i % nx
                    var best = p[i]
                    for (dz, dy, dx) in before {
                        let zz = z + sgn * dz, yy = y + sgn * dy, xx = x + sgn * dx
                        if zz < 0 || zz >= nz || yy < 0 || yy >= ny || xx < 0 || xx >= nx { continue }
                        best = min(best, p[(zz * ny + yy) * nx + xx] + 1)
                    }
                    p[i] = best
                }
            }
        }
        return d
    }

    /// 8-connected components of `mask > 0` on a 2D `[H, W]` grid, numbered 1... in raster order of their first
    /// pixel (as `skimage.measure.label`).
    static func connectedRegions8(_ mask: [Float], shape: [Int]) -> (labels: [Int], count: Int) {
        let (h, w) = (shape[0], shape[1])
        var labels = [Int](repeating: 0, count: h * w)
        var count = 0
        var stack: [Int] = []
        for start in 0..<(h * w) where mask[start] > 0 && labels[start] == 0 {
            count += 1
            labels[start] = count
            stack.append(start)
            while let p = stack.popLast() {
                let (y, x) = (p / w, p % w)
                for dy in -1...1 {
                    for dx in -1...1 {
                        let yy = y + dy, xx = x + dx
                        guard yy >= 0, yy < h, xx >= 0, xx < w else { continue }
                        let q = yy * w + xx
                        if mask[q] > 0 && labels[q] == 0 {
                            labels[q] = count
                            stack.append(q)
                        }
                    }
                }
            }
        }
        return (labels, count)
    }
}
