import CNifti
import Foundation

/// An 8-bit RGB PNG writer (zlib from the system, filter 0 per row): enough for server-rendered previews.
public enum PNG {
    /// Encodes `rgb` (`width * height * 3` bytes, rows top to bottom).
    public static func encode(width: Int, height: Int, rgb: [UInt8]) throws -> [UInt8] {
        guard width > 0, height > 0, width <= 16384, height <= 16384, rgb.count == width * height * 3 else {
            throw ImagingError("PNG: \(width)x\(height) does not match \(rgb.count) RGB bytes")
        }
        var raw = [UInt8]()
        raw.reserveCapacity((width * 3 + 1) * height)
        for y in 0..<height {
            raw.append(0)
            raw.append(contentsOf: rgb[(y * width * 3)..<((y + 1) * width * 3)])
        }
        var bound = compressBound(uLong(raw.count))
        var packed = [UInt8](repeating: 0, count: Int(bound))
        let rc = packed.withUnsafeMutableBufferPointer { dst in
            raw.withUnsafeBufferPointer { src in compress2(dst.baseAddress, &bound, src.baseAddress, uLong(raw.count), 6) }
        }
        guard rc == Z_OK else { throw ImagingError("PNG: zlib failed (\(rc))") }
        packed.removeSubrange(Int(bound)...)

        var out: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
        var header = [UInt8]()
        header += be32(width) + be32(height)
        header += [8, 2, 0, 0, 0]  // 8-bit, truecolour, deflate, adaptive filtering, no interlace
        chunk("IHDR", header, into: &out)
        chunk("IDAT", packed, into: &out)
        chunk("IEND", [], into: &out)
        return out
    }

    private static func be32(_ v: Int) -> [UInt8] { [UInt8(v >> 24 & 0xFF), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }

    private static func chunk(_ type: String, _ data: [UInt8], into out: inout [UInt8]) {
        let typeBytes = Array(type.utf8)
        out += be32(data.count) + typeBytes + data
        var crc = crc32(0, nil, 0)
        crc = (typeBytes + data).withUnsafeBufferPointer { crc32(crc, $0.baseAddress, uInt($0.count)) }
        out += be32(Int(crc))
    }
}

/// One slice of a volume as an RGB picture, windowed, optionally with a label drawn over it. Axes are the
/// file's voxel axes: axial fixes axis 2, coronal axis 1, sagittal axis 0; the later axis of the slice runs up
/// the picture (superior/anterior up for the usual RAS-like files).
public struct SlicePreview: Sendable {
    public enum Plane: String, Sendable, CaseIterable { case axial, coronal, sagittal }

    /// Window presets (width, level) in the image's units (Hounsfield for CT).
    public static let presets: [String: (width: Double, level: Double)] = [
        "ct-soft-tissue": (400, 40), "ct-lung": (1500, -600), "ct-bone": (2000, 300), "ct-brain": (80, 40),
    ]
    /// The largest picture side served.
    public static let maxSize = 1024

    public var plane: Plane
    public var index: Int
    /// Window width and level; nil picks the slice's 1st..99th percentile (good for MR and unknown units).
    public var window: (width: Double, level: Double)?
    /// Longest side of the picture in pixels (the slice is scaled to it by nearest neighbour, voxel spacing kept).
    public var size: Int

    public init(plane: Plane, index: Int, window: (width: Double, level: Double)?, size: Int) {
        self.plane = plane
        self.index = index
        self.window = window
        self.size = size
    }

    /// Voxels along the axis `plane` fixes.
    public static func depth(of volume: Volume, plane: Plane) -> Int {
        guard volume.spatialShape.count == 3 else { return 1 }
        switch plane {
        case .axial: return volume.spatialShape[2]
        case .coronal: return volume.spatialShape[1]
        case .sagittal: return volume.spatialShape[0]
        }
    }

