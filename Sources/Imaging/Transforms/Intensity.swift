import Foundation

/// `monai.transforms.ScaleIntensityRange`: maps `[aMin, aMax]` linearly onto `[bMin, bMax]`, optionally clipping.
public struct ScaleIntensityRange: Sendable {
    public var aMin, aMax, bMin, bMax: Double
    public var clip: Bool

    public init(aMin: Double, aMax: Double, bMin: Double, bMax: Double, clip: Bool = false) {
        (self.aMin, self.aMax, self.bMin, self.bMax, self.clip) = (aMin, aMax, bMin, bMax, clip)
    }

    public func callAsFunction(_ v: Volume) -> Volume {
        var out = v
        apply(&out)
        return out
    }

    /// Rescales `v` in place (no copy when its Float voxels are uniquely referenced).
    public func apply(_ v: inout Volume) {
        let a0 = Float(aMin), b0 = Float(bMin), lo = Float(min(bMin, bMax)), hi = Float(max(bMin, bMax))
        let range = Float(aMax - aMin), scale = Float(bMax - bMin), doClip = clip, shiftOnly = aMax - aMin == 0
        v.updateFloats { b in
            let p = b.baseAddress
            Parallel.forChunks(count: b.count) { l, h in
                guard let p else { return }
                if shiftOnly {
                    // MONAI warns and only shifts when the input range is empty.
                    for i in l..<h { p[i] = p[i] - a0 + b0 }
                } else if doClip {
                    for i in l..<h { p[i] = min(max((p[i] - a0) / range * scale + b0, lo), hi) }
                } else {
                    for i in l..<h { p[i] = (p[i] - a0) / range * scale + b0 }
                }
            }
        }
    }
}

/// `monai.transforms.ScaleIntensity`: rescales to `[minv, maxv]` from the volume's own min/max (per channel when
/// `channelWise`), or multiplies by `1 + factor` when `factor` is given.
public struct ScaleIntensity: Sendable {
    public var minv: Double
    public var maxv: Double
    public var factor: Double?
    public var channelWise: Bool

    public init(minv: Double = 0, maxv: Double = 1, factor: Double? = nil, channelWise: Bool = false) {
        (self.minv, self.maxv, self.factor, self.channelWise) = (minv, maxv, factor, channelWise)
    }

    public func callAsFunction(_ v: Volume) -> Volume {
        var out = v
        apply(&out)
        return out
    }

    /// Rescales `v` in place (no copy when its Float voxels are uniquely referenced).
    public func apply(_ v: inout Volume) {
        let groups = channelWise ? v.channels : 1
        let factor = factor, minv = Float(minv), outSpan = Float(maxv - self.minv)
        v.updateFloats { b in
            guard let p = b.baseAddress, b.count > 0 else { return }
            if let f = factor {
                let m = Float(1 + f)
                Parallel.forChunks(count: b.count) { l, h in for i in l..<h { p[i] *= m } }
                return
            }
            let n = b.count / groups
            for g in 0..<groups {
                let q = p + g * n
                let (mina, maxa) = Self.minMax(q, count: n)
                if mina == maxa {
                    Parallel.forChunks(count: n) { l, h in for i in l..<h { q[i] *= minv } }
                    continue
                }
                let span = maxa - mina
                Parallel.forChunks(count: n) { l, h in for i in l..<h { q[i] = (q[i] - mina) / span * outSpan + minv } }
            }
        }
    }

    /// The minimum and maximum of `count` values, computed in parallel chunks.
    static func minMax(_ p: UnsafeMutablePointer<Float>, count: Int) -> (Float, Float) {
        let chunks = max(1, min(Parallel.cores * 4, count / (1 << 15)))
        var partial = [(Float, Float)](repeating: (.infinity, -.infinity), count: chunks)
        partial.withUnsafeMutableBufferPointer { pb in
            let out = pb.baseAddress!
            Parallel.forChunks(count: chunks, minChunk: 1) { c0, c1 in
                for c in c0..<c1 {
                    var lo = Float.infinity, hi = -Float.infinity
                    for i in (count * c / chunks)..<(count * (c + 1) / chunks) {
                        lo = min(lo, p[i])
                        hi = max(hi, p[i])
                    }
                    out[c] = (lo, hi)
                }
            }
        }
        return partial.reduce((Float.infinity, -Float.infinity)) { (min($0.0, $1.0), max($0.1, $1.1)) }
    }
}

/// `monai.transforms.NormalizeIntensity`: `(x - subtrahend) / divisor`, by default the mean and the population
/// standard deviation (0 replaced by 1), over all voxels or only non-zero ones, jointly or per channel.
public struct NormalizeIntensity: Sendable {
    public var subtrahend: [Double]?
    public var divisor: [Double]?
    public var nonzero: Bool
    public var channelWise: Bool

