import Foundation
import Imaging
import Testing
@testable import MONAILabel
@testable import MONAILabelCore

// MARK: Guidance transforms (inference)

/// MONAI's erf kernel entries for sigma 1: `0.5 * (erf((x + 0.5) / sqrt 2) - erf((x - 0.5) / sqrt 2))`.
private let k0 = erf(0.5 / 2.0.squareRoot())
private let k1 = 0.5 * (erf(1.5 / 2.0.squareRoot()) - erf(0.5 / 2.0.squareRoot()))

@Test(.tags(.unit)) func guidanceSignal_oneClickSigma1_isTheNormalisedProductOfErfKernels() throws {
    let s = AddGuidanceSignalDeepEdit(sigma: 1).signal([[1, 1, 1]], shape: [3, 3, 3])
    // In a 3^3 grid every voxel is within the kernel: value = product of one k per axis, then min-max scaled
    // with the corner (k1^3) as minimum and the centre (k0^3) as maximum.
    func expected(_ faceSteps: Int) -> Double {
        (pow(k0, Double(3 - faceSteps)) * pow(k1, Double(faceSteps)) - pow(k1, 3)) / (pow(k0, 3) - pow(k1, 3))
    }
    #expect(abs(Double(s[13]) - 1) < 1e-6)
    #expect(abs(Double(s[0])) < 1e-6)
    #expect(abs(Double(s[4]) - expected(1)) < 1e-5, "face neighbour \(s[4])")
    #expect(abs(Double(s[1]) - expected(2)) < 1e-5, "edge neighbour \(s[1])")
}

@Test(.tags(.unit)) func guidanceSignal_kernelSigma3_has25TapsSummingToOne() {
    let k = AddGuidanceSignalDeepEdit.kernel(sigma: 3)
    #expect(k.count == 25)
    #expect(k == Array(k.reversed()))
    #expect(abs(k.reduce(0, +) - 1) < 1e-4)
}

@Test(.tags(.unit)) func guidanceSignal_farFromTheClick_isZero_andNegativeClicksAreIgnored() {
    let g = AddGuidanceSignalDeepEdit(sigma: 1)
    let s = g.signal([[0, 0, 0], [-1, -1, -1]], shape: [12, 12, 12])
    #expect(s[0] == 1)
    #expect(s[(11 * 12 + 11) * 12 + 11] == 0, "beyond 4 sigma the signal is exactly 0")
    #expect(g.signal([[-1, 3, 3]], shape: [4, 4, 4]).allSatisfy { $0 == 0 })
    #expect(g.signal([], shape: [4, 4, 4]).allSatisfy { $0 == 0 })
    // Out-of-range clicks are clamped onto the edge voxel, as upstream does.
    let clamped = g.signal([[40, 2, 2]], shape: [4, 4, 4])
    #expect(clamped[(3 * 4 + 2) * 4 + 2] == 1)
}

@Test(.tags(.unit)) func guidanceSignal_appendsOneChannelPerLabelInOrder() throws {
    let image = Volume(spatialShape: [4, 4, 4], data: .float32((0..<64).map(Float.init)), affine: .identity)
    let out = try AddGuidanceSignalDeepEdit(sigma: 1)(image, guidance: [
        LabelGuidance(label: "a", points: []), LabelGuidance(label: "b", points: [[1, 2, 3]]),
        LabelGuidance(label: "background", points: []),
    ])
    #expect(out.channels == 4)
    let x = out.floats
    #expect(Array(x[0..<64]) == (0..<64).map(Float.init), "the intensity channel is kept")
    #expect(x[64..<128].allSatisfy { $0 == 0 })
    #expect(x[128 + (1 * 4 + 2) * 4 + 3] == 1)
    #expect(x[192..<256].allSatisfy { $0 == 0 })
}

@Test(.tags(.unit)) func resizeGuidance_scalesPerAxisAndTruncates() {
    let g = DeepEditGuidance.resize([LabelGuidance(label: "a", points: [[3, 5, 7], [0, 0, 0]])],
                                    from: [4, 6, 8], to: [128, 128, 128])
    // 3 * 32 = 96; 5 * 21.33 = 106.7 -> 106; 7 * 16 = 112.
    #expect(g[0].points == [[96, 106, 112], [0, 0, 0]])
}

@Test(.tags(.unit)) func reorient_clicksOnAnLPSImage_followOrientationToRAS() throws {
    let affine = Affine([-2, 0, 0, 10, 0, -2, 0, 20, 0, 0, 3, 30, 0, 0, 0, 1])
    let v = Volume(spatialShape: [4, 5, 6], data: .float32([Float](repeating: 0, count: 120)), affine: affine)
    let ras = try Orientation(axcodes: "RAS")(v)
    let g = try DeepEditGuidance.reorient([LabelGuidance(label: "a", points: [[0, 0, 0], [1, 2, 3]])],
                                          from: affine, to: ras.affine)
    #expect(g[0].points == [[3, 4, 0], [2, 2, 3]])
}

@Test(.tags(.unit)) func clicks_fromParams_oneListPerLabelInMapOrder_malformedRefused() throws {
    let p: JSONObject = ["b": [[1, 2, 3], [4.7, 5, 6]], "label": "b", "a": []]
    let g = try DeepEditGuidance.clicks(from: p, labels: ["a", "b", "background"])
    #expect(g.map(\.label) == ["a", "b", "background"])
    #expect(g[1].points == [[1, 2, 3], [4, 5, 6]])
    #expect(g[0].points.isEmpty && g[2].points.isEmpty)
    #expect(throws: MONAILabelError.self) { try DeepEditGuidance.clicks(from: ["a": "x"], labels: ["a"]) }
    #expect(throws: MONAILabelError.self) { try DeepEditGuidance.clicks(from: ["a": [[1, 2]]], labels: ["a"]) }
}

