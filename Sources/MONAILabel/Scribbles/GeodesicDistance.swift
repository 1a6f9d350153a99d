import Foundation

/// Generalised geodesic distance transform (Criminisi, Sharp, Blake, "GeoS: Geodesic Image Segmentation",
/// ECCV 2008, eq. 2): `D(x) = min over x' of (δ(x, x') + D₀(x'))`, where `δ` is the length of the cheapest
/// 26-connected voxel path and a step from `p` to a neighbour `q` costs `sqrt(|p − q|² + γ² (I_p − I_q)²)`
/// (`|p − q|` in millimetres), so paths that cross intensity edges grow long. `D₀` is 0 on the seeds, +∞
/// elsewhere (a soft mask `ν·M` also works).
///
/// Computed by raster scanning as in GeoS: a forward sweep relaxes each voxel from its 13 already-visited
/// neighbours, a backward sweep from the other 13. One sweep pair follows every path that runs one way along
/// each axis; winding paths need more pairs (GeoS uses two); repeating them converges to the exact shortest
/// paths (Dijkstra's answer, to the ~5·10⁻⁶ relative error of the step costs' square roots), which
/// `sweeps: nil` does.
///
/// Within a sweep the 12 neighbours in earlier rows are final before a row starts, so their candidates are
/// computed over the whole row in one vectorisable loop; only the in-row neighbour is a serial scan.
enum GeodesicDistance {
    /// The distance map over `shape` (2 or 3 axes, C order) for `image` intensities and `initial` distances.
    /// - Parameters:
    ///   - spacing: voxel size per axis (mm).
    ///   - gamma: weight of the intensity difference against the spatial step.
    ///   - sweeps: forward/backward sweep pairs; nil repeats them until nothing changes.
    static func transform(
        image: [Float], shape: [Int], spacing: [Double], initial: [Float], gamma: Float, sweeps: Int? = 2
    ) throws -> [Float] {
        guard shape.count == 2 || shape.count == 3, shape.allSatisfy({ $0 >= 1 }) else {
            throw MONAILabelError.invalid("geodesic distance needs a 2D or 3D grid, got \(shape)")
        }
        let n = shape.reduce(1, *)
        guard image.count == n, initial.count == n, spacing.count >= shape.count else {
            throw MONAILabelError.invalid("geodesic distance: \(image.count) intensities, \(initial.count) seeds for \(shape)")
        }
        guard gamma >= 0, gamma.isFinite else { throw MONAILabelError.invalid("gamma must be >= 0") }
        // A 2D grid is a 3D one with a single slice.
        let dims = shape.count == 3 ? (shape[0], shape[1], shape[2]) : (1, shape[0], shape[1])
        let sp = shape.count == 3 ? spacing.prefix(3).map { Float($0) } : [1] + spacing.prefix(2).map { Float($0) }
        var d = initial
        let g2 = gamma * gamma
        image.withUnsafeBufferPointer { img in
            d.withUnsafeMutableBufferPointer { dist in
                let scan = RasterScan(image: img.baseAddress!, dist: dist.baseAddress!, dims: dims, spacing: sp, g2: g2)
                var pass = 0
                while sweeps.map({ pass < $0 }) ?? true {
                    let forwardChanged = scan.sweep(forward: true)
                    let changed = scan.sweep(forward: false) || forwardChanged
                    pass += 1
                    if !changed { break }
                }
            }
        }
        return d
    }

    /// Seeds as initial distances: 0 where `values` equals `seed`, +∞ elsewhere.
    static func seeds(_ values: [Float], equal seed: Float) -> [Float] {
        values.map { $0 == seed ? 0 : .infinity }
    }
}

/// One raster-scan relaxation pass over a 3D grid, in place.
private struct RasterScan {
    let image: UnsafePointer<Float>
    let dist: UnsafeMutablePointer<Float>
    let dims: (Int, Int, Int)
    let spacing: [Float]
    let g2: Float