    /// `subtrahend`/`divisor`: one value, or one per channel with `channelWise`.
    public init(subtrahend: [Double]? = nil, divisor: [Double]? = nil, nonzero: Bool = false, channelWise: Bool = false) {
        (self.subtrahend, self.divisor, self.nonzero, self.channelWise) = (subtrahend, divisor, nonzero, channelWise)
    }

    public func callAsFunction(_ v: Volume) throws -> Volume {
        var x = v.floats
        guard !x.isEmpty else { return v.with(floats: x) }
        let groups = channelWise ? v.channels : 1
        for list in [subtrahend, divisor].compactMap({ $0 }) where list.count != 1 && list.count != groups {
            throw ImagingError("NormalizeIntensity: \(list.count) values for \(groups) channel group(s)")
        }
        let n = x.count / groups
        for g in 0..<groups {
            let lo = g * n, hi = lo + n
            var count = 0, sum = 0.0
            for i in lo..<hi where !nonzero || x[i] != 0 {
                count += 1
                sum += Double(x[i])
            }
            if nonzero && count == 0 { continue }
            let mean = count > 0 ? sum / Double(count) : 0
            let sub = subtrahend.map { $0.count == 1 ? $0[0] : $0[g] } ?? mean
            var div: Double
            if let d = divisor {
                div = d.count == 1 ? d[0] : d[g]
            } else {
                var ss = 0.0
                for i in lo..<hi where !nonzero || x[i] != 0 {
                    let e = Double(x[i]) - mean
                    ss += e * e
                }
                div = count > 0 ? (ss / Double(count)).squareRoot() : 0
            }
            if div == 0 { div = 1 }
            let s = Float(sub), d = Float(div), nz = nonzero
            x.withUnsafeMutableBufferPointer { p in
                let b = p.baseAddress!
                Parallel.forChunks(count: n) { l, h in
                    for i in (lo + l)..<(lo + h) where !nz || b[i] != 0 { b[i] = (b[i] - s) / d }
                }
            }
        }
        return v.with(floats: x)
    }
}

/// `monai.transforms.GaussianSmooth` (`approx="erf"`, truncated at 4 sigma, zero padding): separable Gaussian
/// filtering of every channel with MONAI's unnormalised erf kernel.
public struct GaussianSmooth: Sendable {
    /// One sigma for all spatial axes, or one per axis.
    public var sigma: [Double]

    public init(sigma: Double) { self.sigma = [sigma] }
    public init(sigma: [Double]) { self.sigma = sigma }

    /// MONAI `gaussian_1d(sigma, truncated=4.0, approx="erf", normalize=False)`.
    public static func kernel(_ sigma: Double) -> [Float] {
        if sigma <= 0 { return [1] }
        let tail = Int(max(sigma * 4, 0.5) + 0.5)
        let t = Float(0.70710678 / abs(sigma))
        return (-tail...tail).map { i in
            let x = Float(i)
            return max(0, 0.5 * (erf(t * (x + 0.5)) - erf(t * (x - 0.5))))
        }
    }

    public func callAsFunction(_ v: Volume) -> Volume {
        let sr = v.spatialShape.count
        var x = v.floats
        guard !x.isEmpty else { return v.with(floats: x) }
        let shape = v.spatialShape
        var strides = [Int](repeating: 1, count: sr)
        for i in stride(from: sr - 2, through: 0, by: -1) { strides[i] = strides[i + 1] * shape[i + 1] }
        let vox = v.voxelCount
        for axis in 0..<sr {
            let k = GaussianSmooth.kernel(sigma.count == 1 ? sigma[0] : sigma[min(axis, sigma.count - 1)])
            if k.count == 1 && k[0] == 1 { continue }
            let half = k.count / 2, n = shape[axis], st = strides[axis]
            let lines = v.channels * vox / n
            let src = x
            x.withUnsafeMutableBufferPointer { dp in
                let d = dp.baseAddress!
                src.withUnsafeBufferPointer { sp in
                    let s = sp.baseAddress!
                    Parallel.forChunks(count: lines, minChunk: 256) { lo, hi in
                        for line in lo..<hi {
                            // Line start: split into the index above the axis (outer) and below it (inner).
                            let inner = line % st, outer = line / st
                            let base = outer * st * n + inner
                            for i in 0..<n {
                                var acc: Float = 0
                                for (j, w) in k.enumerated() {
                                    let q = i + j - half
                                    if q >= 0 && q < n { acc += w * s[base + q * st] }
                                }
                                d[base + i * st] = acc
                            }
                        }
                    }
                }
            }
        }
        return v.with(floats: x)
    }
}

/// `monai.transforms.ShiftIntensity`: adds `offset`.
public struct ShiftIntensity: Sendable {
    public var offset: Double
    public init(offset: Double) { self.offset = offset }
    public func callAsFunction(_ v: Volume) -> Volume {
        let o = Float(offset)
        return v.with(floats: Parallel.map(v.floats) { $0 + o })
    }
}
