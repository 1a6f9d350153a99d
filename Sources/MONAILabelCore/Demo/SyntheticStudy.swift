import Foundation

/// A small deterministic RNG (SplitMix64) so generated studies are identical on every machine.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE5_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A standard normal sample (Box-Muller).
    public mutating func gaussian() -> Double {
        let u1 = max(Double.random(in: 0..<1, using: &self), 1e-12)
        let u2 = Double.random(in: 0..<1, using: &self)
        return (-2 * log(u1)).squareRoot() * cos(2 * .pi * u2)
    }
}

/// A CT-like synthetic case: an abdomen-shaped body with a spine, a liver and an organ-shaped "spleen" blob,
/// with the spleen's exact mask as ground truth. Used by the demo studies folder, tests and the training
/// benchmark; nothing is downloaded.
public struct SyntheticCase: Sendable {
    /// Spatial shape (i, j, k) along the file's axes.
    public var shape: [Int]
    /// Voxel size in mm along i, j, k; the affine is diagonal (RAS), origin at `origin`.
    public var spacing: [Double]
    public var origin: [Double]
    /// Hounsfield units, C order over (i, j, k): index `(i * shape[1] + j) * shape[2] + k`.
    public var image: [Int16]
    /// 1 inside the spleen, 0 elsewhere, same layout.
    public var label: [UInt8]

    /// Row-major voxel-to-RAS affine.
    public var affine: [Double] {
        [spacing[0], 0, 0, origin[0], 0, spacing[1], 0, origin[1], 0, 0, spacing[2], origin[2], 0, 0, 0, 1]
    }

    /// Generates case number `index` of the study seeded with `seed`.
    public static func generate(
        index: Int, seed: UInt64 = 2024, shape: [Int] = [96, 96, 64], spacing: [Double] = [1.5, 1.5, 2.0]
    ) -> SyntheticCase {
        var rng = SplitMix64(seed: seed &+ UInt64(index) &* 0x1000_0001)
        let (nx, ny, nz) = (shape[0], shape[1], shape[2])
        // Physical extent in mm and a body ellipse filling most of the field of view.
        let ex = Double(nx) * spacing[0], ey = Double(ny) * spacing[1], ez = Double(nz) * spacing[2]
        let bodyA = ex * Double.random(in: 0.38...0.44, using: &rng)
        let bodyB = ey * Double.random(in: 0.30...0.36, using: &rng)
        // Spleen: patient's left (+x in RAS is left), posterior (-y), an ellipsoid with a lobulated surface.
        let sc = [ex * Double.random(in: 0.66...0.72, using: &rng), ey * Double.random(in: 0.40...0.48, using: &rng),
                  ez * Double.random(in: 0.42...0.58, using: &rng)]
        let sr = [Double.random(in: 11...16, using: &rng), Double.random(in: 15...21, using: &rng),
                  Double.random(in: 20...28, using: &rng)]
        let lobes = (0..<3).map { _ in (Double.random(in: 2...4, using: &rng).rounded(), Double.random(in: 0...(2 * .pi), using: &rng)) }
        let spleenHU = Double.random(in: 105...125, using: &rng)
        // Liver: patient's right, larger and darker.
        let lc = [ex * Double.random(in: 0.28...0.34, using: &rng), ey * Double.random(in: 0.50...0.56, using: &rng), ez * 0.5]
        let lr = [Double.random(in: 22...28, using: &rng), Double.random(in: 24...30, using: &rng), ez * 0.45]
        let liverHU = Double.random(in: 55...70, using: &rng)
        let spine = [ex * 0.5, ey * 0.5 - bodyB * 0.72]

        var image = [Int16](repeating: 0, count: nx * ny * nz)
        var label = [UInt8](repeating: 0, count: nx * ny * nz)
        for i in 0..<nx {
            let x = (Double(i) + 0.5) * spacing[0]
            for j in 0..<ny {
                let y = (Double(j) + 0.5) * spacing[1]
                let body = pow((x - ex / 2) / bodyA, 2) + pow((y - ey / 2) / bodyB, 2)
                for k in 0..<nz {
                    let z = (Double(k) + 0.5) * spacing[2]
                    var hu = -1000.0
                    var isSpleen = false
                    if body <= 1 {
                        hu = body > 0.92 ? -90 : 40  // a fat rim, then soft tissue
                        if hypot(x - spine[0], y - spine[1]) < 9 { hu = 650 }
                        let dl = pow((x - lc[0]) / lr[0], 2) + pow((y - lc[1]) / lr[1], 2) + pow((z - lc[2]) / lr[2], 2)
                        if dl <= 1 { hu = liverHU }
                        let d = [(x - sc[0]) / sr[0], (y - sc[1]) / sr[1], (z - sc[2]) / sr[2]]
                        let r = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).squareRoot()
                        let theta = atan2(d[1], d[0]), phi = atan2(d[2], hypot(d[0], d[1]))
                        var bump = 0.0
                        for (n, (freq, phase)) in lobes.enumerated() {
                            bump += 0.07 * sin(freq * (n == 2 ? phi : theta) + phase)
                        }
                        if r <= 1 + bump {
                            hu = spleenHU
                            isSpleen = true
                        }
                    }
                    hu += 12 * rng.gaussian()
                    let idx = (i * ny + j) * nz + k
                    image[idx] = Int16(max(-1024, min(3071, hu.rounded())))
                    label[idx] = isSpleen ? 1 : 0
                }
            }
        }
        return SyntheticCase(shape: shape, spacing: spacing, origin: [-ex / 2, -ey / 2, -ez / 2], image: image, label: label)
    }
}
