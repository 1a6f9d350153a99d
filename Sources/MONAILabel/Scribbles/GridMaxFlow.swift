import Foundation
import Imaging

private struct UncheckedSendableBox<T>: @unchecked Sendable {
    let value: T
}

/// Errors of building or solving a grid graph.
public struct MaxFlowError: Error, CustomStringConvertible, Sendable {
    public let description: String
    init(_ message: String) { description = message }
}

/// Boykov–Kolmogorov max-flow / min-cut (IEEE TPAMI 2004) on a regular grid graph: one node per voxel of a
/// 2D or 3D array in C order (last axis fastest), terminal links to the source and sink, and symmetric
/// n-links to the 4 (2D) or 6 (3D) axis neighbours, as `numpymaxflow` builds them for scribbles GraphCut.
///
/// Neighbours are implicit in the grid, so a node costs 4 bytes per residual direction plus 18 bytes of
/// search state (about 42 bytes per voxel in 3D): a 256³ graph takes some 700 MB instead of the several GB of
/// an adjacency-list graph.
///
/// The source side of the cut is reported as `true` (foreground in scribbles GraphCut): cutting a node's
/// source link costs `sourceCapacity`, i.e. `sourceCapacity` is what labelling that node *sink* costs.
public final class GridMaxFlow {
    public let shape: [Int]
    public let nodeCount: Int
    private let rank: Int
    private let strides: [Int]
    /// `res[(2a) * n + i]` is the residual of `i -> i + stride[a]`; `res[(2a + 1) * n + i]` the residual of
    /// `i + stride[a] -> i`. Edges leaving the grid (and wrapping into the next row) stay at 0 and are never used.
    private let res: UnsafeMutableBufferPointer<Float>
    /// Remaining terminal capacity: > 0 towards the source, < 0 towards the sink.
    private let tr: UnsafeMutableBufferPointer<Float>
    /// 0 free, 1 source tree, 2 sink tree.
    private let tree: UnsafeMutableBufferPointer<UInt8>
    /// Direction to the parent (0..<2·rank), or `terminal`, `orphan`, `none`.
    private let parent: UnsafeMutableBufferPointer<UInt8>
    private let ts: UnsafeMutableBufferPointer<Int32>
    private let dist: UnsafeMutableBufferPointer<Int32>
    /// Active-queue links: `notQueued`, `endOfQueue` or the next active node.
    private let next: UnsafeMutableBufferPointer<Int32>
    private let offsets: [Int]
    private var flowValue: Double = 0
    private var solved = false

    private let terminal: UInt8
    private let orphan: UInt8
    private let none: UInt8 = 255
    private static let notQueued: Int32 = -2
    private static let endOfQueue: Int32 = -1

    /// An empty graph over `shape` (2 or 3 axes, each at least 1; at most 2³¹−1 nodes).
    public init(shape: [Int]) throws {
        guard shape.count == 2 || shape.count == 3 else {
            throw MaxFlowError("GraphCut needs a 2D or 3D grid, got \(shape.count) axes")
        }
        guard shape.allSatisfy({ $0 >= 1 }) else { throw MaxFlowError("GraphCut grid \(shape) has an empty axis") }
        var n = 1, overflow = false
        for d in shape {
            let (p, o) = n.multipliedReportingOverflow(by: d)
            n = p
            overflow = overflow || o
        }
        guard !overflow, n < Int(Int32.max) else { throw MaxFlowError("GraphCut grid \(shape) is too large") }
        // Each node costs 2 * rank + 4 four-byte words (residuals, terminal capacity, tree bookkeeping): bounded
        // like a volume with that many channels, before anything is allocated.
        do { try ImagingLimits.checkVoxels(shape, channels: 2 * shape.count + 4, what: "GraphCut grid") } catch let e as ImagingError {
            throw MaxFlowError(e.message)
        }
        self.shape = shape
        nodeCount = n
        rank = shape.count
        var s = Array(repeating: 1, count: rank)
        for a in stride(from: rank - 2, through: 0, by: -1) { s[a] = s[a + 1] * shape[a + 1] }
        strides = s
        offsets = (0..<(2 * rank)).map { d in d % 2 == 0 ? s[d / 2] : -s[d / 2] }
        terminal = UInt8(2 * rank)
        orphan = UInt8(2 * rank + 1)
        res = .allocate(capacity: 2 * rank * n)
        res.initialize(repeating: 0)
        tr = .allocate(capacity: n)
        tr.initialize(repeating: 0)
        tree = .allocate(capacity: n)
        tree.initialize(repeating: 0)
        parent = .allocate(capacity: n)
        parent.initialize(repeating: 255)
        ts = .allocate(capacity: n)
        ts.initialize(repeating: 0)
        dist = .allocate(capacity: n)
        dist.initialize(repeating: 0)
        next = .allocate(capacity: n)
        next.initialize(repeating: Self.notQueued)
    }

