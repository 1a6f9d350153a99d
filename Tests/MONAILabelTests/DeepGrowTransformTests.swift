import Foundation
import Testing
import Imaging
@testable import MONAILabel

// Hand-computed cases for the `monai.apps.deepgrow` transforms as the DeepGrow tasks chain them.

@Test(.tags(.unit)) func guidanceFromPoints_3D_rollsToDepthFirstAndTruncatesTheScaledClick() throws {
    // Loaded [i, j, k] = [10, 20, 5]; after in-plane spacing the depth-first array is [5, 15, 30].
    let (g, slice) = try DeepGrow.guidanceFromPoints(
        foreground: [[3, 4, 2]], background: [[9, 19, 4]], originalShape: [10, 20, 5], currentShape: [5, 15, 30],
        dimension: 3, slice: nil)
    #expect(slice == nil)
    // [3, 4, 2] -> [2, 3, 4] * [1, 1.5, 1.5] = [2, 4.5, 6] -> [2, 4, 6].
    #expect(g.positive == [[2, 4, 6]])
    // [9, 19, 4] -> [4, 9, 19] * [1, 1.5, 1.5] = [4, 13.5, 28.5] -> [4, 13, 28].
    #expect(g.negative == [[4, 13, 28]])
}

@Test(.tags(.unit)) func guidanceFromPoints_2D_keepsTheClicksOfOneSlice() throws {
    let fg = [[1, 1, 3], [2, 2, 1]], bg = [[4, 4, 3]]
    let (lowest, s0) = try DeepGrow.guidanceFromPoints(
        foreground: fg, background: bg, originalShape: [10, 10, 5], currentShape: [5, 20, 20], dimension: 2, slice: nil)
    #expect(s0 == 1)
    #expect(lowest == Guidance(positive: [[4, 4]], negative: []))
    let (third, s1) = try DeepGrow.guidanceFromPoints(
        foreground: fg, background: bg, originalShape: [10, 10, 5], currentShape: [5, 20, 20], dimension: 2, slice: 3)
    #expect(s1 == 3)
    #expect(third == Guidance(positive: [[2, 2]], negative: [[8, 8]]))
    #expect(throws: MONAILabelError.self) {
        try DeepGrow.guidanceFromPoints(foreground: fg, background: bg, originalShape: [10, 10, 5],
                                        currentShape: [5, 20, 20], dimension: 2, slice: 4)
    }
}

@Test(.tags(.unit)) func guidanceFromPoints_noClicksOrOutsideClick_isInvalidInput() {
    for (fg, bg) in [([[Int]](), [[Int]]()), ([[10, 0, 0]], []), ([], [[0, 0]])] {
        let e = #expect(throws: MONAILabelError.self, "\(fg) \(bg)") {
            try DeepGrow.guidanceFromPoints(foreground: fg, background: bg, originalShape: [10, 10, 5],
                                            currentShape: [5, 10, 10], dimension: 3, slice: nil)
        }
        #expect(e?.kind == .invalidInput)
    }
}

@Test(.tags(.unit)) func guidanceCropBox_smallBox3D_centresTheMinimalSizeAndReadsTwoValuesAsDepthPlusPlane() {
    // Box around [5, 50, 50] with margin 20: [0, 30, 30] ..< [10, 71, 71], smaller than [100, 64, 64], so a
    // [100, 64, 64] box centred at [100 / 2, 50, 50] is cropped and clipped to the array.
    let g = Guidance(positive: [[5, 50, 50]], negative: [])
    let box = DeepGrow.guidanceCropBox(g, shape: [10, 100, 100], spatialSize: [64, 64])
    #expect(box == SpatialBox(start: [0, 18, 18], end: [10, 82, 82]))
}

@Test(.tags(.unit)) func guidanceCropBox_boxLargerThanMinimal_cropsTheClickBox() {
    let g = Guidance(positive: [[10, 10]], negative: [[60, 75]])
    let box = DeepGrow.guidanceCropBox(g, shape: [100, 90], spatialSize: [32, 32])
    #expect(box == SpatialBox(start: [0, 0], end: [81, 90]))
}

@Test(.tags(.unit)) func cropAndResizeGuidance_shiftsThenScalesAndTruncates() {
    let g = Guidance(positive: [[5, 50, 50]], negative: [[9, 19, 81]])
    let box = SpatialBox(start: [0, 18, 18], end: [10, 82, 82])
    let r = DeepGrow.cropAndResizeGuidance(g, box: box, resizedShape: [5, 32, 32])
    #expect(r.positive == [[2, 16, 16]])
    #expect(r.negative == [[4, 0, 31]])
}

