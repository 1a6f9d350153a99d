import Testing
@testable import Imaging

/// `Restored` keeps byte predictions as bytes on an axis-aligned map; the values must be exactly those of the
/// general (Float) resampler, for flips, zooms, 2D, and several channels; a rotated map takes the general path.
@Suite(.tags(.unit)) struct RestoredBytesTests {
    static func labels(_ shape: [Int], channels: Int = 1, affine: Affine) -> Volume {
        var rng = SeededGenerator(seed: 11)
        let n = channels * shape.reduce(1, *)
        return Volume(
            spatialShape: shape, channels: channels, data: .uint8((0..<n).map { _ in UInt8.random(in: 0...3, using: &rng) }),
            affine: affine)
    }

    @Test(arguments: [
        ([9, 7, 6], [11, 5, 13], Affine([-0.8, 0, 0, 40, 0, -0.9, 0, 30, 0, 0, 2.5, -60, 0, 0, 0, 1])),
        ([9, 7], [4, 15], Affine([1.3, 0, 0, 2, 0, -0.7, 0, 5, 0, 0, 1, 0, 0, 0, 0, 1])),
    ])
    func restored_bytePrediction_staysBytesAndMatchesFloatPath(predShape: [Int], refShape: [Int], refAffine: Affine) throws {
        let pred = Self.labels(predShape, channels: 2, affine: .identity)
        let reference = Grid(spatialShape: refShape, affine: refAffine)
        let bytes = try Restored(reference: reference)(pred)
        let general = try SpatialResample.resample(pred, to: reference, mode: .nearest, padding: .border)
        #expect(bytes.data.type == .uint8)
        #expect(bytes.spatialShape == refShape && bytes.channels == 2 && bytes.affine == refAffine)
        #expect(bytes.floats == general.floats)
    }

    @Test func resampleNearestBytes_rotatedMap_defersToGeneralPath() throws {
        let pred = Self.labels([5, 5, 5], affine: .identity)
        let rotated = Grid(spatialShape: [5, 5, 5], affine: Affine([0, -1, 0, 4, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]))
        let tilted = Grid(spatialShape: [5, 5, 5], affine: Affine([0.9, -0.3, 0, 1, 0.3, 0.9, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]))
        #expect(try SpatialResample.resampleNearestBytes(pred, to: rotated) == nil)
        #expect(try SpatialResample.resampleNearestBytes(pred, to: tilted) == nil)
        let r = try Restored(reference: tilted)(pred)
        let general = try SpatialResample.resample(pred, to: tilted, mode: .nearest, padding: .border)
        #expect(r.floats == general.floats)
    }
}