    deinit {
        res.deallocate()
        tr.deallocate()
        tree.deallocate()
        parent.deallocate()
        ts.deallocate()
        dist.deallocate()
        next.deallocate()
    }

    /// Adds terminal capacities to every node (arrays of `nodeCount`, non-negative). The part both links share
    /// is flow that any cut pays, so it is counted at once and only the difference is kept.
    public func addTerminalCapacities(source: [Float], sink: [Float]) throws {
        guard source.count == nodeCount, sink.count == nodeCount else {
            throw MaxFlowError("terminal capacities: expected \(nodeCount) values, got \(source.count) and \(sink.count)")
        }
        var shared = 0.0
        for i in 0..<nodeCount {
            let cs = source[i], ct = sink[i]
            guard cs >= 0, ct >= 0, cs.isFinite, ct.isFinite else {
                throw MaxFlowError("terminal capacities must be finite and non-negative (node \(i): \(cs), \(ct))")
            }
            let t = tr[i]
            // Fold the node's earlier residual in, keeping the shared part as flow.
            let s2 = cs + max(t, 0), t2 = ct + max(-t, 0)
            shared += Double(min(s2, t2))
            tr[i] = s2 - t2
        }
        flowValue += shared
    }

    /// Sets the symmetric n-link capacity between every node and its `+1` neighbour along `axis`: `weights`
    /// holds `nodeCount` values, the value at node `i` belonging to the edge `i — i + e_axis` (ignored on the
    /// last slice of that axis).
    public func setNeighbourCapacities(axis: Int, weights: [Float]) throws {
        guard axis >= 0, axis < rank else { throw MaxFlowError("n-links: axis \(axis) out of range") }
        guard weights.count == nodeCount else {
            throw MaxFlowError("n-links: expected \(nodeCount) values, got \(weights.count)")
        }
        guard weights.allSatisfy({ $0 >= 0 && $0.isFinite }) else {
            throw MaxFlowError("n-link capacities must be finite and non-negative")
        }
        weights.withUnsafeBufferPointer { w in fillNeighbourCapacities(axis: axis) { w[$0] } }
    }

    /// Sets every n-link to GraphCut's contrast-sensitive weight `λ·exp(−(I_p − I_q)² / (2σ²))` from the
    /// image intensities (`nodeCount` values), computed in place without per-axis weight arrays.
    public func setContrastNeighbourCapacities(image: [Float], lamda: Float, sigma: Float) throws {
        guard image.count == nodeCount else {
            throw MaxFlowError("n-links: expected \(nodeCount) intensities, got \(image.count)")
        }
        guard lamda >= 0, lamda.isFinite, sigma > 0, sigma.isFinite else {
            throw MaxFlowError("n-links need lamda >= 0 and sigma > 0")
        }
        let k = 1 / (2 * sigma * sigma)
        image.withUnsafeBufferPointer { img in
            for axis in 0..<rank {
                let st = strides[axis]
                fillNeighbourCapacities(axis: axis) { i in
                    let d = img[i] - img[i + st]
                    let w = lamda * exp(-d * d * k)
                    return w.isFinite ? w : 0
                }
            }
        }
    }

    /// Writes `weight(i)` into both residuals of every edge `i — i + e_axis` that lies inside the grid, and 0
    /// into the slots of the last slice (which would wrap into the next row). Rows are split over the cores.
    private func fillNeighbourCapacities(axis: Int, _ weight: (Int) -> Float) {
        let n = nodeCount, st = strides[axis], dim = shape[axis]
        let fwd = res.baseAddress! + (2 * axis) * n, bwd = res.baseAddress! + (2 * axis + 1) * n
        let block = st * dim, blocks = n / block
        let chunks = min(blocks, max(1, ProcessInfo.processInfo.activeProcessorCount * 4))
        let fill = { (c: Int) in
            let b0 = blocks * c / chunks, b1 = blocks * (c + 1) / chunks
            for b in b0..<b1 {
                let base = b * block, inner = base + block - st
                for i in base..<inner {
                    let w = weight(i)
                    fwd[i] = w
                    bwd[i] = w
                }
                for i in inner..<(base + block) {
                    fwd[i] = 0
                    bwd[i] = 0
                }
            }
        }
        // Chunks write disjoint ranges of `res`; the box lets the non-Sendable loop into Dispatch's work item.
        withoutActuallyEscaping(fill) { fill in
            let box = UncheckedSendableBox(value: fill)
            DispatchQueue.concurrentPerform(iterations: chunks) { box.value($0) }
        }
    }

