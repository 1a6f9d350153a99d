import Dispatch
import Foundation

/// Moves voxels between a file's Fortran order (x fastest, then y, z, channels) and our C order
/// `[channels, x, y, z]` (z fastest), streaming through zlib.
enum VoxelReader {
    static func read(file: GzipFile, type: VoxelType, spatial: [Int], channels: Int, swapped: Bool) throws
        -> VoxelData
    {
        switch type {
        case .int8: return .int8(try read(Int8.self, file, spatial, channels, swapped))
        case .uint8: return .uint8(try read(UInt8.self, file, spatial, channels, swapped))
        case .int16: return .int16(try read(Int16.self, file, spatial, channels, swapped))
        case .uint16: return .uint16(try read(UInt16.self, file, spatial, channels, swapped))
        case .int32: return .int32(try read(Int32.self, file, spatial, channels, swapped))
        case .uint32: return .uint32(try read(UInt32.self, file, spatial, channels, swapped))
        case .int64: return .int64(try read(Int64.self, file, spatial, channels, swapped))
        case .float32: return .float32(try read(Float.self, file, spatial, channels, swapped))
        case .float64: return .float64(try read(Double.self, file, spatial, channels, swapped))
        }
    }

    /// Inflates slabs of whole z-slices on the calling thread while a serial queue reorders the previous slab into
    /// the result, so that reading costs about one inflate pass.
    static func read<T>(_: T.Type, _ file: GzipFile, _ spatial: [Int], _ channels: Int, _ swapped: Bool) throws
        -> [T]
    {
        let nx = spatial[0], ny = spatial[1], nz = spatial.count > 2 ? spatial[2] : 1
        let plane = nx * ny
        let total = plane * nz * channels
        let size = MemoryLayout<T>.stride
        // 16 slices per slab: long enough z-runs in the output, small enough (8 MB for 512x512 int16) to stay in
        // L3 between inflate and reorder; 8, 32 and 64 measured slower.
        let k = max(1, min(nz, 16))
        let slots = 3
        let slabs = (0..<slots).map { _ in
            SendablePointer(p: UnsafeMutableRawPointer.allocate(byteCount: k * plane * size, alignment: 64)
                .bindMemory(to: UInt8.self, capacity: k * plane * size))
        }
        defer { for s in slabs { s.p.deallocate() } }
        let free = DispatchSemaphore(value: slots)
        let group = DispatchGroup()
        let queue = DispatchQueue(label: "imaging.nifti.reorder")
        return try [T](unsafeUninitializedCapacity: total) { out, initialized in
            let dst = SendablePointer(p: out.baseAddress!)
            adviseHugePages(UnsafeMutableRawPointer(out.baseAddress!), bytes: total * size)
            defer { group.wait() }
            var slot = 0
            for c in 0..<channels {
                var z0 = 0
                while z0 < nz {
                    let kk = min(k, nz - z0)
                    free.wait()
                    let slab = slabs[slot]
                    slot = (slot + 1) % slots
                    do {
                        try file.readExactly(into: UnsafeMutableRawPointer(slab.p), count: kk * plane * size)
                    } catch {
                        free.signal()
                        throw error
                    }
                    let base = c * plane * nz, zs = z0
                    queue.async(group: group) {
                        let raw = UnsafeMutableRawPointer(slab.p)
                        if swapped { swapBytes(raw, count: kk * plane, size: size) }
                        let src = UnsafeRawPointer(raw)
                        let o = dst.p + base
                        // Per y-row: the slab's [zl][x] block (kk short rows, cache resident) becomes runs of
                        // kk consecutive z values in the output, each at least a cache line.
                        for y in 0..<ny {
                            for x in 0..<nx {
                                let d = o + (x * ny + y) * nz + zs
                                var s = (y * nx + x) * size
                                for zl in 0..<kk {
                                    (d + zl).initialize(to: src.load(fromByteOffset: s, as: T.self))
                                    s += plane * size
                                }
                            }
                        }
                        free.signal()
                    }
                    z0 += kk
                }
            }
            group.wait()
            initialized = total
        }
    }

