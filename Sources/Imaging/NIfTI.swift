import CNifti
import Dispatch
import Foundation

/// NIfTI-1 and NIfTI-2 single-file images (`.nii`, `.nii.gz`), read and written as nibabel and MONAI do.
///
/// Reading validates the header ourselves before libnifti2 parses it and before anything of the claimed size is
/// allocated; voxels are inflated by zlib straight into the destination while a second thread reorders them from
/// the file's Fortran order into our C order.
public enum NIfTI {
    /// NIfTI datatype codes.
    static func voxelType(code: Int32) -> VoxelType? {
        switch code {
        case 2: return .uint8
        case 4: return .int16
        case 8: return .int32
        case 16: return .float32
        case 64: return .float64
        case 256: return .int8
        case 512: return .uint16
        case 768: return .uint32
        case 1024: return .int64
        default: return nil
        }
    }

    static func code(of type: VoxelType) -> Int32 {
        switch type {
        case .uint8: return 2
        case .int16: return 4
        case .int32: return 8
        case .float32: return 16
        case .float64: return 64
        case .int8: return 256
        case .uint16: return 512
        case .uint32: return 768
        case .int64: return 1024
        }
    }

    /// What a raw header claims, checked for sanity before any library acts on it.
    struct Precheck {
        var version: Int
        var dims: [Int]
        var type: VoxelType
        var voxOffset: Int
        var dataBytes: Int
    }