// MARK: Click simulation (training)

@Test(.tags(.unit)) func deepEditLabels_numberForegroundInMapOrder_backgroundZero() throws {
    let l = try DeepEditLabel.from(["spleen": 1, "liver": 6, "background": 0])
    #expect(l.map(\.index) == [1, 2, 0])
    #expect(DeepEditClickSimulation.normalize([0, 1, 6, 3], labels: l) == [0, 1, 2, 0])
    #expect(throws: MONAILabelError.self) { try DeepEditLabel.from(.array(["spleen"])) }
}

@Test(.tags(.unit)) func chessboardDistance_matchesBruteForceOnRandomMasks() {
    var rng = SeededGenerator(seed: 7)
    let shape = [5, 6, 4]
    for _ in 0..<20 {
        let mask = (0..<120).map { _ in rng.uniform() < 0.7 }
        let d = ChessboardDistance.transform(mask, shape: shape)
        func coords(_ i: Int) -> [Int] { [i / 24, (i / 4) % 6, i % 4] }
        let outside = mask.indices.filter { !mask[$0] }
        for i in mask.indices {
            let want: Int32
            if !mask[i] {
                want = 0
            } else if outside.isEmpty {
                want = -1
            } else {
                let c = coords(i)
                want = Int32(outside.map { o in zip(coords(o), c).map { abs($0 - $1) }.max() ?? 0 }.min() ?? 0)
            }
            #expect(d[i] == want, "voxel \(coords(i))")
        }
    }
}

@Test(.tags(.unit)) func connectedRegions2D_diagonalNeighboursJoin_regionsInRasterOrder() {
    let m: [Bool] = [true, false, false, false,
                     false, true, false, true,
                     false, false, false, true]
    let r = ConnectedRegions2D.label(m, 3, 4)
    #expect(r.count == 2)
    #expect(r.labels == [1, 0, 0, 0, 0, 1, 0, 2, 0, 0, 0, 2])
}

/// A 12^3 normalised label volume with a cube of label 1 at 2...5 and one of label 2 at 7...10.
private func twoCubes() -> [UInt8] {
    var v = [UInt8](repeating: 0, count: 12 * 12 * 12)
    for i in 0..<12 { for j in 0..<12 { for k in 0..<12 {
        if (2...5).contains(i) && (2...5).contains(j) && (2...5).contains(k) { v[(i * 12 + j) * 12 + k] = 1 }
        if (7...10).contains(i) && (7...10).contains(j) && (7...10).contains(k) { v[(i * 12 + j) * 12 + k] = 2 }
    } } }
    return v
}

@Test(.tags(.unit)) func initialSeeds_clickInsideEachLabelOnASliceHoldingIt() throws {
    let labels = try DeepEditLabel.from(["a": 1, "b": 2, "background": 0])
    let sim = DeepEditClickSimulation(labels: labels, shape: [12, 12, 12])
    let v = twoCubes()
    #expect(sim.validSlices(v)["a"] == [2, 3, 4, 5])
    #expect(sim.validSlices(v)["background"] == Array(0..<12))
    var rng = SeededGenerator(seed: 1)
    for _ in 0..<10 {
        let seeds = sim.initialSeeds(v, using: &rng)
        #expect(seeds.map(\.label) == ["a", "b", "background"])
        for (s, l) in zip(seeds, labels) {
            #expect(!s.points.isEmpty)
            for p in s.points { #expect(v[(p[0] * 12 + p[1]) * 12 + p[2]] == UInt8(l.index), "\(l.name) click \(p)") }
        }
        // Each cube is one 2D region of its slice: one click.
        #expect(seeds[0].points.count == 1)
    }
}

@Test(.tags(.unit)) func addRandomGuidance_missedLabel_getsClicksInsideWhatWasMissed() throws {
    let labels = try DeepEditLabel.from(["a": 1, "b": 2, "background": 0])
    let sim = DeepEditClickSimulation(labels: labels, shape: [12, 12, 12])
    let truth = twoCubes()
    // The prediction found b but called a's cube background.
    let pred = truth.map { $0 == 1 ? UInt8(0) : $0 }
    var rng = SeededGenerator(seed: 3)
    for _ in 0..<10 {
        let start = labels.map { LabelGuidance(label: $0.name, points: []) }
        let g = sim.addRandomGuidance(start, label: truth, prediction: pred, probability: 1, using: &rng)
        let a = try #require(g.first { $0.label == "a" })
        // a gets a click for what it missed and one where background wrongly covers > 50 of its voxels.
        #expect(a.points.count == 2)
        for p in a.points { #expect(truth[(p[0] * 12 + p[1]) * 12 + p[2]] == 1) }
        #expect(g.first { $0.label == "b" }?.points.isEmpty == true, "b was predicted right")
    }
    let unchanged = sim.addRandomGuidance([LabelGuidance(label: "a", points: [[1, 1, 1]])], label: truth,
                                          prediction: pred, probability: 0, using: &rng)
    #expect(unchanged == [LabelGuidance(label: "a", points: [[1, 1, 1]])])
}
