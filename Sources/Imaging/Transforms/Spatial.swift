import Foundation

/// Interpolation of resampling transforms, named as MONAI's `mode`.
public enum InterpolationMode: String, Sendable {
    /// `bilinear` in MONAI (trilinear in 3D).
    case bilinear
    case nearest
}

/// Values outside the input grid, as MONAI's `padding_mode` of resampling.
public enum ResamplePadding: String, Sendable {
    /// Clamp to the edge voxel (MONAI's `Spacing` default).
    case border
    case zeros
}

/// The sampling grid of a volume: what `Restored` needs to put a prediction back where it came from.
public struct Grid: Sendable, Equatable {
    public var spatialShape: [Int]
    public var affine: Affine

    public init(spatialShape: [Int], affine: Affine) {
        self.spatialShape = spatialShape
        self.affine = affine
    }
}

extension Volume {
    /// This volume's grid.
    public var grid: Grid { Grid(spatialShape: spatialShape, affine: affine) }

    /// The voxels as Float, the working type of the transforms.
    public var floats: [Float] { data.asFloat() }

    /// A copy with new float voxels and, optionally, a new grid (the source header is kept).
    func with(floats: [Float], spatialShape: [Int]? = nil, channels: Int? = nil, affine: Affine? = nil) -> Volume {
        Volume(
            spatialShape: spatialShape ?? self.spatialShape, channels: channels ?? self.channels,
            data: .float32(floats), affine: affine ?? self.affine, source: source)
    }

    /// Runs `body` on the voxels as Float, in place when they already are Float and this volume holds the only
    /// reference to them (no whole-volume copy), otherwise on a converted copy; the result replaces the data.
    mutating func updateFloats(_ body: (UnsafeMutableBufferPointer<Float>) throws -> Void) rethrows {
        var x: [Float]
        if case .float32(let a) = data {
            x = a
        } else {
            x = data.asFloat()
        }
        // Leave no second reference behind, so writing to `x` does not copy it.
        data = .float32([])
        defer { data = .float32(x) }
        try x.withUnsafeMutableBufferPointer { try body($0) }
    }

    /// Spatial dims padded to three (a 2D volume is treated as `[d0, d1, 1]`).
    var dims3: (Int, Int, Int) {
        (spatialShape[0], spatialShape[1], spatialShape.count > 2 ? spatialShape[2] : 1)
    }
}

/// Applies a generic array operation to whichever element type a `VoxelData` holds.
protocol VoxelArrayOperation {
    func apply<T>(_ a: [T]) -> [T]
}

extension VoxelData {
    func transformed(by op: some VoxelArrayOperation) -> VoxelData {
        switch self {
        case .int8(let a): return .int8(op.apply(a))
        case .uint8(let a): return .uint8(op.apply(a))
        case .int16(let a): return .int16(op.apply(a))
        case .uint16(let a): return .uint16(op.apply(a))
        case .int32(let a): return .int32(op.apply(a))
        case .uint32(let a): return .uint32(op.apply(a))
        case .int64(let a): return .int64(op.apply(a))
        case .float32(let a): return .float32(op.apply(a))
        case .float64(let a): return .float64(op.apply(a))
        }
    }
}

/// Flips then permutes the spatial axes of a channel-first C-order buffer: output axis `j` is input axis
/// `perm[j]`, reversed when `flip[perm[j]]`.
struct PermuteFlip: VoxelArrayOperation {
    var shape: [Int]
    var channels: Int
    var perm: [Int]
    var flip: [Bool]

    func apply<T>(_ a: [T]) -> [T] {
        guard !a.isEmpty else { return [] }
        let r = shape.count
        var inStride = [Int](repeating: 1, count: r)
        for i in stride(from: r - 2, through: 0, by: -1) { inStride[i] = inStride[i + 1] * shape[i + 1] }
        let outShape = perm.map { shape[$0] }
        let vox = shape.reduce(1, *)
        // Per output axis: the input offset step and the input offset at output index 0.
        var step = [Int](repeating: 0, count: r), start = 0
        for j in 0..<r {
            let i = perm[j]
            if flip[i] {
                step[j] = -inStride[i]
                start += (shape[i] - 1) * inStride[i]
            } else {
                step[j] = inStride[i]
            }
        }
        let inner = outShape[r - 1], innerStep = step[r - 1]
        let rows = channels * vox / max(inner, 1)
        return a.withUnsafeBufferPointer { src in
            [T](unsafeUninitializedCapacity: a.count) { dst, n in
                let s = src.baseAddress!, d = dst.baseAddress!
                Parallel.forChunks(count: rows, minChunk: 64) { lo, hi in
                    for row in lo..<hi {
                        // Decompose the row index into channel and the outer output indices.
                        var rem = row, off = 0
                        for j in stride(from: r - 2, through: 0, by: -1) {
                            off += (rem % outShape[j]) * step[j]
                            rem /= outShape[j]
                        }
                        var si = rem * vox + start + off
                        let db = d + row * inner
                        for k in 0..<inner {
                            (db + k).initialize(to: s[si])
                            si += innerStep
                        }
                    }
                }
                n = a.count
            }
        }
    }
}

