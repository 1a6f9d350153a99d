import Foundation

/// `monai.transforms.Activations`: softmax over the channel dimension (or sigmoid per voxel).
public struct Activations: Sendable {
    public var softmax: Bool
    public var sigmoid: Bool

    public init(softmax: Bool = false, sigmoid: Bool = false) {
        self.softmax = softmax
        self.sigmoid = sigmoid
    }

    public func callAsFunction(_ v: Volume) -> Volume {
        let x = v.floats
        let c = v.channels, n = v.voxelCount
        guard n > 0 else { return v.with(floats: x) }
        if sigmoid && !softmax {
            return v.with(floats: Parallel.map(x) { 1 / (1 + exp(-$0)) })
        }
        guard softmax else { return v.with(floats: x) }
        var out = [Float](repeating: 0, count: x.count)
        x.withUnsafeBufferPointer { sp in
            out.withUnsafeMutableBufferPointer { dp in
                let s = sp.baseAddress!, d = dp.baseAddress!
                Parallel.forChunks(count: n) { lo, hi in
                    for i in lo..<hi {
                        var m = -Float.infinity
                        for ch in 0..<c { m = max(m, s[ch * n + i]) }
                        var sum: Float = 0
                        for ch in 0..<c {
                            let e = exp(s[ch * n + i] - m)
                            d[ch * n + i] = e
                            sum += e
                        }
                        for ch in 0..<c { d[ch * n + i] /= sum }
                    }
                }
            }
        }
        return v.with(floats: out)
    }
}

/// `monai.transforms.AsDiscrete`: `argmax` over channels (keeping one channel, first maximum wins as in
/// `torch.argmax`), or thresholding.
public struct AsDiscrete: Sendable {
    public var argmax: Bool
    public var threshold: Double?

    public init(argmax: Bool = false, threshold: Double? = nil) {
        self.argmax = argmax
        self.threshold = threshold
    }

    public func callAsFunction(_ v: Volume) -> Volume {
        var x = v.floats
        var channels = v.channels
        if argmax && v.voxelCount == 0 { return v.with(floats: [], channels: 1) }
        if argmax {
            let c = v.channels, n = v.voxelCount
            var out = [Float](repeating: 0, count: n)
            x.withUnsafeBufferPointer { sp in
                out.withUnsafeMutableBufferPointer { dp in
                    let s = sp.baseAddress!, d = dp.baseAddress!
                    Parallel.forChunks(count: n) { lo, hi in
                        for i in lo..<hi {
                            var best = 0
                            var bv = s[i]
                            for ch in 1..<max(c, 1) where s[ch * n + i] > bv || (bv.isNaN && !s[ch * n + i].isNaN) {
                                best = ch
                                bv = s[ch * n + i]
                            }
                            d[i] = Float(best)
                        }
                    }
                }
            }
            x = out
            channels = 1
        }
        if let t = threshold {
            let tf = Float(t)
            x = Parallel.map(x) { $0 >= tf ? 1 : 0 }
        }
        return v.with(floats: x, channels: channels)
    }
}

/// `monai.transforms.KeepLargestConnectedComponent` (MONAI 1.4 defaults: every non-zero label independently,
/// full connectivity — 26 neighbours in 3D, 8 in 2D — as `skimage.measure.label(connectivity=None)`, one
/// component kept). Works on a one-channel label volume; other voxels of a label are set to 0.
public struct KeepLargestConnectedComponent: Sendable {
    /// Labels to process; nil means every non-zero value present.
    public var appliedLabels: [Int]?
    /// 1 = face neighbours only ... rank = full connectivity (nil).
    public var connectivity: Int?
    public var numComponents: Int

    public init(appliedLabels: [Int]? = nil, connectivity: Int? = nil, numComponents: Int = 1) {
        self.appliedLabels = appliedLabels
        self.connectivity = connectivity
        self.numComponents = numComponents
    }