    /// Reads the first bytes of the file and rejects anything that is not a plausible single-file NIfTI whose
    /// voxels fit in the file.
    static func precheck(path: String) throws -> Precheck {
        let fileSize = try FileBytes.size(path)
        let gz = FileBytes.isGzip(path)
        let file = try GzipFile(path: path, mode: "rb")
        var raw = [UInt8](repeating: 0, count: 544)
        let got = try raw.withUnsafeMutableBytes { try file.read(into: $0.baseAddress!, count: 544) }
        guard got >= 348 else {
            throw ImagingError("\(path): not a NIfTI file (only \(got) header bytes)")
        }
        func i16(_ o: Int, _ swap: Bool) -> Int {
            let v = UInt16(raw[o]) | UInt16(raw[o + 1]) << 8
            return Int(Int16(bitPattern: swap ? v.byteSwapped : v))
        }
        func i32(_ o: Int, _ swap: Bool) -> Int {
            var v: UInt32 = 0
            for k in 0..<4 { v |= UInt32(raw[o + k]) << (8 * k) }
            return Int(Int32(bitPattern: swap ? v.byteSwapped : v))
        }
        func i64(_ o: Int, _ swap: Bool) -> Int64 {
            var v: UInt64 = 0
            for k in 0..<8 { v |= UInt64(raw[o + k]) << (8 * k) }
            return Int64(bitPattern: swap ? v.byteSwapped : v)
        }
        func f32(_ o: Int, _ swap: Bool) -> Float {
            var v: UInt32 = 0
            for k in 0..<4 { v |= UInt32(raw[o + k]) << (8 * k) }
            return Float(bitPattern: swap ? v.byteSwapped : v)
        }
        let size = i32(0, false)
        let swap: Bool
        let version: Int
        switch size {
        case 348: (version, swap) = (1, false)
        case 540: (version, swap) = (2, false)
        default:
            let swapped = i32(0, true)
            if swapped == 348 { (version, swap) = (1, true) }
            else if swapped == 540 { (version, swap) = (2, true) }
            else { throw ImagingError("\(path): not a NIfTI file (sizeof_hdr is \(size), expected 348 or 540)") }
        }
        if version == 2 && got < 540 {
            throw ImagingError("\(path): NIfTI-2 header is truncated (\(got) of 540 bytes)")
        }
        let magic = version == 1 ? Array(raw[344..<348]) : Array(raw[4..<12])
        let expected: [UInt8] = version == 1 ? Array("n+1\0".utf8) : [0x6e, 0x2b, 0x32, 0, 0x0d, 0x0a, 0x1a, 0x0a]
        // libnifti and old writers leave NIfTI-2's EOL check bytes zero; nibabel accepts that too.
        let zeroEOL: [UInt8] = [0x6e, 0x2b, 0x32, 0, 0, 0, 0, 0]
        if magic != expected && !(version == 2 && magic == zeroEOL) {
            let pair: [UInt8] = version == 1 ? Array("ni1\0".utf8) : [0x6e, 0x69, 0x32, 0]
            if Array(magic.prefix(pair.count)) == pair {
                throw ImagingError("\(path): two-file NIfTI (.hdr/.img) is not supported; use a single .nii/.nii.gz")
            }
            throw ImagingError("\(path): bad NIfTI-\(version) magic \(magic.map { String(format: "%02x", $0) }.joined())")
        }
        var dim = [Int](repeating: 0, count: 8)
        let datatype: Int
        let voxOffset: Int
        if version == 1 {
            for k in 0..<8 { dim[k] = i16(40 + 2 * k, swap) }
            datatype = i16(70, swap)
            let off = f32(108, swap)
            guard off.isFinite, off >= 0, off < 1e12 else {
                throw ImagingError("\(path): invalid vox_offset \(off)")
            }
            voxOffset = Int(off)
        } else {
            for k in 0..<8 {
                let d = i64(16 + 8 * k, swap)
                guard d >= Int64(Int32.min), d <= Int64(Int32.max) * 1024 else {
                    throw ImagingError("\(path): dimension \(k) is out of range (\(d))")
                }
                dim[k] = Int(d)
            }
            datatype = i16(12, swap)
            let off = i64(168, swap)
            guard off >= 0, off < 1 << 40 else { throw ImagingError("\(path): invalid vox_offset \(off)") }
            voxOffset = Int(off)
        }
        let ndim = dim[0]
        guard (1...7).contains(ndim) else {
            throw ImagingError("\(path): invalid number of dimensions dim[0] = \(ndim) (must be 1 to 7)")
        }
        let dims = Array(dim[1...ndim])
        if let bad = dims.firstIndex(where: { $0 < 1 }) {
            throw ImagingError("\(path): invalid dimension dim[\(bad + 1)] = \(dims[bad]) (must be at least 1)")
        }
        guard let type = voxelType(code: Int32(datatype)) else {
            throw ImagingError("\(path): unsupported NIfTI datatype \(datatype)")
        }
        var bytes = type.size
        for d in dims {
            let (p, o) = bytes.multipliedReportingOverflow(by: d)
            guard !o, p < 1 << 46 else {
                throw ImagingError("\(path): header claims an impossible image size \(dims)")
            }
            bytes = p
        }
        try ImagingLimits.checkVoxels(dims, what: URL(fileURLWithPath: path).lastPathComponent)
        let headerSize = version == 1 ? 348 : 540
        guard voxOffset >= headerSize else {
            throw ImagingError("\(path): vox_offset \(voxOffset) lies inside the \(headerSize)-byte header")
        }
        if gz {
            // vox_offset counts too: libnifti allocates extensions up to it before we read any voxel.
            if voxOffset + bytes > FileBytes.maxInflatedSize(compressedSize: fileSize) {
                throw ImagingError(
                    "\(path): header claims \(dims) voxels (\(bytes) bytes), more than a \(fileSize)-byte gzip file can hold")
            }
        } else if voxOffset + bytes > fileSize {
            throw ImagingError(
                "\(path): file is truncated: header claims \(dims) voxels needing \(voxOffset + bytes) bytes, file has \(fileSize)")
        }
        return Precheck(version: version, dims: dims, type: type, voxOffset: voxOffset, dataBytes: bytes)
    }

    /// The header of a `.nii`/`.nii.gz` as `read` interprets it (checked by `precheck` first, so nothing of the
    /// claimed size is allocated): spatial shape, channels and the affine, without reading a voxel.
    static func header(path: String) throws
        -> (pre: Precheck, h: cnifti_header, spatial: [Int], channels: Int, affine: Affine)
    {
        let pre = try precheck(path: path)
        var h = cnifti_header()
        var err = [CChar](repeating: 0, count: 256)
        if cnifti_read_header(path, &h, &err, err.count) != 0 {
            throw ImagingError("\(path): \(err.withUnsafeBufferPointer { String(cString: $0.baseAddress!) })")
        }
        let dimTuple = withUnsafeBytes(of: h.dim) { Array($0.bindMemory(to: Int64.self)) }
        let pixdim = withUnsafeBytes(of: h.pixdim) { Array($0.bindMemory(to: Double.self)) }
        let srow = withUnsafeBytes(of: h.srow) { Array($0.bindMemory(to: Double.self)) }
        guard dimTuple[0] == Int64(pre.dims.count),
            zip(pre.dims, dimTuple[1...]).allSatisfy({ Int64($0) == $1 })
        else { throw ImagingError("\(path): libnifti and the raw header disagree on the dimensions") }

        var dims = pre.dims
        let spatialCount = min(3, dims.count)
        var spatial = Array(dims.prefix(spatialCount))
        if spatial.count == 1 { spatial.append(1) }
        dims.removeFirst(spatialCount)
        while dims.last == 1 { dims.removeLast() }
        let channels = dims.reduce(1, *)

        let affine = try bestAffine(h: h, pixdim: pixdim, srow: srow, dims: pre.dims, path: path)
        guard affine.isFinite else { throw ImagingError("\(path): the header's affine has non-finite entries") }
        return (pre, h, spatial, channels, affine)
    }