/// `monai.transforms.Orientation`: reorders and flips the spatial axes so that they follow `axcodes` (default
/// `RAS`), updating the affine as MONAI does (`affine @ inv_ornt_aff`). Keeps the voxel type.
public struct Orientation: Sendable {
    public var axcodes: String

    public init(axcodes: String = "RAS") { self.axcodes = axcodes }

    public func callAsFunction(_ v: Volume) throws -> Volume {
        let sr = v.spatialShape.count
        let aff = v.affine.rankMatrix(sr)
        let src = AxisOrientation.io(aff)
        let dst = try AxisOrientation.fromAxcodes(String(axcodes.prefix(sr)))
        guard dst.count == sr else {
            throw ImagingError("Orientation: axcodes \"\(axcodes)\" has fewer than \(sr) spatial axes")
        }
        guard Set(dst.map(\.axis)).count == sr, Set(src.map(\.axis)).count == sr else {
            throw ImagingError("Orientation: axcodes \"\(axcodes)\" must name each world axis once")
        }
        let ornt = try AxisOrientation.transform(from: src, to: dst)
        let xform = AxisOrientation.inverseAffine(ornt, shape: v.spatialShape)
        let newAffine = Affine(rankMatrix: aff * xform).keepingHigherAxes(of: v.affine, rank: sr)
        var perm = [Int](repeating: 0, count: sr)
        for (i, o) in ornt.enumerated() { perm[o.axis] = i }
        let flip = ornt.map { $0.flip < 0 }
        if perm == Array(0..<sr) && !flip.contains(true) {
            var out = v
            out.affine = newAffine
            return out
        }
        let op = PermuteFlip(shape: v.spatialShape, channels: v.channels, perm: perm, flip: flip)
        return Volume(
            spatialShape: perm.map { v.spatialShape[$0] }, channels: v.channels, data: v.data.transformed(by: op),
            affine: newAffine, source: v.source)
    }
}

extension Affine {
    /// For 2D volumes, keeps the original third axis entries of `other` that a rank-2 matrix cannot carry.
    func keepingHigherAxes(of other: Affine, rank: Int) -> Affine {
        guard rank < 3 else { return self }
        var a = self
        for i in 0..<4 {
            for j in 0..<4 where i >= rank || j >= rank {
                if j == 3 && i < rank { continue }
                if i == 3 { continue }
                a[i, j] = other[i, j]
            }
        }
        return a
    }
}

/// Resampling of a volume onto another grid, as MONAI's `SpatialResample` (`align_corners=False`): output voxel
/// `p` samples the input at voxel coordinate `inv(src_affine) @ dst_affine @ p`, with trilinear or nearest
/// (round half to even, as `grid_sample`) interpolation, computed in double precision coordinates.
public enum SpatialResample {
    public static func resample(
        _ v: Volume, to dst: Grid, mode: InterpolationMode, padding: ResamplePadding = .border
    ) throws -> Volume {
        let sr = v.spatialShape.count
        guard dst.spatialShape.count == sr else {
            throw ImagingError("SpatialResample: target rank \(dst.spatialShape.count) differs from the image's \(sr)")
        }
        guard let srcInv = v.affine.rankMatrix(sr).inverse else {
            throw ImagingError("SpatialResample: the source affine is not invertible")
        }
        let xform = srcInv * dst.affine.rankMatrix(sr)
        guard xform.a.allSatisfy(\.isFinite) else {
            throw ImagingError("SpatialResample: the affines give a non-finite voxel mapping")
        }
        try ImagingLimits.checkVoxels(dst.spatialShape, channels: v.channels, what: "SpatialResample output")
        // Sampling reads the stored type directly: no Float copy of the whole input.
        let out = v.data.visit(
            Sampler(
                channels: v.channels, inShape: v.spatialShape, xform: xform, outShape: dst.spatialShape, mode: mode,
                padding: padding))
        return Volume(
            spatialShape: dst.spatialShape, channels: v.channels, data: .float32(out),
            affine: dst.affine.keepingHigherAxes(of: v.affine, rank: sr), source: v.source)
    }

