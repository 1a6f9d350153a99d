import Foundation
import Testing
import TestSupport
@testable import MONAILabel

/// A random grid problem: terminal capacities and one n-link weight array per axis.
private struct GridProblem {
    var shape: [Int]
    var source: [Float]
    var sink: [Float]
    var weights: [[Float]]

    init(shape: [Int], seed: UInt64, integral: Bool) {
        var rng = SplitMix(seed: seed)
        let n = shape.reduce(1, *)
        func value(_ scale: Float) -> Float {
            // A third of the capacities are zero, so free nodes and ties are exercised.
            if Int.random(in: 0..<3, using: &rng) == 0 { return 0 }
            return integral ? Float(Int.random(in: 1...9, using: &rng)) : Float.random(in: 0.01...scale, using: &rng)
        }
        self.shape = shape
        source = (0..<n).map { _ in value(5) }
        sink = (0..<n).map { _ in value(5) }
        weights = shape.indices.map { _ in (0..<n).map { _ in value(3) } }
    }

    var strides: [Int] {
        var s = Array(repeating: 1, count: shape.count)
        for a in stride(from: shape.count - 2, through: 0, by: -1) { s[a] = s[a + 1] * shape[a + 1] }
        return s
    }

    /// The cost of a cut where `side[i]` is true for source-side nodes.
    func cost(_ side: [Bool]) -> Double {
        var c = 0.0
        let st = strides
        for i in side.indices {
            c += side[i] ? Double(sink[i]) : Double(source[i])
            for a in shape.indices where (i / st[a]) % shape[a] < shape[a] - 1 {
                if side[i] != side[i + st[a]] { c += Double(weights[a][i]) }
            }
        }
        return c
    }

    func bruteForceMinimum() -> Double {
        let n = source.count
        var best = Double.infinity
        for mask in 0..<(1 << n) {
            best = min(best, cost((0..<n).map { mask & (1 << $0) != 0 }))
        }
        return best
    }

    func solve() throws -> (flow: Double, side: [Bool]) {
        let g = try GridMaxFlow(shape: shape)
        try g.addTerminalCapacities(source: source, sink: sink)
        for a in shape.indices { try g.setNeighbourCapacities(axis: a, weights: weights[a]) }
        let f = g.solve()
        return (f, g.sourceSide())
    }
}

@Test(.tags(.unit), arguments: [[3, 4], [2, 6], [2, 2, 3], [3, 2, 2], [1, 3, 4], [4, 3]])
func maxFlow_randomGrids_matchBruteForceMinCut(shape: [Int]) throws {
    for seed in UInt64(1)...40 {
        let p = GridProblem(shape: shape, seed: seed &* 7919 &+ UInt64(shape.reduce(0, +)), integral: seed % 2 == 0)
        let expected = p.bruteForceMinimum()
        let (flow, side) = try p.solve()
        let tolerance = 1e-4 * max(1, expected)
        #expect(abs(flow - expected) <= tolerance, "shape \(shape) seed \(seed): flow \(flow), min cut \(expected)")
        #expect(abs(p.cost(side) - expected) <= tolerance, "shape \(shape) seed \(seed): the returned cut is not minimal")
    }
}

@Test(.tags(.unit)) func maxFlow_hardConstraints_areRespected() throws {
    let shape = [6, 7, 5]
    for seed in UInt64(1)...10 {
        var p = GridProblem(shape: shape, seed: seed, integral: false)
        var rng = SplitMix(seed: seed ^ 0xABCD)
        var forced: [Int: Bool] = [:]
        for _ in 0..<20 {
            let i = Int.random(in: 0..<p.source.count, using: &rng)
            let fg = Bool.random(using: &rng)
            forced[i] = fg
            p.source[i] = fg ? 1e6 : 0
            p.sink[i] = fg ? 0 : 1e6
        }
        let (_, side) = try p.solve()
        for (i, fg) in forced { #expect(side[i] == fg, "seed \(seed): node \(i) should be on the \(fg ? "source" : "sink") side") }
    }
}

@Test(.tags(.unit)) func maxFlow_separableUnaries_cutEachNodeOnItsCheaperSide() throws {
    // Without n-links the optimum labels every node independently.
    let p = GridProblem(shape: [5, 6, 7], seed: 99, integral: false)
    let g = try GridMaxFlow(shape: p.shape)
    try g.addTerminalCapacities(source: p.source, sink: p.sink)
    let flow = g.solve()
    let side = g.sourceSide()
    let expected = zip(p.source, p.sink).reduce(0.0) { $0 + Double(min($1.0, $1.1)) }
    #expect(abs(flow - expected) < 1e-3)
    for i in side.indices where p.source[i] != p.sink[i] { #expect(side[i] == (p.source[i] > p.sink[i])) }
}

@Test(.tags(.unit)) func maxFlow_badInput_isATypedError() throws {
    #expect(throws: MaxFlowError.self) { try GridMaxFlow(shape: [4]) }
    #expect(throws: MaxFlowError.self) { try GridMaxFlow(shape: [0, 3]) }
    let g = try GridMaxFlow(shape: [2, 2])
    #expect(throws: MaxFlowError.self) { try g.addTerminalCapacities(source: [1, 2, 3], sink: [1, 2, 3, 4]) }
    #expect(throws: MaxFlowError.self) { try g.addTerminalCapacities(source: [-1, 0, 0, 0], sink: [0, 0, 0, 0]) }
    #expect(throws: MaxFlowError.self) { try g.setNeighbourCapacities(axis: 2, weights: [1, 1, 1, 1]) }
    #expect(throws: MaxFlowError.self) { try g.setNeighbourCapacities(axis: 0, weights: [1, .nan, 1, 1]) }
}

@Test(.tags(.unit)) func maxFlow_contrastNeighbourCapacities_equalExplicitWeights() throws {
    let shape = [4, 5, 6]
    var rng = SplitMix(seed: 5)
    let n = shape.reduce(1, *)
    let image = (0..<n).map { _ in Float.random(in: 0...1, using: &rng) }
    let p = GridProblem(shape: shape, seed: 11, integral: false)
    let implicit = try GridMaxFlow(shape: shape)
    try implicit.addTerminalCapacities(source: p.source, sink: p.sink)
    try implicit.setContrastNeighbourCapacities(image: image, lamda: 2, sigma: 0.3)
    let explicit = try GridMaxFlow(shape: shape)
    try explicit.addTerminalCapacities(source: p.source, sink: p.sink)
    for (a, s) in [30, 6, 1].enumerated() {
        let w = (0..<n).map { i -> Float in
            guard i + s < n else { return 0 }
            let d = image[i] - image[i + s]
            return 2 * exp(-d * d / (2 * 0.3 * 0.3))
        }
        try explicit.setNeighbourCapacities(axis: a, weights: w)
    }
    #expect(abs(implicit.solve() - explicit.solve()) < 1e-3)
    #expect(implicit.sourceSide() == explicit.sourceSide())
}

@Test(.tags(.unit)) func gridMaxFlow_graphOverTheVoxelLimit_isRefusedBeforeAllocating() {
    // 2^27 nodes of 10 words each reach MONAI_LABEL_MAX_VOXELS' default 2^30.
    #expect { _ = try GridMaxFlow(shape: [1024, 1024, 128]) } throws: {
        ($0 as? MaxFlowError)?.description.contains("MONAI_LABEL_MAX_VOXELS") == true
    }
}