    /// The grid (spatial shape and affine) of a `.nii`/`.nii.gz` from its header alone.
    public static func readGrid(_ url: URL) throws -> Grid {
        let (_, _, spatial, _, affine) = try header(path: url.path)
        return Grid(spatialShape: spatial, affine: affine)
    }

    /// Reads a `.nii` or `.nii.gz` image. The affine is nibabel's `get_best_affine` (sform when sform_code != 0,
    /// else qform when qform_code != 0, else the pixdim diagonal with x flipped, centred); `scl_slope` and
    /// `scl_inter` are applied when they scale (result float32, float64 for float64 files). A 4th and later
    /// dimension become channels (trailing singleton dimensions vanish).
    public static func read(_ url: URL) throws -> Volume {
        let path = url.path
        let (pre, h, spatial, channels, affine) = try header(path: path)
        let file = try GzipFile(path: path, mode: "rb")
        try file.skip(pre.voxOffset)
        var data = try VoxelReader.read(
            file: file, type: pre.type, spatial: spatial, channels: channels, swapped: h.swapped != 0)

        let slope = h.scl_slope, inter = h.scl_inter
        if slope != 0, slope.isFinite, !(slope == 1 && (inter == 0 || !inter.isFinite)) {
            let b = inter.isFinite ? inter : 0
            data = scaled(data, slope: slope, inter: b)
        }
        let descrip = withUnsafeBytes(of: h.descrip) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let source = SourceHeader(
            format: pre.version == 2 ? .nifti2 : .nifti1, qformCode: h.qform_code, sformCode: h.sform_code,
            xyztUnits: h.xyz_units | h.time_units, description: descrip, storedType: pre.type,
            sclSlope: slope, sclInter: inter, path: path)
        return Volume(spatialShape: spatial, channels: channels, data: data, affine: affine, source: source)
    }

    static func bestAffine(h: cnifti_header, pixdim: [Double], srow: [Double], dims: [Int], path: String) throws
        -> Affine
    {
        if h.sform_code != 0 {
            return Affine(srow + [0, 0, 0, 1])
        }
        if h.qform_code != 0 {
            let (b, c, d) = (h.quatern_b, h.quatern_c, h.quatern_d)
            // nibabel's fillpositive, with the float32 threshold it uses for NIfTI headers.
            let w2 = 1.0 - (b * b + c * c + d * d)
            let w: Double
            if abs(w2) < 3 * Double(Float.ulpOfOne) { w = 0 }
            else if w2 < 0 { throw ImagingError("\(path): invalid qform quaternion (w^2 = \(w2))") }
            else { w = w2.squareRoot() }
            let nq = w * w + b * b + c * c + d * d
            var r: [Double] = [1, 0, 0, 0, 1, 0, 0, 0, 1]
            if nq >= Double.ulpOfOne {
                let s = 2.0 / nq
                let (x, y, z) = (b * s, c * s, d * s)
                let (wx, wy, wz) = (w * x, w * y, w * z)
                let (xx, xy, xz) = (b * x, b * y, b * z)
                let (yy, yz, zz) = (c * y, c * z, d * z)
                r = [1 - (yy + zz), xy - wz, xz + wy, xy + wz, 1 - (xx + zz), yz - wx, xz - wy, yz + wx, 1 - (xx + yy)]
            }
            var vox = [pixdim[1], pixdim[2], pixdim[3]]
            if vox.contains(where: { $0 < 0 }) {
                throw ImagingError("\(path): qform pixdim[1...3] must be positive, got \(vox)")
            }
            vox[2] *= h.qfac < 0 ? -1 : 1
            var m = [Double](repeating: 0, count: 16)
            for i in 0..<3 { for j in 0..<3 { m[i * 4 + j] = r[i * 3 + j] * vox[j] } }
            m[3] = h.qoffset_x
            m[7] = h.qoffset_y
            m[11] = h.qoffset_z
            m[15] = 1
            return Affine(m)
        }
        // nibabel's shape_zoom_affine with the default x flip.
        let n = min(dims.count, 3)
        var shape = [1.0, 1.0, 1.0], zooms = [1.0, 1.0, 1.0]
        for i in 0..<n {
            shape[i] = Double(dims[i])
            zooms[i] = pixdim[i + 1]
        }
        zooms[0] *= -1
        var m = [Double](repeating: 0, count: 16)
        for i in 0..<3 {
            m[i * 4 + i] = zooms[i]
            m[i * 4 + 3] = -((shape[i] - 1) / 2) * zooms[i]
        }
        m[15] = 1
        return Affine(m)
    }