    /// Nearest-neighbour, border-padded resampling that keeps byte labels as bytes (no Float volume in between,
    /// a quarter of the memory), with exactly the taps of the general path; nil when the voxel map is not
    /// axis-aligned, for the caller to take the general path.
    static func resampleNearestBytes(_ v: Volume, to dst: Grid) throws -> Volume? {
        let sr = v.spatialShape.count
        guard case .uint8(let labels) = v.data, dst.spatialShape.count == sr,
            let srcInv = v.affine.rankMatrix(sr).inverse
        else { return nil }
        try ImagingLimits.checkVoxels(dst.spatialShape, channels: v.channels, what: "SpatialResample output")
        let xform = srcInv * dst.affine.rankMatrix(sr)
        guard xform.a.allSatisfy(\.isFinite) else { return nil }
        for i in 0..<sr {
            for j in 0..<sr where i != j && xform[i, j] != 0 { return nil }
        }
        let ni = [v.spatialShape[0], v.spatialShape[1], sr > 2 ? v.spatialShape[2] : 1]
        let no = [dst.spatialShape[0], dst.spatialShape[1], sr > 2 ? dst.spatialShape[2] : 1]
        guard ni.allSatisfy({ $0 > 0 }) else { return nil }
        // A 2D map's third axis is the identity, as `sample` promotes it.
        let t = (0..<3).map { a in
            AxisTaps(
                scale: a < sr ? xform[a, a] : 1, offset: a < sr ? xform[a, sr] : 0, inSize: ni[a], outSize: no[a],
                nearest: true)
        }
        let channels = v.channels, inVox = ni[0] * ni[1] * ni[2], rows = channels * no[0] * no[1]
        let total = rows * no[2], s0 = ni[1] * ni[2], s1 = ni[2]
        let out = labels.withUnsafeBufferPointer { src in
            [UInt8](unsafeUninitializedCapacity: total) { dst, n in
                guard let sp = src.baseAddress, let dp = dst.baseAddress else {
                    n = 0
                    return
                }
                Parallel.forChunks(count: rows, minChunk: 16) { lo, hi in
                    for row in lo..<hi {
                        let c = row / (no[0] * no[1]), i = (row / no[1]) % no[0], j = row % no[1]
                        let base = sp + c * inVox + t[0].i0[i] * s0 + t[1].i0[j] * s1
                        let drow = dp + row * no[2]
                        for k in 0..<no[2] { (drow + k).initialize(to: base[t[2].i0[k]]) }
                    }
                }
                n = total
            }
        }
        guard out.count == total else { return nil }
        return Volume(
            spatialShape: dst.spatialShape, channels: channels, data: .uint8(out),
            affine: dst.affine.keepingHigherAxes(of: v.affine, rank: sr), source: v.source)
    }

    struct Sampler: VoxelVisitor {
        var channels: Int, inShape: [Int], xform: Matrix, outShape: [Int], mode: InterpolationMode
        var padding: ResamplePadding

        func visit<T: VoxelScalar>(_ input: UnsafeBufferPointer<T>) -> [Float] {
            SpatialResample.sample(
                input, channels: channels, inShape: inShape, xform: xform, outShape: outShape, mode: mode,
                padding: padding)
        }
    }