    /// Renders the slice (and `label`, which must be on the same grid) to a PNG.
    public func render(_ volume: Volume, label: Volume?) throws -> [UInt8] {
        let shape = volume.spatialShape.count == 3 ? volume.spatialShape : volume.spatialShape + [1]
        guard shape.count == 3, shape.allSatisfy({ $0 > 0 }) else { throw ImagingError("preview needs a 2D or 3D image") }
        let (n0, n1, n2) = (shape[0], shape[1], shape[2])
        guard (0..<Self.depth(of: volume, plane: plane)).contains(index) || (volume.spatialShape.count == 2 && index == 0) else {
            throw ImagingError("index \(index) is outside the slice range")
        }
        let image = volume.data.asFloat()
        let labels = label.map { $0.data.asFloat() }
        // Columns run along `u`, rows along `v` (reversed so it runs up); `at(u, v)` is the voxel's flat offset.
        let (width, height): (Int, Int)
        let at: (Int, Int) -> Int
        let spacing = volume.affine.spacing
        let (su, sv): (Double, Double)
        switch plane {
        case .axial:
            (width, height) = (n0, n1)
            at = { u, v in (u * n1 + v) * n2 + index }
            (su, sv) = (spacing[0], spacing[1])
        case .coronal:
            (width, height) = (n0, n2)
            at = { u, v in (u * n1 + index) * n2 + v }
            (su, sv) = (spacing[0], spacing[2])
        case .sagittal:
            (width, height) = (n1, n2)
            at = { u, v in (index * n1 + u) * n2 + v }
            (su, sv) = (spacing[1], spacing[2])
        }
        var slice = [Float](repeating: 0, count: width * height)
        for v in 0..<height { for u in 0..<width { slice[v * width + u] = image[at(u, v)] } }
        let (lo, hi) = bounds(of: slice)

        // Picture size: the longer physical side becomes `size`, spacing kept. Spacing a file can make absurd (zero,
        // NaN, 1e30) counts as 1 so the sizes below stay finite.
        func sane(_ s: Double) -> Double { s.isFinite && s > 1e-6 && s < 1e6 ? s : 1 }
        let pu = Double(width) * sane(su), pv = Double(height) * sane(sv)
        let scale = Double(size) / max(pu, pv)
        let outW = max(1, min(Self.maxSize, Int((pu * scale).rounded())))
        let outH = max(1, min(Self.maxSize, Int((pv * scale).rounded())))
        var rgb = [UInt8](repeating: 0, count: outW * outH * 3)
        let range = max(hi - lo, 1e-6)
        for y in 0..<outH {
            let v = min(height - 1, (outH - 1 - y) * height / outH)
            for x in 0..<outW {
                let u = min(width - 1, x * width / outW)
                let t = (Double(slice[v * width + u]) - lo) / range * 255
                let g: UInt8 = t.isFinite ? UInt8(max(0, min(255, t.rounded()))) : 0
                var (r, gg, b) = (Double(g), Double(g), Double(g))
                if let labels, case let l = labels[at(u, v)], l.isFinite, l > 0 {
                    let c = Self.palette[Int(min(l, 1000)) % Self.palette.count]
                    (r, gg, b) = (0.5 * r + 0.5 * c.0, 0.5 * gg + 0.5 * c.1, 0.5 * b + 0.5 * c.2)
                }
                let o = (y * outW + x) * 3
                (rgb[o], rgb[o + 1], rgb[o + 2]) = (UInt8(r), UInt8(gg), UInt8(b))
            }
        }
        return try PNG.encode(width: outW, height: outH, rgb: rgb)
    }

    /// Label colours by value (0 is never drawn).
    static let palette: [(Double, Double, Double)] = [
        (255, 255, 0), (255, 64, 64), (64, 200, 64), (64, 128, 255), (255, 160, 0), (200, 64, 255), (0, 220, 220),
    ]

    private func bounds(of slice: [Float]) -> (Double, Double) {
        if let w = window { return (w.level - w.width / 2, w.level + w.width / 2) }
        let finite = slice.filter(\.isFinite).sorted()
        guard let first = finite.first, let last = finite.last else { return (0, 1) }
        let lo = Double(finite[finite.count / 100]), hi = Double(finite[(finite.count - 1) * 99 / 100])
        return hi > lo ? (lo, hi) : (Double(first), Double(last))
    }
}