    /// Asks for transparent huge pages on a large fresh buffer: first-touch page faults of a 150 MB volume
    /// otherwise cost about a tenth of a second. Advisory; failures are harmless.
    static func adviseHugePages(_ p: UnsafeMutableRawPointer, bytes: Int) {
        let huge = 2 << 20
        guard bytes >= 4 * huge else { return }
        let start = (Int(bitPattern: p) + huge - 1) / huge * huge
        let end = (Int(bitPattern: p) + bytes) / huge * huge
        guard end > start, let aligned = UnsafeMutableRawPointer(bitPattern: start) else { return }
        _ = madvise(aligned, end - start, MADV_HUGEPAGE)
    }

    static func swapBytes(_ p: UnsafeMutableRawPointer, count: Int, size: Int) {
        switch size {
        case 2:
            for i in 0..<count {
                p.storeBytes(of: p.load(fromByteOffset: 2 * i, as: UInt16.self).byteSwapped, toByteOffset: 2 * i, as: UInt16.self)
            }
        case 4:
            for i in 0..<count {
                p.storeBytes(of: p.load(fromByteOffset: 4 * i, as: UInt32.self).byteSwapped, toByteOffset: 4 * i, as: UInt32.self)
            }
        case 8:
            for i in 0..<count {
                p.storeBytes(of: p.load(fromByteOffset: 8 * i, as: UInt64.self).byteSwapped, toByteOffset: 8 * i, as: UInt64.self)
            }
        default: break
        }
    }
}

enum VoxelWriter {
    /// Calls `body` with the voxels' bytes in the file's x-fastest order.
    static func withFileOrder<R>(
        _ data: VoxelData, spatial: [Int], channels: Int, _ body: (UnsafeRawBufferPointer) throws -> R
    ) throws -> R {
        switch data {
        case .int8(let a): return try toFortranOrder(a, spatial: spatial, channels: channels).withUnsafeBytes(body)
        case .uint8(let a): return try toFortranOrder(a, spatial: spatial, channels: channels).withUnsafeBytes(body)
        case .int16(let a): return try toFortranOrder(a, spatial: spatial, channels: channels).withUnsafeBytes(body)
        case .uint16(let a): return try toFortranOrder(a, spatial: spatial, channels: channels).withUnsafeBytes(body)
        case .int32(let a): return try toFortranOrder(a, spatial: spatial, channels: channels).withUnsafeBytes(body)
        case .uint32(let a): return try toFortranOrder(a, spatial: spatial, channels: channels).withUnsafeBytes(body)
        case .int64(let a): return try toFortranOrder(a, spatial: spatial, channels: channels).withUnsafeBytes(body)
        case .float32(let a): return try toFortranOrder(a, spatial: spatial, channels: channels).withUnsafeBytes(body)
        case .float64(let a): return try toFortranOrder(a, spatial: spatial, channels: channels).withUnsafeBytes(body)
        }
    }

    /// C order `[c, x, y, z]` to the file's x-fastest order. Tiled over z: each (x, y) contributes one cache
    /// line of z values, written to as many output planes at consecutive x, instead of one strided read per voxel.
    static func toFortranOrder<T>(_ a: [T], spatial: [Int], channels: Int) -> [T] {
        guard !a.isEmpty else { return [] }
        let nx = spatial[0], ny = spatial[1], nz = spatial.count > 2 ? spatial[2] : 1
        let plane = nx * ny
        let tile = max(8, 64 / MemoryLayout<T>.stride)
        let tiles = (nz + tile - 1) / tile
        return a.withUnsafeBufferPointer { src in
            [T](unsafeUninitializedCapacity: a.count) { out, n in
                let s = src.baseAddress!, d = out.baseAddress!
                Parallel.forChunks(count: channels * tiles * ny, minChunk: 16) { lo, hi in
                    for cty in lo..<hi {
                        let c = cty / (tiles * ny), t = (cty / ny) % tiles, y = cty % ny
                        let z0 = t * tile, z1 = min(z0 + tile, nz)
                        let sc = s + c * plane * nz + y * nz
                        let dc = d + c * plane * nz + y * nx
                        for x in 0..<nx {
                            let sp = sc + x * ny * nz
                            for z in z0..<z1 { (dc + z * plane + x).initialize(to: sp[z]) }
                        }
                    }
                }
                n = a.count
            }
        }
    }
}