    /// The core sampler over a channel-first buffer; `xform` maps output to input voxel coordinates.
    static func sample<T: VoxelScalar>(
        _ src: UnsafeBufferPointer<T>, channels: Int, inShape: [Int], xform: Matrix, outShape: [Int],
        mode: InterpolationMode, padding: ResamplePadding
    ) -> [Float] {
        let r = inShape.count
        // Promote 2D to 3D with a unit third axis mapped onto itself.
        var m = Matrix.identity(4)
        for i in 0..<r {
            for j in 0..<r { m[i, j] = xform[i, j] }
            m[i, 3] = xform[i, r]
        }
        let ni = [inShape[0], inShape[1], r > 2 ? inShape[2] : 1]
        let no = [outShape[0], outShape[1], r > 2 ? outShape[2] : 1]
        let inVox = ni[0] * ni[1] * ni[2], outVox = no[0] * no[1] * no[2]
        let total = channels * outVox
        guard total > 0, src.count > 0 else { return [Float](repeating: 0, count: total) }
        let rows = channels * no[0] * no[1]
        let hi0 = Double(ni[0] - 1), hi1 = Double(ni[1] - 1), hi2 = Double(ni[2] - 1)
        let s0 = ni[1] * ni[2], s1 = ni[2]
        let zeros = padding == .zeros
        if !zeros, m[0, 1] == 0, m[0, 2] == 0, m[1, 0] == 0, m[1, 2] == 0, m[2, 0] == 0, m[2, 1] == 0 {
            return sampleAxisAligned(src, channels: channels, m: m, ni: ni, no: no, mode: mode)
        }
        return [Float](unsafeUninitializedCapacity: total) { dst, n in
                let sp = src.baseAddress!, dp = dst.baseAddress!
                Parallel.forChunks(count: rows, minChunk: 16) { lo, hi in
                    for row in lo..<hi {
                        let c = row / (no[0] * no[1])
                        let i = (row / no[1]) % no[0], j = row % no[1]
                        let cin = sp + c * inVox
                        let drow = dp + row * no[2]
                        let bx = m[0, 0] * Double(i) + m[0, 1] * Double(j) + m[0, 3]
                        let by = m[1, 0] * Double(i) + m[1, 1] * Double(j) + m[1, 3]
                        let bz = m[2, 0] * Double(i) + m[2, 1] * Double(j) + m[2, 3]
                        for k in 0..<no[2] {
                            let dk = Double(k)
                            var x = bx + m[0, 2] * dk, y = by + m[1, 2] * dk, z = bz + m[2, 2] * dk
                            if zeros {
                                // Zero padding as grid_sample: outside half a voxel beyond the edge gives 0.
                                if x <= -1 || y <= -1 || z <= -1 || x >= hi0 + 1 || y >= hi1 + 1 || z >= hi2 + 1 {
                                    (drow + k).initialize(to: 0)
                                    continue
                                }
                            }
                            if mode == .nearest {
                                x = min(max(x, 0), hi0).rounded(.toNearestOrEven)
                                y = min(max(y, 0), hi1).rounded(.toNearestOrEven)
                                z = min(max(z, 0), hi2).rounded(.toNearestOrEven)
                                if zeros {
                                    // Nearest with zero padding: a rounded index outside the grid reads 0.
                                    let rx = (bx + m[0, 2] * dk).rounded(.toNearestOrEven)
                                    let ry = (by + m[1, 2] * dk).rounded(.toNearestOrEven)
                                    let rz = (bz + m[2, 2] * dk).rounded(.toNearestOrEven)
                                    if rx < 0 || ry < 0 || rz < 0 || rx > hi0 || ry > hi1 || rz > hi2 {
                                        (drow + k).initialize(to: 0)
                                        continue
                                    }
                                }
                                (drow + k).initialize(to: cin[Int(x) * s0 + Int(y) * s1 + Int(z)].floatValue)
                                continue
                            }
                            if zeros {
                                (drow + k).initialize(to: trilinearZeros(cin, x, y, z, ni, s0, s1))
                                continue
                            }
                            x = min(max(x, 0), hi0)
                            y = min(max(y, 0), hi1)
                            z = min(max(z, 0), hi2)
                            let x0 = Int(x), y0 = Int(y), z0 = Int(z)
                            let fx = x - Double(x0), fy = y - Double(y0), fz = z - Double(z0)
                            let x1 = min(x0 + 1, ni[0] - 1), y1 = min(y0 + 1, ni[1] - 1), z1 = min(z0 + 1, ni[2] - 1)
                            let a00 = cin[x0 * s0 + y0 * s1 + z0].doubleValue * (1 - fz) + cin[x0 * s0 + y0 * s1 + z1].doubleValue * fz
                            let a01 = cin[x0 * s0 + y1 * s1 + z0].doubleValue * (1 - fz) + cin[x0 * s0 + y1 * s1 + z1].doubleValue * fz
                            let a10 = cin[x1 * s0 + y0 * s1 + z0].doubleValue * (1 - fz) + cin[x1 * s0 + y0 * s1 + z1].doubleValue * fz
                            let a11 = cin[x1 * s0 + y1 * s1 + z0].doubleValue * (1 - fz) + cin[x1 * s0 + y1 * s1 + z1].doubleValue * fz
                            let a0 = a00 * (1 - fy) + a01 * fy, a1 = a10 * (1 - fy) + a11 * fy
                            (drow + k).initialize(to: Float(a0 * (1 - fx) + a1 * fx))
                        }
                    }
                }
                n = total
        }
    }