    /// The max-flow value (= the min-cut value), after `solve()`.
    public var flow: Double { flowValue }

    /// Computes the maximum flow and returns its value.
    @discardableResult
    public func solve() -> Double {
        guard !solved else { return flowValue }
        solved = true
        run()
        return flowValue
    }

    /// The minimum cut: `true` for nodes on the source side (reachable from the source in the residual
    /// graph). Call after `solve()`.
    public func sourceSide() -> [Bool] {
        (0..<nodeCount).map { tree[$0] == 1 }
    }

    // MARK: Algorithm

    @inline(__always) private func neighbour(_ i: Int, _ d: Int) -> Int {
        let j = i + offsets[d]
        return j >= 0 && j < nodeCount ? j : -1
    }

    /// Index into `res` of the edge `i -> i + offsets[d]`.
    @inline(__always) private func edge(_ i: Int, _ d: Int) -> Int {
        let a = d >> 1
        return d & 1 == 0 ? (2 * a) * nodeCount + i : (2 * a + 1) * nodeCount + i + offsets[d]
    }

    /// Index of the reverse edge `i + offsets[d] -> i`.
    @inline(__always) private func reverse(_ i: Int, _ d: Int) -> Int {
        let a = d >> 1
        return d & 1 == 0 ? (2 * a + 1) * nodeCount + i : (2 * a) * nodeCount + i + offsets[d]
    }

    private var queueHead: Int32 = -1
    private var queueTail: Int32 = -1
    private var orphans: [Int32] = []
    private var time: Int32 = 0

    @inline(__always) private func activate(_ i: Int) {
        guard next[i] == Self.notQueued else { return }
        next[i] = Self.endOfQueue
        if queueTail >= 0 { next[Int(queueTail)] = Int32(i) } else { queueHead = Int32(i) }
        queueTail = Int32(i)
    }

    /// The first active node still in a tree, dequeued; -1 when none is left.
    private func nextActive() -> Int {
        while queueHead >= 0 {
            let i = Int(queueHead)
            let nx = next[i]
            queueHead = nx == Self.endOfQueue ? -1 : nx
            if queueHead < 0 { queueTail = -1 }
            next[i] = Self.notQueued
            if parent[i] != none { return i }
        }
        return -1
    }

    private func run() {
        let n = nodeCount
        for i in 0..<n where tr[i] != 0 {
            tree[i] = tr[i] > 0 ? 1 : 2
            parent[i] = terminal
            ts[i] = 0
            dist[i] = 1
            activate(i)
        }
        let dirs = 2 * rank
        var current = -1
        while true {
            if current >= 0, parent[current] == none { current = -1 }
            if current < 0 {
                current = nextActive()
                if current < 0 { break }
            }
            let i = current
            // Grow: look for an edge that joins the two trees.
            var meetFrom = -1, meetTo = -1, meetEdge = -1
            if tree[i] == 1 {
                for d in 0..<dirs {
                    let j = neighbour(i, d)
                    guard j >= 0, res[edge(i, d)] > 0 else { continue }
                    let e = edge(i, d)
                    if tree[j] == 0 {
                        tree[j] = 1
                        parent[j] = UInt8(d ^ 1)
                        ts[j] = ts[i]
                        dist[j] = dist[i] + 1
                        activate(j)
                    } else if tree[j] == 2 {
                        meetFrom = i
                        meetTo = j
                        meetEdge = e
                        break
                    } else if ts[j] <= ts[i] && dist[j] > dist[i] {
                        parent[j] = UInt8(d ^ 1)
                        ts[j] = ts[i]
                        dist[j] = dist[i] + 1
                    }
                }
            } else {
                for d in 0..<dirs {
                    let j = neighbour(i, d)
                    guard j >= 0, res[reverse(i, d)] > 0 else { continue }
                    let e = reverse(i, d)
                    if tree[j] == 0 {
                        tree[j] = 2
                        parent[j] = UInt8(d ^ 1)
                        ts[j] = ts[i]
                        dist[j] = dist[i] + 1
                        activate(j)
                    } else if tree[j] == 1 {
                        meetFrom = j
                        meetTo = i
                        meetEdge = e
                        break
                    } else if ts[j] <= ts[i] && dist[j] > dist[i] {
                        parent[j] = UInt8(d ^ 1)
                        ts[j] = ts[i]
                        dist[j] = dist[i] + 1
                    }
                }
            }
            time &+= 1
            if meetEdge < 0 {
                current = -1
                continue
            }
            // `i` may still grow after this path is saturated, so it keeps the turn.
            augment(from: meetFrom, to: meetTo, edge: meetEdge)
            adoptOrphans()
        }
    }