    public func callAsFunction(_ v: Volume) throws -> Volume {
        guard v.channels == 1 else {
            throw ImagingError("KeepLargestConnectedComponent: expects a one-channel label volume, got \(v.channels)")
        }
        if case .uint8(var labels) = v.data {
            let (nx, ny, nz) = v.dims3
            try ComponentFilter.keepLargest(&labels, dims: (nx, ny, nz), rank: v.spatialShape.count,
                                        connectivity: connectivity, numComponents: numComponents,
                                        only: appliedLabels)
            var out = v
            out.data = .uint8(labels)
            return out
        }
        var x = v.floats
        let labels = appliedLabels ?? Array(Set(x.filter { $0 != 0 && abs($0) < 1e9 }.map { Int($0) })).sorted()
        let (nx, ny, nz) = v.dims3
        let sr = v.spatialShape.count
        let conn = min(max(connectivity ?? sr, 1), sr)
        var offsets: [(Int, Int, Int)] = []
        for dx in -1...1 {
            for dy in -1...1 {
                for dz in (sr > 2 ? -1 : 0)...(sr > 2 ? 1 : 0) {
                    let hops = abs(dx) + abs(dy) + abs(dz)
                    if hops > 0 && hops <= conn { offsets.append((dx, dy, dz)) }
                }
            }
        }
        var comp = [Int32](repeating: 0, count: x.count)
        for label in labels {
            let lf = Float(label)
            for i in 0..<comp.count { comp[i] = 0 }
            var sizes: [Int] = [0]
            var stack: [Int] = []
            for seed in 0..<x.count where x[seed] == lf && comp[seed] == 0 {
                let id = Int32(sizes.count)
                var size = 0
                comp[seed] = id
                stack.append(seed)
                while let p = stack.popLast() {
                    size += 1
                    let px = p / (ny * nz), py = (p / nz) % ny, pz = p % nz
                    for (dx, dy, dz) in offsets {
                        let qx = px + dx, qy = py + dy, qz = pz + dz
                        if qx < 0 || qy < 0 || qz < 0 || qx >= nx || qy >= ny || qz >= nz { continue }
                        let q = (qx * ny + qy) * nz + qz
                        if comp[q] == 0 && x[q] == lf {
                            comp[q] = id
                            stack.append(q)
                        }
                    }
                }
                sizes.append(size)
            }
            if sizes.count - 1 <= numComponents { continue }
            // Largest first; among equal sizes the earlier component (C-order first voxel) wins.
            let order = (1..<sizes.count).sorted { (a: Int, b: Int) -> Bool in
                sizes[a] != sizes[b] ? sizes[a] > sizes[b] : a < b
            }
            let keep = Set(order.prefix(numComponents).map { Int32($0) })
            for i in 0..<x.count where x[i] == lf && !keep.contains(comp[i]) { x[i] = 0 }
        }
        return v.with(floats: x)
    }
}

/// Brings a prediction back onto the grid of the image it was computed from (`Restored` in MONAI Label).
///
/// Unlike upstream's `Restored`, which only resizes back to the original spatial shape and leaves the
/// orientation applied by `Orientation` in place (MONAI Label 0.8.5, spec section 4.1), this resamples through
/// world space: every voxel of the reference grid takes the prediction's value at the same RAS position
/// (nearest for labels), which undoes `Spacing` and `Orientation` (and any crop or pad that kept the affine
/// right) in one step. The result carries the reference affine and source header, ready to be written; byte
/// labels restored by nearest neighbour on an axis-aligned map stay bytes, anything else becomes Float.
public struct Restored: Sendable {
    public var reference: Grid
    public var source: SourceHeader?
    public var mode: InterpolationMode
    /// What reference voxels outside the prediction's grid get: `border` (as MONAI's inverse of `Spacing`) suits
    /// a prediction covering the whole image; `zeros` suits one computed on a crop.
    public var padding: ResamplePadding
    /// Output value remapping applied after resampling (upstream's `config_labels` / `restore_label_idx`:
    /// channel index -> label value); values not in the map are kept.
    public var labelMap: [Int: Int]

    /// Restores onto `original`'s grid, keeping its source header for writing.
    public init(
        original: Volume, mode: InterpolationMode = .nearest, padding: ResamplePadding = .border,
        labelMap: [Int: Int] = [:]
    ) {
        self.init(reference: original.grid, source: original.source, mode: mode, padding: padding, labelMap: labelMap)
    }

    public init(
        reference: Grid, source: SourceHeader? = nil, mode: InterpolationMode = .nearest,
        padding: ResamplePadding = .border, labelMap: [Int: Int] = [:]
    ) {
        self.reference = reference
        self.source = source
        self.mode = mode
        self.padding = padding
        self.labelMap = labelMap
    }