    /// One axis of an axis-aligned resampling: for each output index, the two input taps and the weight of the
    /// second, computed exactly as the general path computes coordinates (so both give identical results).
    struct AxisTaps {
        var i0: [Int], i1: [Int], f: [Double]

        init(scale: Double, offset: Double, inSize: Int, outSize: Int, nearest: Bool) {
            let hi = Double(inSize - 1)
            i0 = []; i1 = []; f = []
            for o in 0..<outSize {
                let q = min(max(scale * Double(o) + offset, 0), hi)
                if nearest {
                    let r = Int(q.rounded(.toNearestOrEven))
                    i0.append(r); i1.append(r); f.append(0)
                } else {
                    let a = Int(q)
                    i0.append(a); i1.append(min(a + 1, inSize - 1)); f.append(q - Double(a))
                }
            }
        }
    }

    /// Border-padded sampling when the voxel map has no rotation (the usual case: `Spacing` after
    /// `Orientation`, `Restored` back to a flipped grid): per-axis tap tables instead of per-voxel arithmetic.
    private static func sampleAxisAligned<T: VoxelScalar>(
        _ src: UnsafeBufferPointer<T>, channels: Int, m: Matrix, ni: [Int], no: [Int], mode: InterpolationMode
    ) -> [Float] {
        let nearest = mode == .nearest
        let tx = AxisTaps(scale: m[0, 0], offset: m[0, 3], inSize: ni[0], outSize: no[0], nearest: nearest)
        let ty = AxisTaps(scale: m[1, 1], offset: m[1, 3], inSize: ni[1], outSize: no[1], nearest: nearest)
        let tz = AxisTaps(scale: m[2, 2], offset: m[2, 3], inSize: ni[2], outSize: no[2], nearest: nearest)
        let inVox = ni[0] * ni[1] * ni[2], total = channels * no[0] * no[1] * no[2]
        guard total > 0, src.count > 0 else { return [Float](repeating: 0, count: total) }
        let rows = channels * no[0] * no[1]
        let s0 = ni[1] * ni[2], s1 = ni[2]
        return [Float](unsafeUninitializedCapacity: total) { dst, n in
                let sp = src.baseAddress!, dp = dst.baseAddress!
                Parallel.forChunks(count: rows, minChunk: 16) { lo, hi in
                    for row in lo..<hi {
                        let c = row / (no[0] * no[1])
                        let i = (row / no[1]) % no[0], j = row % no[1]
                        let cin = sp + c * inVox
                        let drow = dp + row * no[2]
                        if nearest {
                            let base = cin + tx.i0[i] * s0 + ty.i0[j] * s1
                            for k in 0..<no[2] { (drow + k).initialize(to: base[tz.i0[k]].floatValue) }
                            continue
                        }
                        let fx = tx.f[i], fy = ty.f[j]
                        let p00 = cin + tx.i0[i] * s0 + ty.i0[j] * s1, p01 = cin + tx.i0[i] * s0 + ty.i1[j] * s1
                        let p10 = cin + tx.i1[i] * s0 + ty.i0[j] * s1, p11 = cin + tx.i1[i] * s0 + ty.i1[j] * s1
                        for k in 0..<no[2] {
                            let z0 = tz.i0[k], z1 = tz.i1[k], fz = tz.f[k]
                            let a00 = p00[z0].doubleValue * (1 - fz) + p00[z1].doubleValue * fz
                            let a01 = p01[z0].doubleValue * (1 - fz) + p01[z1].doubleValue * fz
                            let a10 = p10[z0].doubleValue * (1 - fz) + p10[z1].doubleValue * fz
                            let a11 = p11[z0].doubleValue * (1 - fz) + p11[z1].doubleValue * fz
                            let a0 = a00 * (1 - fy) + a01 * fy, a1 = a10 * (1 - fy) + a11 * fy
                            (drow + k).initialize(to: Float(a0 * (1 - fx) + a1 * fx))
                        }
                    }
                }
                n = total
        }
    }