    private func augment(from a: Int, to b: Int, edge middle: Int) {
        var f = res[middle]
        var u = a
        while true {
            let p = parent[u]
            if p == terminal { f = min(f, tr[u]); break }
            let d = Int(p)
            f = min(f, res[reverse(u, d)])
            u += offsets[d]
        }
        u = b
        while true {
            let p = parent[u]
            if p == terminal { f = min(f, -tr[u]); break }
            let d = Int(p)
            f = min(f, res[edge(u, d)])
            u += offsets[d]
        }
        res[middle] -= f
        res[partner(middle)] += f
        u = a
        while true {
            let p = parent[u]
            if p == terminal {
                tr[u] -= f
                if tr[u] <= 0 { tr[u] = 0; makeOrphan(u) }
                break
            }
            let d = Int(p)
            let r = reverse(u, d), e = edge(u, d)
            res[r] -= f
            res[e] += f
            let v = u + offsets[d]
            if res[r] <= 0 { res[r] = 0; makeOrphan(u) }
            u = v
        }
        u = b
        while true {
            let p = parent[u]
            if p == terminal {
                tr[u] += f
                if tr[u] >= 0 { tr[u] = 0; makeOrphan(u) }
                break
            }
            let d = Int(p)
            let e = edge(u, d), r = reverse(u, d)
            res[e] -= f
            res[r] += f
            let v = u + offsets[d]
            if res[e] <= 0 { res[e] = 0; makeOrphan(u) }
            u = v
        }
        flowValue += Double(f)
    }

    /// The opposite-direction residual of the same grid edge: `(2a)·n + i` <-> `(2a+1)·n + i`.
    @inline(__always) private func partner(_ e: Int) -> Int {
        let block = e / nodeCount, i = e - block * nodeCount
        return (block ^ 1) * nodeCount + i
    }

    @inline(__always) private func makeOrphan(_ u: Int) {
        parent[u] = orphan
        orphans.append(Int32(u))
    }

    private func adoptOrphans() {
        let dirs = 2 * rank
        var k = 0
        while k < orphans.count {
            let i = Int(orphans[k])
            k += 1
            let t = tree[i]
            let isSource = t == 1
            var bestDir = -1
            var bestDist = Int32.max
            for d in 0..<dirs {
                // A parent must be able to push flow to `i` (source tree) or take it from `i` (sink tree).
                let j = neighbour(i, d)
                guard j >= 0 else { continue }
                let cap = isSource ? res[reverse(i, d)] : res[edge(i, d)]
                guard cap > 0, tree[j] == t, parent[j] != none else { continue }
                // Walk to the root to check that `j` is still connected to the terminal.
                var u = j, steps: Int32 = 0, valid = false
                while true {
                    if ts[u] == time { steps += dist[u]; valid = true; break }
                    let p = parent[u]
                    steps += 1
                    if p == terminal { ts[u] = time; dist[u] = 1; valid = true; break }
                    if p == orphan || p == none { break }
                    u += offsets[Int(p)]
                }
                guard valid else { continue }
                if steps < bestDist { bestDist = steps; bestDir = d }
                // Stamp the path so later walks stop early.
                u = j
                var s = steps
                while ts[u] != time {
                    ts[u] = time
                    dist[u] = s
                    s -= 1
                    u += offsets[Int(parent[u])]
                }
            }
            if bestDir >= 0 {
                parent[i] = UInt8(bestDir)
                ts[i] = time
                dist[i] = bestDist + 1
                continue
            }
            // No parent: `i` becomes free; its children are orphaned and its neighbours that could reach it
            // become active again.
            for d in 0..<dirs {
                let j = neighbour(i, d)
                guard j >= 0, tree[j] == t else { continue }
                let p = parent[j]
                if p == none { continue }
                let cap = isSource ? res[reverse(i, d)] : res[edge(i, d)]
                if cap > 0 { activate(j) }
                if p != terminal && p != orphan && j + offsets[Int(p)] == i {
                    makeOrphan(j)
                }
            }
            tree[i] = 0
            parent[i] = none
        }
        orphans.removeAll(keepingCapacity: true)
    }
}
