import Foundation

/// A seedable generator (SplitMix64) for the random training transforms: the same seed gives the same
/// augmentations run after run. It is not NumPy's Mersenne Twister, so streams differ from MONAI's.
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    public mutating func uniform() -> Double { Double(next() >> 11) * 0x1.0p-53 }
}

/// Voxel-index map of a flip/axis permutation, for updating affines: output index -> input index.
func permuteFlipMatrix(perm: [Int], flip: [Bool], inShape: [Int]) -> Matrix {
    let r = perm.count
    var m = Matrix(n: r + 1, [Double](repeating: 0, count: (r + 1) * (r + 1)))
    for j in 0..<r {
        let i = perm[j]
        if flip[i] {
            m[i, j] = -1
            m[i, r] = Double(inShape[i] - 1)
        } else {
            m[i, j] = 1
        }
    }
    m[r, r] = 1
    return m
}

extension Volume {
    /// Flips then permutes spatial axes (output axis `j` = input axis `perm[j]`), updating the affine so that
    /// voxels keep their world positions.
    func permutedFlipped(perm: [Int], flip: [Bool]) -> Volume {
        let sr = spatialShape.count
        let op = PermuteFlip(shape: spatialShape, channels: channels, perm: perm, flip: flip)
        let m = affine.rankMatrix(sr) * permuteFlipMatrix(perm: perm, flip: flip, inShape: spatialShape)
        return Volume(
            spatialShape: perm.map { spatialShape[$0] }, channels: channels, data: data.transformed(by: op),
            affine: Affine(rankMatrix: m).keepingHigherAxes(of: affine, rank: sr), source: source)
    }
}

/// `monai.transforms.Flip`: reverses the given spatial axes (all when nil).
public struct Flip: Sendable {
    public var spatialAxis: [Int]?
    public init(spatialAxis: [Int]? = nil) { self.spatialAxis = spatialAxis }

    public func callAsFunction(_ v: Volume) throws -> Volume {
        let sr = v.spatialShape.count
        let axes = spatialAxis ?? Array(0..<sr)
        guard axes.allSatisfy({ (0..<sr).contains($0) }) else {
            throw ImagingError("Flip: spatial_axis \(axes) out of range for \(sr)-D")
        }
        return v.permutedFlipped(perm: Array(0..<sr), flip: (0..<sr).map { axes.contains($0) })
    }
}

/// `monai.transforms.Rotate90`: `np.rot90` by `k` quarter turns in the plane of `spatialAxes`.
public struct Rotate90: Sendable {
    public var k: Int
    public var spatialAxes: (Int, Int)

    public init(k: Int = 1, spatialAxes: (Int, Int) = (0, 1)) {
        self.k = k
        self.spatialAxes = spatialAxes
    }

    public func callAsFunction(_ v: Volume) throws -> Volume {
        let sr = v.spatialShape.count
        let (a, b) = spatialAxes
        guard a != b, (0..<sr).contains(a), (0..<sr).contains(b) else {
            throw ImagingError("Rotate90: spatial_axes (\(a), \(b)) invalid for \(sr)-D")
        }
        var perm = Array(0..<sr)
        var flip = [Bool](repeating: false, count: sr)
        switch ((k % 4) + 4) % 4 {
        case 1:
            // rot90 k=1: flip axis b, then swap a and b.
            flip[b] = true
            perm.swapAt(a, b)
        case 2:
            flip[a] = true
            flip[b] = true
        case 3:
            // rot90 k=3: swap a and b, then flip the new axis b (which is input axis a).
            flip[a] = true
            perm.swapAt(a, b)
        default:
            return v
        }
        return v.permutedFlipped(perm: perm, flip: flip)
    }
}

/// `monai.transforms.RandFlip`: with probability `prob`, flips `spatialAxis` (all axes when nil).
public struct RandFlip: Sendable {
    public var prob: Double
    public var spatialAxis: [Int]?

    public init(prob: Double = 0.1, spatialAxis: [Int]? = nil) {
        self.prob = prob
        self.spatialAxis = spatialAxis
    }

    public func callAsFunction(_ vs: [Volume], using rng: inout SeededGenerator) throws -> [Volume] {
        guard rng.uniform() < prob else { return vs }
        return try vs.map { try Flip(spatialAxis: spatialAxis)($0) }
    }
}

/// `monai.transforms.RandRotate90`: with probability `prob`, rotates by `k` in `1...maxK` quarter turns.
public struct RandRotate90: Sendable {
    public var prob: Double
    public var maxK: Int
    public var spatialAxes: (Int, Int)

    public init(prob: Double = 0.1, maxK: Int = 3, spatialAxes: (Int, Int) = (0, 1)) {
        self.prob = prob
        self.maxK = maxK
        self.spatialAxes = spatialAxes
    }

    /// Applies the same draw to every volume (image and label together).
    public func callAsFunction(_ vs: [Volume], using rng: inout SeededGenerator) throws -> [Volume] {
        let go = rng.uniform() < prob
        let k = Int(rng.next() % UInt64(max(maxK, 1))) + 1
        guard go else { return vs }
        return try vs.map { try Rotate90(k: k, spatialAxes: spatialAxes)($0) }
    }
}

/// `monai.transforms.RandShiftIntensity`: with probability `prob`, adds an offset drawn from `offsets`.
public struct RandShiftIntensity: Sendable {
    public var offsets: ClosedRange<Double>
    public var prob: Double

    /// A single value `o` means `-|o|...|o|`, as MONAI.
    public init(offsets: Double, prob: Double = 0.1) {
        self.offsets = -abs(offsets)...abs(offsets)
        self.prob = prob
    }

    public init(offsets: ClosedRange<Double>, prob: Double = 0.1) {
        self.offsets = offsets
        self.prob = prob
    }