    /// Trilinear interpolation where neighbours outside the grid count as zero (`grid_sample` zeros padding).
    private static func trilinearZeros<T: VoxelScalar>(
        _ p: UnsafePointer<T>, _ x: Double, _ y: Double, _ z: Double, _ n: [Int], _ s0: Int, _ s1: Int
    ) -> Float {
        let x0 = Int(x.rounded(.down)), y0 = Int(y.rounded(.down)), z0 = Int(z.rounded(.down))
        let fx = x - Double(x0), fy = y - Double(y0), fz = z - Double(z0)
        var acc = 0.0
        for dx in 0...1 {
            let xi = x0 + dx
            if xi < 0 || xi >= n[0] { continue }
            let wx = dx == 0 ? 1 - fx : fx
            for dy in 0...1 {
                let yi = y0 + dy
                if yi < 0 || yi >= n[1] { continue }
                let wy = dy == 0 ? 1 - fy : fy
                for dz in 0...1 {
                    let zi = z0 + dz
                    if zi < 0 || zi >= n[2] { continue }
                    let wz = dz == 0 ? 1 - fz : fz
                    acc += wx * wy * wz * p[xi * s0 + yi * s1 + zi].doubleValue
                }
            }
        }
        return Float(acc)
    }
}

/// `monai.transforms.Spacing` (MONAI 1.4 defaults: `diagonal=False`, `padding_mode="border"`,
/// `align_corners=False`, `scale_extent=False`): resamples to voxel size `pixdim`, keeping the orientation;
/// output shape and affine as `zoom_affine` + `compute_shape_offset` compute them.
public struct Spacing: Sendable {
    public var pixdim: [Double]
    public var mode: InterpolationMode
    public var padding: ResamplePadding
    public var scaleExtent: Bool

    public init(
        pixdim: [Double], mode: InterpolationMode = .bilinear, padding: ResamplePadding = .border,
        scaleExtent: Bool = false
    ) {
        self.pixdim = pixdim
        self.mode = mode
        self.padding = padding
        self.scaleExtent = scaleExtent
    }

    /// MONAI's AFFINE_TOL.
    static let affineTolerance = 1e-3

    /// The grid `Spacing` resamples `v` onto.
    public func targetGrid(of v: Volume) throws -> Grid {
        let sr = v.spatialShape.count
        guard !pixdim.isEmpty else { throw ImagingError("Spacing: pixdim is empty") }
        var outD = Array(pixdim.prefix(sr))
        while outD.count < sr { outD.append(outD.last!) }
        let aff = v.affine.rankMatrix(sr)
        let orig = Spacing.columnNorms(aff)
        for i in 0..<sr {
            // Within MONAI's tolerance the original spacing is kept (no resampling along that axis).
            if abs(orig[i] - outD[i]) <= Spacing.affineTolerance { outD[i] = orig[i] }
            // MONAI's fall_back_tuple: a non-positive pixdim keeps the axis' own spacing.
            if !(outD[i] > 0) { outD[i] = orig[i] }
        }
        var newAff = try Spacing.zoomAffine(aff, scale: outD)
        let (shape, offset) = try Spacing.computeShapeOffset(
            v.spatialShape, inAffine: aff, outAffine: newAff, scaleExtent: scaleExtent)
        for i in 0..<sr { newAff[i, sr] = offset[i] }
        return Grid(spatialShape: shape, affine: Affine(rankMatrix: newAff).keepingHigherAxes(of: v.affine, rank: sr))
    }

    public func callAsFunction(_ v: Volume) throws -> Volume {
        let target = try targetGrid(of: v)
        let sr = v.spatialShape.count
        // Checked before resampling, naming the image's own grid: a few large voxels (a 64x64x2 series of 200 mm
        // pixels) can imply billions at the model's spacing.
        try ImagingLimits.checkVoxels(
            target.spatialShape, channels: v.channels,
            what: "Spacing output (from \(v.spatialShape) voxels of \(v.spacing.map { String(format: "%g", $0) }.joined(separator: " x ")) mm)")
        // MONAI skips resampling when the grid does not change (within AFFINE_TOL) but still returns float32.
        if target.spatialShape == v.spatialShape,
            Spacing.allClose(v.affine.rankMatrix(sr), target.affine.rankMatrix(sr), atol: Spacing.affineTolerance)
        {
            return v.with(floats: v.floats, affine: target.affine)
        }
        return try SpatialResample.resample(v, to: target, mode: mode, padding: padding)
    }

    static func columnNorms(_ m: Matrix) -> [Double] {
        let r = m.n - 1
        return (0..<r).map { c in (0..<r).reduce(0.0) { $0 + m[$1, c] * m[$1, c] }.squareRoot() }
    }

