import Testing
@testable import Imaging

/// The in-place intensity transforms (`apply(&volume)`) must give exactly what element-wise reference formulas give,
/// convert non-Float storage, and never write through to another volume sharing the same buffer.
@Suite(.tags(.unit)) struct InPlaceIntensityTests {
    /// Large enough to be split into parallel chunks, with values beyond the clipping window on both sides.
    static func ct(_ shape: [Int] = [70, 60, 50]) -> Volume {
        var rng = SeededGenerator(seed: 7)
        return volume(shape) { _ in Float(Int.random(in: -1024...2000, using: &rng)) }
    }

    @Test func scaleIntensityRange_inPlace_matchesReferenceAndLeavesSharedInputUntouched() {
        let original = Self.ct()
        let before = original.floats
        var v = original
        ScaleIntensityRange(aMin: -57, aMax: 164, bMin: 0, bMax: 1, clip: true).apply(&v)
        let expected = before.map { x -> Float in min(max((x - -57) / 221 * 1 + 0, 0), 1) }
        #expect(v.floats == expected)
        #expect(original.floats == before, "the in-place transform wrote into a buffer another volume shares")
    }

    @Test func scaleIntensityRange_emptyInputRange_onlyShifts() {
        var v = volume([3, 1, 1]) { Float($0) }
        ScaleIntensityRange(aMin: 2, aMax: 2, bMin: 10, bMax: 20, clip: true).apply(&v)
        #expect(v.floats == [8, 9, 10])
    }

    @Test func scaleIntensity_inPlace_matchesReferenceAndLeavesSharedInputUntouched() {
        let original = Self.ct()
        let before = original.floats
        var v = original
        ScaleIntensity(minv: -1, maxv: 1).apply(&v)
        let lo = before.min() ?? 0, hi = before.max() ?? 0
        #expect(v.floats == before.map { ($0 - lo) / (hi - lo) * 2 + -1 })
        #expect(original.floats == before)
    }

    @Test func scaleIntensity_channelWiseAndFactor_inPlace() {
        var two = volume([40, 40, 40], channels: 2) { i in i < 64000 ? Float(i) : Float(3 * i) }
        ScaleIntensity(channelWise: true).apply(&two)
        let f = two.floats
        #expect(f[0] == 0 && f[63999] == 1 && f[64000] == 0 && f[127999] == 1)
        var m = volume([4, 1, 1]) { Float($0) }
        ScaleIntensity(factor: 0.5).apply(&m)
        #expect(m.floats == [0, 1.5, 3, 4.5])
    }

    @Test func intensity_inPlace_convertsIntegerStorageToFloat() {
        var v = Volume(spatialShape: [4, 1, 1], data: .int16([-100, -57, 164, 300]), affine: .identity)
        ScaleIntensityRange(aMin: -57, aMax: 164, bMin: 0, bMax: 1, clip: true).apply(&v)
        #expect(v.data.type == .float32)
        #expect(v.floats == [0, 0, 1, 1])
    }
}