    static func scaled(_ data: VoxelData, slope: Double, inter: Double) -> VoxelData {
        if case .float64(let a) = data {
            return .float64(a.map { $0 * slope + inter })
        }
        let f = data.asFloat()
        let s = Float(slope), b = Float(inter)
        return .float32(Parallel.map(f) { $0 * s + b })
    }

    /// Writes `volume` as NIfTI (gzip-compressed when the path ends in `.gz`) with `dtype` (default: the volume's
    /// own), its affine as both sform and qform, the qform/sform codes of its source header (1 otherwise), and
    /// NIfTI-2 when the source was NIfTI-2 or a dimension does not fit NIfTI-1.
    public static func write(_ volume: Volume, to url: URL, dtype: VoxelType? = nil) throws {
        try write(volume, to: url, dtype: dtype, gzipMemberSize: 4 << 20)
    }

    /// `gzipMemberSize`: bytes of voxel data per independently compressed gzip member.
    static func write(_ volume: Volume, to url: URL, dtype: VoxelType?, gzipMemberSize: Int) throws {
        let path = url.path
        let data = dtype.map { volume.data.converted(to: $0) } ?? volume.data
        var dim = [Int64](repeating: 1, count: 8)
        let spatial = volume.spatialShape
        for (i, s) in spatial.enumerated() { dim[i + 1] = Int64(s) }
        dim[0] = Int64(spatial.count)
        if volume.channels > 1 {
            dim[0] = 4
            dim[4] = Int64(volume.channels)
        }
        let needsV2 = dim.contains { $0 > Int64(Int16.max) }
        let version: Int32 = (needsV2 || volume.source?.format == .nifti2) ? 2 : 1
        let src = volume.source
        let qcode = (src?.qformCode ?? 0) > 0 ? src!.qformCode : 1
        let scode = (src?.sformCode ?? 0) > 0 ? src!.sformCode : 1
        var header = [UInt8](repeating: 0, count: 544)
        let hsize = dim.withUnsafeBufferPointer { dp in
            volume.affine.m.withUnsafeBufferPointer { ap in
                header.withUnsafeMutableBufferPointer { hp in
                    cnifti_encode_header(
                        version, dp.baseAddress, code(of: data.type), ap.baseAddress, qcode, scode,
                        src?.xyztUnits ?? 10, src?.description ?? "", 1, 0, hp.baseAddress, hp.count)
                }
            }
        }
        guard hsize > 0 else { throw ImagingError("\(path): cannot encode a NIfTI header for shape \(volume.shape)") }
        if version == 2 {
            // The NIfTI-2 magic's EOL check bytes, which libnifti leaves zero.
            header.replaceSubrange(8..<12, with: [0x0d, 0x0a, 0x1a, 0x0a])
        }
        let gz = path.hasSuffix(".gz")
        // The 4 bytes after the header are the (empty) extension flag.
        let head = Array(header.prefix(Int(hsize) + 4))
        try VoxelWriter.withFileOrder(data, spatial: spatial, channels: volume.channels) { voxels in
            let out = try OutputFile(path: path)
            do {
                if gz {
                    // Independent gzip members compressed in parallel; gzip readers (zlib's gzread, Python's gzip,
                    // nibabel, ITK, libnifti) read concatenated members as one stream.
                    try head.withUnsafeBytes { try out.write(try Zlib.gzip($0)) }
                    for member in try Zlib.gzipMembers(voxels, chunk: gzipMemberSize) { try out.write(member) }
                } else {
                    try head.withUnsafeBytes { try out.write($0) }
                    try out.write(voxels)
                }
                try out.close()
            } catch {
                try? out.close()
                try? FileManager.default.removeItem(atPath: path)
                throw error
            }
        }
    }
}
