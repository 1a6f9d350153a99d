import Testing
@testable import Imaging

/// The byte-label fast path of `KeepLargestConnectedComponent` must give exactly what the general path gives.
@Test(arguments: [(nil, 1, [20, 18, 15]), (1, 1, [20, 18, 15]), (2, 2, [16, 17, 9]), (nil, 3, [30, 28])])
func keepLargest_byteFastPath_matchesGeneralPath(connectivity: Int?, components: Int, shape: [Int]) throws {
    var rng = SeededGenerator(seed: 42)
    let n = shape.reduce(1, *)
    let labels = (0..<n).map { _ -> UInt8 in
        let r = Double.random(in: 0..<1, using: &rng)
        return r < 0.55 ? 0 : (r < 0.85 ? 1 : 3)
    }
    let affine = Affine.identity
    let bytes = Volume(spatialShape: shape, data: .uint8(labels), affine: affine)
    let floats = Volume(spatialShape: shape, data: .float32(labels.map { Float($0) }), affine: affine)
    let t = KeepLargestConnectedComponent(connectivity: connectivity, numComponents: components)
    let fast = try t(bytes)
    let general = try t(floats)
    #expect(fast.data.type == .uint8)
    #expect(fast.floats == general.floats, "the fast and general paths differ on \(zip(fast.floats, general.floats).filter { $0 != $1 }.count) voxels")
    #expect(zip(fast.floats, bytes.floats).contains { $0 != $1 }, "random noise has more than \(components) components per label")
}