    /// Relaxes every voxel from its causal half of the 26-neighbourhood (earlier in C order for a forward
    /// sweep, later for a backward one); returns whether any distance went down.
    func sweep(forward: Bool) -> Bool {
        let (nx, ny, nz) = dims
        let s: Int = forward ? -1 : 1
        // The 12 neighbours in earlier rows: the previous slice (9) and the previous row of this slice (3).
        var rowNeighbours: [(di: Int, dj: Int, dk: Int, d2: Float)] = []
        for dj in -1...1 { for dk in -1...1 { rowNeighbours.append((s, s * dj, dk, 0)) } }
        for dk in -1...1 { rowNeighbours.append((0, s, dk, 0)) }
        rowNeighbours = rowNeighbours.map { o in
            let a = Float(o.di) * spacing[0], b = Float(o.dj) * spacing[1], c = Float(o.dk) * spacing[2]
            return (o.di, o.dj, o.dk, a * a + b * b + c * c)
        }
        let inRow = spacing[2] * spacing[2]
        let candidate = UnsafeMutablePointer<Float>.allocate(capacity: nz)
        // step[k]: the cost between k − 1 and k along the row.
        let step = UnsafeMutablePointer<Float>.allocate(capacity: nz)
        defer {
            candidate.deallocate()
            step.deallocate()
        }
        var changed = false
        let g2 = self.g2
        for a in 0..<nx {
            let i = forward ? a : nx - 1 - a
            for b in 0..<ny {
                let j = forward ? b : ny - 1 - b
                let row = (i * ny + j) * nz
                let d = dist + row, img = image + row
                candidate.update(repeating: .infinity, count: nz)
                for o in rowNeighbours {
                    let qi = i + o.di, qj = j + o.dj
                    guard qi >= 0, qi < nx, qj >= 0, qj < ny else { continue }
                    let q = (qi * ny + qj) * nz
                    // Valid k: 0 ≤ k + dk < nz.
                    let lo = max(0, -o.dk), hi = min(nz, nz - o.dk)
                    Self.relaxRow(
                        candidate: candidate, image: img, neighbourDist: dist + q + o.dk, neighbourImage: image + q + o.dk,
                        from: lo, to: hi, d2: o.d2, g2: g2)
                }
                Self.stepCosts(step, image: img, count: nz, d2: inRow, g2: g2)
                // The in-row neighbour: a serial scan along k in the sweep's direction.
                var prev = Float.infinity
                if forward {
                    for k in 0..<nz {
                        let viaPrev = prev + step[k]
                        var best = candidate[k] < d[k] ? candidate[k] : d[k]
                        if viaPrev < best { best = viaPrev }
                        if best < d[k] { d[k] = best; changed = true }
                        prev = d[k]
                    }
                } else {
                    for k in stride(from: nz - 1, through: 0, by: -1) {
                        let viaPrev = prev + (k + 1 < nz ? step[k + 1] : 0)
                        var best = candidate[k] < d[k] ? candidate[k] : d[k]
                        if viaPrev < best { best = viaPrev }
                        if best < d[k] { d[k] = best; changed = true }
                        prev = d[k]
                    }
                }
            }
        }
        return changed
    }

    /// `candidate[k] = min(candidate[k], nd[k] + sqrt(d2 + g2 (img[k] − ni[k])²))` for k in `lo..<hi`: a loop
    /// without cross-iteration dependencies or calls, which the compiler vectorises.
    @inline(__always)
    private static func relaxRow(
        candidate: UnsafeMutablePointer<Float>, image: UnsafePointer<Float>, neighbourDist: UnsafePointer<Float>,
        neighbourImage: UnsafePointer<Float>, from lo: Int, to hi: Int, d2: Float, g2: Float
    ) {
        for k in lo..<hi {
            let diff = image[k] - neighbourImage[k]
            let via = neighbourDist[k] + fastSquareRoot(d2 + g2 * diff * diff)
            candidate[k] = via < candidate[k] ? via : candidate[k]
        }
    }

    /// `step[k] = sqrt(d2 + g2 (img[k] − img[k − 1])²)` for k ≥ 1 (`step[0]` = +∞: nothing before the row).
    @inline(__always)
    private static func stepCosts(_ step: UnsafeMutablePointer<Float>, image: UnsafePointer<Float>, count: Int, d2: Float, g2: Float) {
        step[0] = .infinity
        for k in 1..<max(1, count) {
            let diff = image[k] - image[k - 1]
            step[k] = fastSquareRoot(d2 + g2 * diff * diff)
        }
    }
}

/// √x for x > 0 to about 5·10⁻⁶ relative error: the bit-level reciprocal-root estimate refined by two Newton
/// steps. Swift's `squareRoot()` goes through glibc's `sqrtf` (errno semantics) on Linux, which keeps the
/// relaxation loops from vectorising; this keeps them branch- and call-free, twice as fast overall.
@inline(__always) private func fastSquareRoot(_ x: Float) -> Float {
    var y = Float(bitPattern: 0x5f37_5a86 &- (x.bitPattern >> 1))
    let h = 0.5 * x
    y = y * (1.5 - h * y * y)
    y = y * (1.5 - h * y * y)
    return x * y
}