    static func allClose(_ a: Matrix, _ b: Matrix, atol: Double) -> Bool {
        zip(a.a, b.a).allSatisfy { abs($0 - $1) <= atol + 1e-5 * abs($1) }
    }

    /// MONAI `zoom_affine(affine, scale, diagonal=False)`: keeps the rotation of `affine`, replaces its zooms.
    static func zoomAffine(_ affine: Matrix, scale: [Double]) throws -> Matrix {
        let r = affine.n - 1
        let rzs = affine.block(r)
        guard let zs = (rzs.transposed * rzs).choleskyUpper, let zsInv = zs.inverse else {
            throw ImagingError("Spacing: the affine's rotation-zoom block is singular")
        }
        let rotation = rzs * zsInv
        var out = Matrix.identity(r + 1)
        for i in 0..<r {
            for j in 0..<r {
                let s = (zs[j, j] < 0 ? -1.0 : 1.0) * abs(scale[j])
                out[i, j] = rotation[i, j] * s
            }
        }
        return out
    }

    /// MONAI `compute_shape_offset`: the output shape that covers the input's voxel centres (or extents with
    /// `scaleExtent`) in the output grid, NumPy-rounded (half to even), and the world offset of the output origin.
    static func computeShapeOffset(_ shape: [Int], inAffine: Matrix, outAffine: Matrix, scaleExtent: Bool) throws
        -> ([Int], [Double])
    {
        let r = shape.count
        guard let outInv = outAffine.inverse else { throw ImagingError("Spacing: output affine is not invertible") }
        let toOut = outInv * inAffine
        let ranges: [(Double, Double)] = shape.map {
            scaleExtent ? (-0.5, Double($0) - 0.5) : (0, Double($0) - 1)
        }
        var cornersIn: [[Double]] = [[]]
        for rg in ranges { cornersIn = cornersIn.flatMap { [$0 + [rg.0], $0 + [rg.1]] } }
        func apply(_ m: Matrix, _ p: [Double]) -> [Double] {
            (0...r).map { i in (0..<r).reduce(m[i, r]) { $0 + m[i, $1] * p[$1] } }
        }
        let outCorners = cornersIn.map { apply(toOut, $0) }
        let worldCorners = cornersIn.map { apply(inAffine, $0) }
        var outShape: [Int] = []
        for i in 0..<r {
            let vals = outCorners.map { $0[i] / $0[r] }
            let ptp = vals.max()! - vals.min()!
            let size = (scaleExtent ? ptp : ptp + 1).rounded(.toNearestOrEven)
            guard size.isFinite, size >= 0, size < Double(1 << 31) else {
                throw ImagingError("Spacing: output axis \(i) would have \(size) voxels")
            }
            outShape.append(Int(size))
        }
        for idx in 0..<outCorners.count {
            let ok = (0..<r).allSatisfy { i in
                let m = outCorners.map { $0[i] - outCorners[idx][i] }.min()!
                return abs(m) <= 1e-8
            }
            if ok { return (outShape, Array(worldCorners[idx].prefix(r))) }
        }
        // No corner is the minimum in every axis: centre the output on the input.
        var offset = [Double](repeating: 0, count: r)
        for i in 0..<r {
            var s = inAffine[i, r]
            for j in 0..<r { s += inAffine[i, j] * Double(shape[j]) / 2 - outAffine[i, j] * Double(outShape[j]) / 2 }
            offset[i] = s
        }
        return (outShape, offset)
    }
}

/// Interpolation of `Resize`, as `torch.nn.functional.interpolate` modes used by MONAI.
public enum ResizeMode: String, Sendable {
    /// PyTorch's legacy `nearest`: source index `floor(dst * in / out)`.
    case nearest
    /// `nearest-exact`: source index `floor((dst + 0.5) * in / out)`.
    case nearestExact = "nearest-exact"
    /// `bilinear`/`trilinear` with `align_corners=False`.
    case linear
    /// `area`: adaptive average pooling (MONAI's default).
    case area
}

/// `monai.transforms.Resize` (`size_mode="all"`, no anti-aliasing): resizes the spatial shape, leaving the
/// affine scaled as MONAI does (zooms by in/out, centred).
public struct Resize: Sendable {
    /// Target spatial size; entries <= 0 keep the input size.
    public var spatialSize: [Int]
    public var mode: ResizeMode

    public init(spatialSize: [Int], mode: ResizeMode = .area) {
        self.spatialSize = spatialSize
        self.mode = mode
    }