@Test(.tags(.unit)) func guidanceSignal_isMONAIsErfGaussianMinMaxNormalised() {
    // One click on a [1, 40] grid: the signal along the row is MONAI's erf kernel relative to its centre tap
    // (zero beyond the 8-voxel tail), since the normalisation's minimum is 0 far from the click.
    let s = DeepGrow.guidanceSignal(Guidance(positive: [[0, 20]], negative: []), shape: [1, 40])
    #expect(s.count == 80)
    let t = 0.70710678 / 2.0
    func tap(_ d: Double) -> Double { 0.5 * (erf(t * (d + 0.5)) - erf(t * (d - 0.5))) }
    #expect(s[20] == 1)
    for d in 1...8 { #expect(abs(Double(s[20 + d]) - tap(Double(d)) / tap(0)) < 1e-5, "offset \(d)") }
    #expect(s[20 + 9] == 0 && s[20 - 9] == 0)
    #expect(s[40..<80].allSatisfy { $0 == 0 }, "no negative clicks: an all-zero channel")
}

@Test(.tags(.unit)) func guidanceSignal_skipsNegativeCoordinatesAndClampsLargeOnes() {
    let s = DeepGrow.guidanceSignal(Guidance(positive: [[-1, 3]], negative: [[2, 99]]), shape: [3, 5])
    #expect(s[0..<15].allSatisfy { $0 == 0 })
    #expect(s[15 + 2 * 5 + 4] == 1, "the negative click clamps to the last column")
}

@Test(.tags(.unit)) func restoreLabel_3D_undoesResizeCropAndInPlaneSpacingBackToIJK() throws {
    // Loaded [i, j, k] = [4, 4, 2]; depth-first after spacing [2, 8, 8]; crop [0, 2, 2] ..< [2, 6, 6]; model [2, 2, 2].
    var pred = [Float](repeating: 0, count: 8)
    pred[0] = 1
    let out = try DeepGrow.restoreLabel(pred, modelShape: [2, 2, 2], box: SpatialBox(start: [0, 2, 2], end: [2, 6, 6]),
                                        preCropShape: [2, 8, 8], originalShape: [4, 4, 2], slice: nil)
    // Model voxel 0 -> crop [0, 0..1, 0..1] -> [0, 2..3, 2..3] -> nearest to [2, 4, 4]: [0, 1, 1] -> (i, j, k) = (1, 1, 0).
    var expected = [UInt8](repeating: 0, count: 32)
    expected[(1 * 4 + 1) * 2 + 0] = 1
    #expect(out == expected)
}

@Test(.tags(.unit)) func restoreLabel_2D_fillsOnlyTheClickedSlice() throws {
    let out = try DeepGrow.restoreLabel([1, 0, 0, 0], modelShape: [2, 2], box: SpatialBox(start: [2, 2], end: [6, 6]),
                                        preCropShape: [8, 8], originalShape: [4, 4, 3], slice: 1)
    var expected = [UInt8](repeating: 0, count: 48)
    expected[(1 * 4 + 1) * 3 + 1] = 1
    #expect(out == expected)
}

@Test(.tags(.unit)) func depthFirst_movesTheLastAxisFirst() {
    // [2, 1, 3] (i, j, k) -> [3, 2, 1] (k, i, j).
    #expect(DeepGrow.depthFirst([0, 1, 2, 10, 11, 12], shape: [2, 1, 3]) == [0, 10, 1, 11, 2, 12])
}

@Test(.tags(.unit)) func chessboardDistance_countsRingsAndTreatsTheOutsideAsForeground() {
    var mask = [Float](repeating: 0, count: 25)
    for y in 1...3 { for x in 1...3 { mask[y * 5 + x] = 1 } }
    let d = DeepGrow.chessboardDistance(mask, shape: [5, 5])
    #expect(d[12] == 2)
    #expect(d[6] == 1 && d[8] == 1 && d[16] == 1)
    #expect(d[0] == 0)
    // A row of foreground touching the array border only at its ends still measures from the zeros inside.
    let row = DeepGrow.chessboardDistance([1, 1, 1, 0, 1], shape: [1, 5])
    #expect(row == [3, 2, 1, 0, 1])
}

@Test(.tags(.unit)) func connectedRegions8_joinsDiagonalsAndNumbersInRasterOrder() {
    let m: [Float] = [0, 0, 1,
                      1, 1, 0,
                      0, 0, 0,
                      1, 0, 1]
    let (labels, count) = DeepGrow.connectedRegions8(m, shape: [4, 3])
    #expect(count == 3)
    #expect(labels == [0, 0, 1, 1, 1, 0, 0, 0, 0, 2, 0, 3])
}

@Test(.tags(.unit)) func initialSeedPoints_oneClickInsideEachRegionOfAValidSlice() throws {
    // 3D [3, 6, 6]: slice 1 holds two separate squares; slices 0 and 2 are empty.
    var label = [Float](repeating: 0, count: 108)
    for y in 0..<2 { for x in 0..<2 { label[36 + y * 6 + x] = 1 } }
    for y in 3..<6 { for x in 3..<6 { label[36 + y * 6 + x] = 1 } }
    let valid = DeepGrow.validSlices(label, shape: [3, 6, 6])
    #expect(valid == [1])
    var rng = SeededGenerator(seed: 3)
    for _ in 0..<20 {
        let g = try DeepGrow.initialSeedPoints(label: label, shape: [3, 6, 6], validSlices: valid, using: &rng)
        #expect(g.negative.isEmpty)
        #expect(g.positive.count == 2)
        for p in g.positive { #expect(p[0] == 1 && label[(p[0] * 6 + p[1]) * 6 + p[2]] == 1, "\(p)") }
        // The 3x3 square's centre is the only voxel at distance 2: weight e^2 - 1 against e - 1 for the others.
        #expect(g.positive.contains { $0[1] < 2 } && g.positive.contains { $0[1] >= 3 })
    }
    #expect(throws: MONAILabelError.self) {
        try DeepGrow.initialSeedPoints(label: [Float](repeating: 0, count: 108), shape: [3, 6, 6], validSlices: [],
                                       using: &rng)
    }
}

@Test(.tags(.unit)) func addRandomGuidance_clicksTheLargerDiscrepancyOrNothing() {
    let label: [Float] = [1, 1, 1, 1, 0, 0, 0, 0]
    let probs: [Float] = [0.9, 0.1, 0.2, 0.3, 0.8, 0, 0, 0]
    let (missed, extra) = DeepGrow.discrepancy(label: label, probability: probs)
    #expect(missed == [0, 1, 1, 1, 0, 0, 0, 0])
    #expect(extra == [0, 0, 0, 0, 1, 0, 0, 0])
    var rng = SeededGenerator(seed: 1)
    var g = Guidance(positive: [], negative: [])
    DeepGrow.addRandomGuidance(&g, missed: missed, extra: extra, shape: [2, 4], probability: 1, using: &rng)
    #expect(g.negative.isEmpty && g.positive.count == 1)
    if let p = g.positive.first { #expect(missed[p[0] * 4 + p[1]] == 1) }
    DeepGrow.addRandomGuidance(&g, missed: missed, extra: extra, shape: [2, 4], probability: 0, using: &rng)
    #expect(g.positive.count == 1)
    var onlyExtra = Guidance(positive: [], negative: [])
    DeepGrow.addRandomGuidance(&onlyExtra, missed: [Float](repeating: 0, count: 8), extra: extra, shape: [2, 4],
                               probability: 1, using: &rng)
    #expect(onlyExtra.negative == [[1, 0]])
}

@Test(.tags(.unit)) func foregroundCropBox_centresTheRoiOnASmallObjectAndClips() {
    var label = [Float](repeating: 0, count: 400)
    for y in 5...6 { for x in 5...6 { label[y * 20 + x] = 1 } }
    #expect(DeepGrow.foregroundCropBox(label, shape: [20, 20], spatialSize: [8, 8])
        == SpatialBox(start: [2, 2], end: [10, 10]))
    #expect(DeepGrow.foregroundCropBox(label, shape: [20, 20], spatialSize: [30, 30])
        == SpatialBox(start: [0, 0], end: [20, 20]))
    // An object at least as large as the roi on some axis: its own bounding box.
    #expect(DeepGrow.foregroundCropBox(label, shape: [20, 20], spatialSize: [8, 2])
        == SpatialBox(start: [5, 5], end: [7, 7]))
}