    public func callAsFunction(_ prediction: Volume) throws -> Volume {
        var out: Volume
        if mode == .nearest, padding == .border, labelMap.isEmpty,
            let bytes = try SpatialResample.resampleNearestBytes(prediction, to: reference)
        {
            out = bytes
        } else {
            out = try SpatialResample.resample(prediction, to: reference, mode: mode, padding: padding)
        }
        if !labelMap.isEmpty {
            var table: [Float: Float] = [:]
            for (k, v) in labelMap { table[Float(k)] = Float(v) }
            out = out.with(floats: Parallel.map(out.floats) { table[$0] ?? $0 })
        }
        out.affine = reference.affine
        out.source = source
        return out
    }
}

/// Connected-component filtering on byte labels (what a segmentation's argmax yields) by run-length labelling:
/// runs of one value along the last axis are united with overlapping runs of the (up to four) earlier
/// neighbouring rows in a union-find, so the cost is one linear scan plus work per run, not per voxel and
/// neighbour. A 48-million-voxel prediction takes a fraction of a second even when it is noise.
///
/// Memory is 17 bytes per run (start, end, value, parent, size in struct-of-arrays form), the parent array doubling
/// as the component label once flattened, and the size array as the keep/drop mark.
enum ComponentFilter {
    static func keepLargest(
        _ x: inout [UInt8], dims: (Int, Int, Int), rank: Int, connectivity: Int?, numComponents: Int, only: [Int]?
    ) throws {
        let (nx, ny, nz) = rank > 2 ? dims : (dims.0, dims.1, 1)
        // In 2D the rows run along the second axis: treat (nx, ny) as (nx, 1 row-group, ny).
        let rowsX = nx, rowsY = rank > 2 ? ny : 1, len = rank > 2 ? nz : ny
        guard x.count == rowsX * rowsY * len, len > 0 else { return }
        // Run indices, positions and component sizes are Int32: at most 2^31 - 1 voxels.
        guard x.count < Int(Int32.max) else {
            throw ImagingError("KeepLargestConnectedComponent: \(x.count) voxels is more than the 2^31 - 1 supported")
        }
        var applies = [Bool](repeating: only == nil, count: 256)
        applies[0] = false
        for l in only ?? [] where l > 0 && l < 256 { applies[l] = true }
        let conn = min(max(connectivity ?? rank, 1), rank)
        let rows = rowsX * rowsY

        // 1. Runs per row, row r = ix * rowsY + iy, in C order of their first voxel.
        var starts: [Int32] = [], ends: [Int32] = [], values: [UInt8] = []
        var rowStart = [Int32](repeating: 0, count: rows + 1)
        x.withUnsafeBufferPointer { xb in
            applies.withUnsafeBufferPointer { ap in
                let xp = xb.baseAddress!
                for r in 0..<rows {
                    rowStart[r] = Int32(starts.count)
                    let row = xp + r * len
                    var k = 0
                    while k < len {
                        let v = row[k]
                        if !ap[Int(v)] {
                            k += 1
                            continue
                        }
                        let s = k
                        k += 1
                        while k < len && row[k] == v { k += 1 }
                        starts.append(Int32(s))
                        ends.append(Int32(k - 1))
                        values.append(v)
                    }
                }
            }
        }
        rowStart[rows] = Int32(starts.count)
        let n = starts.count
        guard n > 0 else { return }

        // 2. Union runs with overlapping runs of earlier neighbouring rows. A root is always the smallest run index
        // of its tree, so `parent[i] <= i` holds throughout.
        var parent = [Int32](unsafeUninitializedCapacity: n) { b, c in
            for i in 0..<n { b[i] = Int32(i) }
            c = n
        }
        // Earlier neighbour rows (dx, dy) and the slack along the run axis they allow.
        var neighbours: [(Int, Int, Int32)] = []
        let candidates: [(Int, Int)] = rank > 2 ? [(-1, -1), (-1, 0), (-1, 1), (0, -1)] : [(-1, 0)]
        for (dx, dy) in candidates {
            let hops = abs(dx) + abs(dy)
            if conn - hops >= 0 { neighbours.append((dx, dy, Int32(min(1, conn - hops)))) }
        }
        parent.withUnsafeMutableBufferPointer { pb in
            let pp = pb.baseAddress!
            func find(_ a: Int32) -> Int32 {
                var a = a
                while pp[Int(a)] != a {
                    pp[Int(a)] = pp[Int(pp[Int(a)])]
                    a = pp[Int(a)]
                }
                return a
            }
            starts.withUnsafeBufferPointer { sb in
                ends.withUnsafeBufferPointer { eb in
                    values.withUnsafeBufferPointer { vb in
                        let sp = sb.baseAddress!, ep = eb.baseAddress!, vp = vb.baseAddress!
                        for ix in 0..<rowsX {
                            for iy in 0..<rowsY {
                                let r = ix * rowsY + iy
                                let a0 = Int(rowStart[r]), a1 = Int(rowStart[r + 1])
                                if a0 == a1 { continue }
                                for (dx, dy, slack) in neighbours {
                                    let qx = ix + dx, qy = iy + dy
                                    if qx < 0 || qy < 0 || qy >= rowsY { continue }
                                    let q = qx * rowsY + qy
                                    // For each run, the neighbour row's runs within `slack` of it; the window's
                                    // start only moves forward because runs are sorted and disjoint.
                                    var b0 = Int(rowStart[q])
                                    let b1 = Int(rowStart[q + 1])
                                    for a in a0..<a1 {
                                        let aStart = sp[a] - slack, aEnd = ep[a] + slack, av = vp[a]
                                        while b0 < b1 && ep[b0] < aStart { b0 += 1 }
                                        var b = b0
                                        // `a`'s root, kept current across its unions (the smaller root wins).
                                        var ra: Int32 = -1
                                        while b < b1 && sp[b] <= aEnd {
                                            if vp[b] == av {
                                                if ra < 0 { ra = find(Int32(a)) }
                                                let rb = find(Int32(b))
                                                if ra < rb {
                                                    pp[Int(rb)] = ra
                                                } else if rb < ra {
                                                    pp[Int(ra)] = rb
                                                    ra = rb
                                                }
                                            }
                                            b += 1
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }

        // 3. Flatten (parents precede children, so one forward pass reaches every root), then sizes per root.
        var size = [Int32](repeating: 0, count: n)
        var rootsPerValue = [Int](repeating: 0, count: 256)
        parent.withUnsafeMutableBufferPointer { pb in
            size.withUnsafeMutableBufferPointer { zb in
                let pp = pb.baseAddress!, zp = zb.baseAddress!
                for i in 0..<n {
                    let root = pp[Int(pp[i])]
                    pp[i] = root
                    zp[Int(root)] += ends[i] - starts[i] + 1
                    if root == Int32(i) { rootsPerValue[Int(values[i])] += 1 }
                }
            }
        }

        // 4. Per value with more than `numComponents` components: keep the largest, the earlier component
        // (smaller root, so C-order first voxel) winning ties; dropped roots get size 0.
        var top = [TopComponents?](repeating: nil, count: 256)
        for value in 1..<256 where rootsPerValue[value] > numComponents { top[value] = TopComponents(capacity: numComponents) }
        for i in 0..<n where parent[i] == Int32(i) && top[Int(values[i])] != nil {
            top[Int(values[i])]?.offer(root: Int32(i), size: size[i])
            size[i] = 0
        }
        for t in top { for (root, s) in t?.kept ?? [] { size[Int(root)] = s } }
        x.withUnsafeMutableBufferPointer { xb in
            let xp = xb.baseAddress!
            for r in 0..<rows {
                let row = xp + r * len
                for i in Int(rowStart[r])..<Int(rowStart[r + 1]) where size[Int(parent[i])] == 0 {
                    for k in Int(starts[i])...Int(ends[i]) { row[k] = 0 }
                }
            }
        }
    }

    /// The `capacity` largest components offered, larger first, the smaller root first among equal sizes.
    private struct TopComponents {
        let capacity: Int
        var kept: [(root: Int32, size: Int32)] = []

        init(capacity: Int) {
            self.capacity = capacity
            kept.reserveCapacity(capacity + 1)
        }

        private static func before(_ a: (root: Int32, size: Int32), _ b: (root: Int32, size: Int32)) -> Bool {
            a.size != b.size ? a.size > b.size : a.root < b.root
        }

        /// Roots must be offered in increasing order.
        mutating func offer(root: Int32, size: Int32) {
            guard capacity > 0 else { return }
            let c = (root: root, size: size)
            if kept.count == capacity, let last = kept.last, !Self.before(c, last) { return }
            var j = kept.count
            while j > 0 && Self.before(c, kept[j - 1]) { j -= 1 }
            kept.insert(c, at: j)
            if kept.count > capacity { kept.removeLast() }
        }
    }
}