    public func callAsFunction(_ v: Volume, using rng: inout SeededGenerator) -> Volume {
        guard rng.uniform() < prob else { return v }
        let o = offsets.lowerBound + rng.uniform() * (offsets.upperBound - offsets.lowerBound)
        return ShiftIntensity(offset: o)(v)
    }
}

/// `monai.transforms.RandSpatialCrop` (`random_size=False`): a `roiSize` box at a random (or the central)
/// position; entries <= 0 take the whole axis, sizes larger than the image are clamped.
public struct RandSpatialCrop: Sendable {
    public var roiSize: [Int]
    public var randomCenter: Bool

    public init(roiSize: [Int], randomCenter: Bool = true) {
        self.roiSize = roiSize
        self.randomCenter = randomCenter
    }

    public func box(for shape: [Int], using rng: inout SeededGenerator) -> SpatialBox {
        var start: [Int] = [], end: [Int] = []
        for (i, n) in shape.enumerated() {
            let want = i < roiSize.count && roiSize[i] > 0 ? min(roiSize[i], n) : n
            let s = randomCenter ? Int(rng.next() % UInt64(n - want + 1)) : (n - want) / 2
            start.append(s)
            end.append(s + want)
        }
        return SpatialBox(start: start, end: end)
    }

    /// Crops every volume with the same box.
    public func callAsFunction(_ vs: [Volume], using rng: inout SeededGenerator) throws -> [Volume] {
        guard let first = vs.first else { return [] }
        let b = box(for: first.spatialShape, using: &rng)
        return try vs.map { try $0.cropped(to: b) }
    }
}

/// `monai.transforms.RandCropByPosNegLabel`: `numSamples` crops of `spatialSize` centred on a foreground voxel
/// (label > 0, and image > `imageThreshold` in any channel when an image is given) with probability
/// `pos / (pos + neg)`, else on a background voxel; centres are moved inside the image as MONAI's
/// `correct_crop_centers`.
public struct RandCropByPosNegLabel: Sendable {
    public var spatialSize: [Int]
    public var pos: Double
    public var neg: Double
    public var numSamples: Int
    public var imageThreshold: Float
    public var allowSmaller: Bool

    public init(
        spatialSize: [Int], pos: Double = 1, neg: Double = 1, numSamples: Int = 1, imageThreshold: Float = 0,
        allowSmaller: Bool = false
    ) {
        (self.spatialSize, self.pos, self.neg, self.numSamples, self.imageThreshold, self.allowSmaller) =
            (spatialSize, pos, neg, numSamples, imageThreshold, allowSmaller)
    }

    /// The crop boxes for `label` (and optionally `image` for the threshold).
    public func boxes(label: Volume, image: Volume?, using rng: inout SeededGenerator) throws -> [SpatialBox] {
        guard pos >= 0, neg >= 0, pos + neg > 0 else {
            throw ImagingError("RandCropByPosNegLabel: pos and neg must be non-negative and not both zero")
        }
        let shape = label.spatialShape
        var size = shape.enumerated().map { i, n in i < spatialSize.count && spatialSize[i] > 0 ? spatialSize[i] : n }
        if zip(shape, size).contains(where: { $0 < $1 }) {
            guard allowSmaller else {
                throw ImagingError("RandCropByPosNegLabel: image \(shape) is smaller than the crop \(size); pad it first")
            }
            size = zip(shape, size).map { min($0, $1) }
        }
        let lab = label.floats, vox = label.voxelCount
        let img = image?.floats
        var fg: [Int] = [], bg: [Int] = []
        for i in 0..<vox {
            var isFg = false
            for c in 0..<label.channels where lab[c * vox + i] > 0 { isFg = true }
            if let im = img, let image {
                var bright = false
                for c in 0..<image.channels where im[c * vox + i] > imageThreshold { bright = true }
                if !bright { continue }
            }
            if isFg { fg.append(i) } else { bg.append(i) }
        }
        if fg.isEmpty && bg.isEmpty { throw ImagingError("RandCropByPosNegLabel: no voxel to centre a crop on") }
        let ratio = pos / (pos + neg)
        var out: [SpatialBox] = []
        for _ in 0..<numSamples {
            var pool = rng.uniform() < ratio ? fg : bg
            if pool.isEmpty { pool = fg.isEmpty ? bg : fg }
            let idx = pool[Int(rng.next() % UInt64(pool.count))]
            var rem = idx
            var centre = [Int](repeating: 0, count: shape.count)
            for d in stride(from: shape.count - 1, through: 0, by: -1) {
                centre[d] = rem % shape[d]
                rem /= shape[d]
            }
            var start: [Int] = [], end: [Int] = []
            for d in 0..<shape.count {
                let validStart = size[d] / 2
                var validEnd = Int(Double(shape[d] + 1) - Double(size[d]) / 2)
                if validStart == validEnd { validEnd += 1 }
                let c = min(max(centre[d], validStart), validEnd - 1)
                let s = max(c - size[d] / 2, 0)
                start.append(s)
                end.append(min(s + size[d], shape[d]))
            }
            out.append(SpatialBox(start: start, end: end))
        }
        return out
    }

    /// `numSamples` pairs of (image crop, label crop).
    public func callAsFunction(image: Volume, label: Volume, using rng: inout SeededGenerator) throws
        -> [(image: Volume, label: Volume)]
    {
        guard image.spatialShape == label.spatialShape else {
            throw ImagingError("RandCropByPosNegLabel: image \(image.spatialShape) and label \(label.spatialShape) differ")
        }
        return try boxes(label: label, image: image, using: &rng).map {
            (try image.cropped(to: $0), try label.cropped(to: $0))
        }
    }
}
