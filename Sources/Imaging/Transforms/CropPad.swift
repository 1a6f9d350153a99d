import Foundation

/// Padding of `SpatialPad`, `DivisiblePad` and crops reaching outside the image, as MONAI's `mode`.
public enum PadMode: String, Sendable {
    /// Pads with 0.
    case constant
    /// Repeats the edge voxel (NumPy `edge`, PyTorch `replicate`).
    case edge
}

/// A spatial box `[start, end)` per axis; `start` may be negative and `end` beyond the image, in which case
/// cropping pads.
public struct SpatialBox: Sendable, Equatable {
    public var start: [Int]
    public var end: [Int]

    public init(start: [Int], end: [Int]) {
        self.start = start
        self.end = end
    }

    public var size: [Int] { zip(start, end).map { $1 - $0 } }
}

extension Volume {
    /// Crops (and pads where the box leaves the image) to `box`, shifting the affine so that every kept voxel
    /// keeps its world position, as MONAI's croppers and padders do. Keeps the voxel type.
    public func cropped(to box: SpatialBox, padMode: PadMode = .constant) throws -> Volume {
        let sr = spatialShape.count
        guard box.start.count == sr, box.end.count == sr,
            zip(box.start, box.end).allSatisfy({ s, e in
                let (d, o) = e.subtractingReportingOverflow(s)
                return !o && d >= 0
            })
        else {
            throw ImagingError("crop box \(box) does not fit a \(sr)-D volume")
        }
        try ImagingLimits.checkVoxels(box.size, channels: channels, what: "crop/pad output")
        let op = BoxCopy(inShape: spatialShape, channels: channels, box: box, edge: padMode == .edge)
        var aff = affine
        for r in 0..<3 {
            var shift = 0.0
            for i in 0..<sr { shift += affine[r, i] * Double(box.start[i]) }
            aff[r, 3] += shift
        }
        return Volume(spatialShape: box.size, channels: channels, data: data.transformed(by: op), affine: aff, source: source)
    }
}

/// Copies a (possibly out-of-range) box of every channel.
struct BoxCopy: VoxelArrayOperation {
    var inShape: [Int]
    var channels: Int
    var box: SpatialBox
    var edge: Bool

    func apply<T>(_ a: [T]) -> [T] {
        let sr = inShape.count
        let n3 = [inShape[0], inShape[1], sr > 2 ? inShape[2] : 1]
        let s3 = [box.start[0], box.start[1], sr > 2 ? box.start[2] : 0]
        let o3 = [box.size[0], box.size[1], sr > 2 ? box.size[2] : 1]
        let inVox = n3[0] * n3[1] * n3[2], outVox = o3[0] * o3[1] * o3[2]
        let total = channels * outVox
        guard total > 0 else { return [] }
        guard !a.isEmpty else { return [T](repeating: zeroValue(T.self), count: total) }
        return a.withUnsafeBufferPointer { sp in
            [T](unsafeUninitializedCapacity: total) { dp, count in
                let s = sp.baseAddress!, d = dp.baseAddress!
                let zero: T? = edge ? nil : zeroValue(T.self)
                for c in 0..<channels {
                    for x in 0..<o3[0] {
                        for y in 0..<o3[1] {
                            let db = d + c * outVox + (x * o3[1] + y) * o3[2]
                            var ix = x + s3[0], iy = y + s3[1]
                            let rowOutside = ix < 0 || iy < 0 || ix >= n3[0] || iy >= n3[1]
                            ix = min(max(ix, 0), n3[0] - 1)
                            iy = min(max(iy, 0), n3[1] - 1)
                            let sb = s + c * inVox + (ix * n3[1] + iy) * n3[2]
                            for z in 0..<o3[2] {
                                let iz = z + s3[2]
                                if let zv = zero, rowOutside || iz < 0 || iz >= n3[2] {
                                    (db + z).initialize(to: zv)
                                } else {
                                    (db + z).initialize(to: sb[min(max(iz, 0), n3[2] - 1)])
                                }
                            }
                        }
                    }
                }
                count = total
            }
        }
    }

    private func zeroValue<T>(_: T.Type) -> T {
        // Every VoxelData element type is a numeric type whose all-zero bit pattern is 0.
        withUnsafeTemporaryAllocation(of: T.self, capacity: 1) { p in
            UnsafeMutableRawPointer(p.baseAddress!).initializeMemory(as: UInt8.self, repeating: 0, count: MemoryLayout<T>.size)
            return p[0]
        }
    }
}

/// `monai.transforms.SpatialPad` (`method="symmetric"`): pads each spatial axis up to `spatialSize` (entries
/// <= 0 or smaller than the image keep the axis), the extra split `floor/ceil` before/after.
public struct SpatialPad: Sendable {
    public var spatialSize: [Int]
    public var mode: PadMode

    public init(spatialSize: [Int], mode: PadMode = .constant) {
        self.spatialSize = spatialSize
        self.mode = mode
    }

