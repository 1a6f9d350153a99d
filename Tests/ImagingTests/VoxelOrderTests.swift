import Testing
@testable import Imaging

/// The tiled C-to-Fortran reordering of the writers must match the definition for every element size and for
/// shapes whose z extent is not a multiple of the tile.
@Test(.tags(.unit), arguments: [[7, 5, 131], [3, 4, 9], [6, 5]])
func toFortranOrder_matchesDefinition(spatial: [Int]) {
    let nx = spatial[0], ny = spatial[1], nz = spatial.count > 2 ? spatial[2] : 1
    let channels = 2
    let n = channels * nx * ny * nz
    func expected<T>(_ a: [T]) -> [T] {
        var out = a
        for c in 0..<channels {
            for x in 0..<nx {
                for y in 0..<ny {
                    for z in 0..<nz { out[((c * nz + z) * ny + y) * nx + x] = a[((c * nx + x) * ny + y) * nz + z] }
                }
            }
        }
        return out
    }
    let bytes = (0..<n).map { UInt8(truncatingIfNeeded: $0 * 7) }
    let shorts = (0..<n).map { Int16(truncatingIfNeeded: $0 * 3 - 500) }
    let doubles = (0..<n).map { Double($0) * 0.5 }
    #expect(VoxelWriter.toFortranOrder(bytes, spatial: spatial, channels: channels) == expected(bytes))
    #expect(VoxelWriter.toFortranOrder(shorts, spatial: spatial, channels: channels) == expected(shorts))
    #expect(VoxelWriter.toFortranOrder(doubles, spatial: spatial, channels: channels) == expected(doubles))
}
