import Testing
@testable import Imaging

/// The byte-label fast path of `KeepLargestConnectedComponent` must give exactly what the general path gives.
@Test(.tags(.unit), arguments: [(nil, 1, [20, 18, 15]), (1, 1, [20, 18, 15]), (2, 2, [16, 17, 9]), (nil, 3, [30, 28]),
                  (1, 40, [20, 18, 15]), (1, 25, [31, 29])])
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

/// A trained network's output: a few solid blobs per label. Only the largest of each label stays; between two
/// blobs of equal size the one whose first voxel comes first in C order wins, as in the flood-fill path.
@Test(.tags(.unit)) func keepLargest_blobs_keepsLargestPerLabelAndEarlierOnTies() throws {
    let shape = [24, 20, 16]
    var labels = [UInt8](repeating: 0, count: shape.reduce(1, *))
    func fill(_ value: UInt8, _ x: Range<Int>, _ y: Range<Int>, _ z: Range<Int>) {
        for i in x { for j in y { for k in z { labels[(i * shape[1] + j) * shape[2] + k] = value } } }
    }
    fill(1, 0..<4, 0..<4, 0..<4)      // 64 voxels
    fill(1, 10..<16, 10..<16, 2..<8)  // 216 voxels: the largest label-1 blob
    fill(2, 0..<3, 10..<13, 10..<13)  // 27 voxels, earlier in C order
    fill(2, 20..<23, 0..<3, 0..<3)    // 27 voxels, later: dropped on the tie
    let v = Volume(spatialShape: shape, data: .uint8(labels), affine: .identity)
    let out = try KeepLargestConnectedComponent()(v)
    let general = try KeepLargestConnectedComponent()(Volume(spatialShape: shape, data: .float32(labels.map { Float($0) }), affine: .identity))
    #expect(out.floats == general.floats)
    let f = out.floats
    #expect(f.filter { $0 == 1 }.count == 216)
    #expect(f.filter { $0 == 2 }.count == 27)
    #expect(f[(0 * shape[1] + 10) * shape[2] + 10] == 2)
    #expect(f[(20 * shape[1] + 0) * shape[2] + 0] == 0)
}