    /// The box (in input voxels) that padding produces.
    public func box(for shape: [Int]) -> SpatialBox {
        var start: [Int] = [], end: [Int] = []
        for (i, n) in shape.enumerated() {
            let want = i < spatialSize.count ? spatialSize[i] : -1
            let extra = max(want - n, 0)
            start.append(-(extra / 2))
            end.append(n + extra - extra / 2)
        }
        return SpatialBox(start: start, end: end)
    }

    public func callAsFunction(_ v: Volume) throws -> Volume {
        let b = box(for: v.spatialShape)
        if b.size == v.spatialShape { return v }
        return try v.cropped(to: b, padMode: mode)
    }
}

/// `monai.transforms.DivisiblePad`: pads symmetrically so that every spatial size is a multiple of `k`.
public struct DivisiblePad: Sendable {
    public var k: [Int]
    public var mode: PadMode

    public init(k: [Int], mode: PadMode = .constant) {
        self.k = k
        self.mode = mode
    }

    public func callAsFunction(_ v: Volume) throws -> Volume {
        let target = v.spatialShape.enumerated().map { i, n -> Int in
            let kk = k.count == 1 ? k[0] : (i < k.count ? k[i] : 1)
            return kk > 0 ? (n + kk - 1) / kk * kk : n
        }
        return try SpatialPad(spatialSize: target, mode: mode)(v)
    }
}

/// `monai.transforms.SpatialCrop` by box.
public struct SpatialCrop: Sendable {
    public var box: SpatialBox
    public init(start: [Int], end: [Int]) { box = SpatialBox(start: start, end: end) }

    public func callAsFunction(_ v: Volume) throws -> Volume {
        // MONAI clamps crop boxes to the image.
        let s = zip(box.start, v.spatialShape).map { min(max($0, 0), $1) }
        let e = zip(zip(box.end, v.spatialShape), s).map { min(max($0.0, $1), $0.1) }
        return try v.cropped(to: SpatialBox(start: s, end: e))
    }
}

/// `monai.transforms.CropForeground` (MONAI 1.4 defaults `select_fn = x > 0` over any channel, `margin = 0`,
/// `allow_smaller = True`, `k_divisible = 1`, constant padding): crops to the bounding box of the foreground,
/// returning the box so that the crop can be undone.
public struct CropForeground: Sendable {
    public var margin: [Int]
    public var kDivisible: [Int]
    public var allowSmaller: Bool
    public var mode: PadMode
    /// Threshold of the default `select_fn` (`x > threshold`).
    public var threshold: Float

    public init(
        margin: [Int] = [0], kDivisible: [Int] = [1], allowSmaller: Bool = true, mode: PadMode = .constant,
        threshold: Float = 0
    ) {
        (self.margin, self.kDivisible, self.allowSmaller, self.mode, self.threshold) =
            (margin, kDivisible, allowSmaller, mode, threshold)
    }

    /// MONAI `generate_spatial_bounding_box` followed by the `k_divisible` adjustment of `compute_bounding_box`.
    /// An image with no foreground gives an empty box at the origin.
    public func boundingBox(of v: Volume) -> SpatialBox {
        let sr = v.spatialShape.count
        let (nx, ny, nz) = v.dims3
        let x = v.floats
        var lo = [Int.max, Int.max, Int.max], hi = [-1, -1, -1]
        let vox = v.voxelCount
        for c in 0..<v.channels {
            for i in 0..<nx {
                for j in 0..<ny {
                    let base = c * vox + (i * ny + j) * nz
                    for k in 0..<nz where x[base + k] > threshold {
                        lo[0] = min(lo[0], i); hi[0] = max(hi[0], i)
                        lo[1] = min(lo[1], j); hi[1] = max(hi[1], j)
                        lo[2] = min(lo[2], k); hi[2] = max(hi[2], k)
                    }
                }
            }
        }
        if hi[0] < 0 { return SpatialBox(start: [Int](repeating: 0, count: sr), end: [Int](repeating: 0, count: sr)) }
        var start: [Int] = [], end: [Int] = []
        for d in 0..<sr {
            let m = margin.isEmpty ? 0 : margin[min(d, margin.count - 1)]
            var s = lo[d] - m, e = hi[d] + m + 1
            if allowSmaller {
                s = max(s, 0)
                e = min(e, v.spatialShape[d])
            }
            let size = e - s
            let k = kDivisible.isEmpty ? 1 : kDivisible[min(d, kDivisible.count - 1)]
            let want = k > 1 ? (size + k - 1) / k * k : size
            s -= (want - size) / 2
            start.append(s)
            end.append(s + want)
        }
        return SpatialBox(start: start, end: end)
    }

    /// The cropped volume and the box (in the input's voxels) it was cut from.
    public func callAsFunction(_ v: Volume) throws -> (Volume, SpatialBox) {
        let box = boundingBox(of: v)
        return (try v.cropped(to: box, padMode: mode), box)
    }

    /// Puts a volume computed on the crop back into an image of `originalShape` (zeros elsewhere).
    public static func inverse(_ cropped: Volume, box: SpatialBox, originalShape: [Int]) throws -> Volume {
        let back = SpatialBox(start: box.start.map { -$0 }, end: zip(box.start, originalShape).map { $1 - $0 })
        return try cropped.cropped(to: back, padMode: .constant)
    }
}