    public func callAsFunction(_ v: Volume) throws -> Volume {
        let sr = v.spatialShape.count
        guard spatialSize.count == sr || spatialSize.count == 1 else {
            throw ImagingError("Resize: spatial_size \(spatialSize) does not match rank \(sr)")
        }
        let out = (0..<sr).map { i -> Int in
            let s = spatialSize.count == 1 ? spatialSize[0] : spatialSize[i]
            return s > 0 ? s : v.spatialShape[i]
        }
        if out == v.spatialShape { return v.with(floats: v.floats) }
        try ImagingLimits.checkVoxels(out, channels: v.channels, what: "Resize output")
        guard v.voxelCount > 0 else {
            throw ImagingError("Resize: cannot resize an empty volume \(v.spatialShape) to \(out)")
        }
        let (nx, ny, nz) = v.dims3
        let o3 = [out[0], out[1], sr > 2 ? out[2] : 1]
        let i3 = [nx, ny, nz]
        let x = v.floats
        // Separable: each axis is a 1-D resampling with per-output-index taps and weights.
        let taps = (0..<3).map { Resize.taps(inSize: i3[$0], outSize: o3[$0], mode: mode) }
        var cur = x
        var curShape = i3
        for axis in 0..<3 where curShape[axis] != o3[axis] || mode == .area {
            // Axis by axis, an intermediate can be larger than both the input and the output.
            var next = curShape
            next[axis] = o3[axis]
            try ImagingLimits.checkVoxels(next, channels: v.channels, what: "Resize intermediate")
            cur = Resize.apply(cur, channels: v.channels, shape: curShape, axis: axis, taps: taps[axis], outSize: o3[axis])
            curShape[axis] = o3[axis]
        }
        // MONAI scales the affine by in/out about the grid's corner at -0.5 voxels (align_corners=False).
        var aff = v.affine
        for i in 0..<sr {
            let scale = Double(v.spatialShape[i]) / Double(out[i])
            let shift = (scale - 1) / 2
            for r in 0..<3 {
                aff[r, 3] += aff[r, i] * shift
            }
            for r in 0..<3 { aff[r, i] *= scale }
        }
        return v.with(floats: cur, spatialShape: out, affine: aff)
    }

    typealias Taps = [[(Int, Float)]]

    static func taps(inSize: Int, outSize: Int, mode: ResizeMode) -> Taps {
        let scale = Float(inSize) / Float(outSize)
        return (0..<outSize).map { o -> [(Int, Float)] in
            switch mode {
            case .nearest:
                return [(min(Int((Float(o) * scale).rounded(.down)), inSize - 1), 1)]
            case .nearestExact:
                return [(min(Int(((Float(o) + 0.5) * scale).rounded(.down)), inSize - 1), 1)]
            case .linear:
                let src = max(scale * (Float(o) + 0.5) - 0.5, 0)
                let i0 = min(Int(src), inSize - 1)
                let i1 = i0 + (i0 < inSize - 1 ? 1 : 0)
                let l1 = src - Float(i0)
                return i1 == i0 ? [(i0, Float(1))] : [(i0, 1 - l1), (i1, l1)]
            case .area:
                let start = (o * inSize) / outSize
                let end = ((o + 1) * inSize + outSize - 1) / outSize
                let w = 1 / Float(end - start)
                return (start..<end).map { ($0, w) }
            }
        }
    }

    static func apply(_ x: [Float], channels: Int, shape: [Int], axis: Int, taps: Taps, outSize: Int) -> [Float] {
        var outShape = shape
        outShape[axis] = outSize
        let inner = shape[(axis + 1)...].reduce(1, *)
        let outer = channels * shape[..<axis].reduce(1, *)
        let n = shape[axis]
        return x.withUnsafeBufferPointer { sp in
            [Float](unsafeUninitializedCapacity: outer * outSize * inner) { dp, count in
                let s = sp.baseAddress!, d = dp.baseAddress!
                Parallel.forChunks(count: outer, minChunk: 1) { lo, hi in
                    for o in lo..<hi {
                        for (j, tp) in taps.enumerated() {
                            let db = d + (o * outSize + j) * inner
                            for k in 0..<inner { (db + k).initialize(to: 0) }
                            for (i, w) in tp {
                                let sb = s + (o * n + i) * inner
                                for k in 0..<inner { db[k] += w * sb[k] }
                            }
                        }
                    }
                }
                count = outer * outSize * inner
            }
        }
    }
}
