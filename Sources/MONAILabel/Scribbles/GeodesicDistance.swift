import Dispatch
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
/// Several maps over one image (GeoS needs the foreground's and the background's) share each step cost. Within
/// a sweep the 12 neighbours in earlier rows are final before a row starts, so their candidates are computed
/// over the whole row in vectorisable loops; only the in-row neighbour is a serial scan. Rows whose
/// sweep-order coordinates (slice a, row b) have the same `2a + b` depend on none of each other, so each such
/// wavefront is spread over the cores.
enum GeodesicDistance {
    /// The distance map over `shape` (2 or 3 axes, C order) for `image` intensities and `initial` distances.
    /// - Parameters:
    ///   - spacing: voxel size per axis (mm).
    ///   - gamma: weight of the intensity difference against the spatial step.
    ///   - sweeps: forward/backward sweep pairs; nil repeats them until nothing changes.
    static func transform(
        image: [Float], shape: [Int], spacing: [Double], initial: [Float], gamma: Float, sweeps: Int? = 2
    ) throws -> [Float] {
        try transform(image: image, shape: shape, spacing: spacing, initial: [initial], gamma: gamma, sweeps: sweeps)[0]
    }

    /// One distance map per entry of `initial`, computed together.
    static func transform(
        image: [Float], shape: [Int], spacing: [Double], initial: [[Float]], gamma: Float, sweeps: Int? = 2
    ) throws -> [[Float]] {
        guard shape.count == 2 || shape.count == 3, shape.allSatisfy({ $0 >= 1 }) else {
            throw MONAILabelError.invalid("geodesic distance needs a 2D or 3D grid, got \(shape)")
        }
        let n = shape.reduce(1, *)
        guard image.count == n, initial.allSatisfy({ $0.count == n }), spacing.count >= shape.count else {
            throw MONAILabelError.invalid("geodesic distance: \(image.count) intensities, seeds \(initial.map(\.count)) for \(shape)")
        }
        guard gamma >= 0, gamma.isFinite else { throw MONAILabelError.invalid("gamma must be >= 0") }
        guard !initial.isEmpty else { return [] }
        // A 2D grid is a 3D one with a single slice.
        let dims = shape.count == 3 ? (shape[0], shape[1], shape[2]) : (1, shape[0], shape[1])
        let sp = shape.count == 3 ? spacing.prefix(3).map { Float($0) } : [1] + spacing.prefix(2).map { Float($0) }
        let maps = initial.map { d -> UnsafeMutablePointer<Float> in
            let p = UnsafeMutablePointer<Float>.allocate(capacity: n)
            d.withUnsafeBufferPointer { p.initialize(from: $0.baseAddress!, count: n) }
            return p
        }
        defer { for p in maps { p.deallocate() } }
        image.withUnsafeBufferPointer { img in
            let scan = RasterScan(image: img.baseAddress!, maps: maps, dims: dims, spacing: sp, g2: gamma * gamma)
            var pass = 0
            while sweeps.map({ pass < $0 }) ?? true {
                let forwardChanged = scan.sweep(forward: true)
                let changed = scan.sweep(forward: false) || forwardChanged
                pass += 1
                if !changed { break }
            }
        }
        return maps.map { Array(UnsafeBufferPointer(start: $0, count: n)) }
    }

    /// Seeds as initial distances: 0 where `values` equals `seed`, +∞ elsewhere.
    static func seeds(_ values: [Float], equal seed: Float) -> [Float] {
        values.map { $0 == seed ? 0 : .infinity }
    }
}

/// Raster-scan relaxation passes over a 3D grid, in place. Rows of one wavefront run concurrently; each writes
/// only its own row of every map and reads rows of earlier wavefronts, hence the unchecked sendability.
private struct RasterScan: @unchecked Sendable {
    let image: UnsafePointer<Float>
    let maps: [UnsafeMutablePointer<Float>]
    let dims: (Int, Int, Int)
    let spacing: [Float]
    let g2: Float

    private struct Neighbour {
        var di: Int
        var dj: Int
        var dk: Int
        var d2: Float
    }

    /// Relaxes every voxel from its causal half of the 26-neighbourhood (earlier in C order for a forward
    /// sweep, later for a backward one); returns whether any distance went down.
    func sweep(forward: Bool) -> Bool {
        let (nx, ny, _) = dims
        let s: Int = forward ? -1 : 1
        // The 12 neighbours in earlier rows: the previous slice (9) and the previous row of this slice (3).
        let offsets = (-1...1).flatMap { dj in (-1...1).map { dk in (s, s * dj, dk) } } + (-1...1).map { dk in (0, s, dk) }
        let neighbours = offsets.map { (di, dj, dk) -> Neighbour in
            let a = Float(di) * spacing[0], b = Float(dj) * spacing[1], c = Float(dk) * spacing[2]
            return Neighbour(di: di, dj: dj, dk: dk, d2: a * a + b * b + c * c)
        }
        let cores = max(1, ProcessInfo.processInfo.activeProcessorCount)
        var changed = false
        // Wavefront t holds the rows (a, b) with 2a + b = t, a and b counted in sweep order.
        for t in 0..<(2 * (nx - 1) + ny) {
            let aLo = max(0, (t - ny + 2) / 2), aHi = min(nx - 1, t / 2)
            let rows = aHi - aLo + 1
            guard rows > 0 else { continue }
            let chunks = min(cores, rows)
            if chunks == 1 {
                changed = relaxRows(aLo...aHi, t: t, forward: forward, neighbours: neighbours) || changed
                continue
            }
            let flags = ChangedFlags(count: chunks)
            DispatchQueue.concurrentPerform(iterations: chunks) { c in
                let lo = aLo + rows * c / chunks, hi = aLo + rows * (c + 1) / chunks - 1
                if lo <= hi && relaxRows(lo...hi, t: t, forward: forward, neighbours: neighbours) { flags.set(c) }
            }
            changed = flags.any || changed
        }
        return changed
    }

    /// Relaxes the rows (a, t − 2a) for `a` in `slices`, a and the row counted in sweep order.
    private func relaxRows(_ slices: ClosedRange<Int>, t: Int, forward: Bool, neighbours: [Neighbour]) -> Bool {
        let (nx, ny, nz) = dims
        let m = maps.count
        // Per map a candidate row, then one shared row of step costs.
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: (m + 1) * nz)
        defer { scratch.deallocate() }
        let cost = scratch + m * nz
        let inRow = spacing[2] * spacing[2]
        var changed = false
        for a in slices {
            let i = forward ? a : nx - 1 - a
            let j = forward ? t - 2 * a : ny - 1 - (t - 2 * a)
            let row = (i * ny + j) * nz
            let img = image + row
            scratch.update(repeating: .infinity, count: m * nz)
            for o in neighbours {
                let qi = i + o.di, qj = j + o.dj
                guard qi >= 0, qi < nx, qj >= 0, qj < ny else { continue }
                let q = (qi * ny + qj) * nz + o.dk
                // Valid k: 0 ≤ k + dk < nz.
                let lo = max(0, -o.dk), hi = min(nz, nz - o.dk)
                Self.stepCosts(cost, image: img, neighbourImage: image + q, from: lo, to: hi, d2: o.d2, g2: g2)
                for (mi, map) in maps.enumerated() {
                    Self.relax(scratch + mi * nz, neighbourDist: map + q, cost: cost, from: lo, to: hi)
                }
            }
            // The in-row neighbour: cost[k] is the step between k − 1 and k; then a serial scan per map.
            Self.stepCosts(cost + 1, image: img + 1, neighbourImage: img, from: 0, to: nz - 1, d2: inRow, g2: g2)
            for (mi, map) in maps.enumerated() {
                let d = map + row, candidate = scratch + mi * nz
                var prev = Float.infinity
                if forward {
                    for k in 0..<nz {
                        let viaPrev = k > 0 ? prev + cost[k] : .infinity
                        var best = candidate[k] < d[k] ? candidate[k] : d[k]
                        if viaPrev < best { best = viaPrev }
                        if best < d[k] { d[k] = best; changed = true }
                        prev = d[k]
                    }
                } else {
                    for k in stride(from: nz - 1, through: 0, by: -1) {
                        let viaPrev = k + 1 < nz ? prev + cost[k + 1] : .infinity
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

    /// `cost[k] = sqrt(d2 + g2 (img[k] − ni[k])²)` for k in `lo..<hi`: no cross-iteration dependencies or
    /// calls, so the compiler vectorises it.
    @inline(__always)
    private static func stepCosts(
        _ cost: UnsafeMutablePointer<Float>, image: UnsafePointer<Float>, neighbourImage: UnsafePointer<Float>,
        from lo: Int, to hi: Int, d2: Float, g2: Float
    ) {
        guard lo < hi else { return }
        for k in lo..<hi {
            let diff = image[k] - neighbourImage[k]
            cost[k] = fastSquareRoot(d2 + g2 * diff * diff)
        }
    }

    /// `candidate[k] = min(candidate[k], nd[k] + cost[k])` for k in `lo..<hi`.
    @inline(__always)
    private static func relax(
        _ candidate: UnsafeMutablePointer<Float>, neighbourDist: UnsafePointer<Float>, cost: UnsafePointer<Float>,
        from lo: Int, to hi: Int
    ) {
        guard lo < hi else { return }
        for k in lo..<hi {
            let via = neighbourDist[k] + cost[k]
            candidate[k] = via < candidate[k] ? via : candidate[k]
        }
    }
}

/// Which chunks of a wavefront changed a distance, set from concurrent work items.
private final class ChangedFlags: @unchecked Sendable {
    private let lock = NSLock()
    private var flags: [Bool]

    init(count: Int) { flags = Array(repeating: false, count: count) }

    func set(_ i: Int) {
        lock.lock()
        flags[i] = true
        lock.unlock()
    }

    var any: Bool {
        lock.lock()
        defer { lock.unlock() }
        return flags.contains(true)
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
