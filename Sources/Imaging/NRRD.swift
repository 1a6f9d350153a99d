import Foundation

/// NRRD images (`.nrrd`, `.seg.nrrd`) with attached data in `raw` or `gzip` encoding, as 3D Slicer reads and writes
/// them. Space `left-posterior-superior` (or `right-anterior-superior`) directions and origin become our RAS+
/// affine; a non-spatial first axis (`list`, `vector`, ...) becomes channels.
public enum NRRD {
    /// A segment of a `.seg.nrrd`: written as `Segment{i}_ID`, `Segment{i}_Name`, `Segment{i}_LabelValue`,
    /// `Segment{i}_Layer` (and `Segment{i}_Color` when given).
    public struct Segment: Sendable, Equatable {
        public var id: String
        public var name: String
        public var labelValue: Int
        /// RGB in 0...1 (three values).
        public var color: [Double]?

        public init(id: String, name: String, labelValue: Int, color: [Double]? = nil) {
            self.id = id
            self.name = name
            self.labelValue = labelValue
            self.color = color
        }
    }

    /// A parsed NRRD: the volume plus its header fields and `key:=value` pairs.
    public struct File: Sendable {
        public var volume: Volume
        public var fields: [String: String]
        public var keyValues: [String: String]
    }

    static func voxelType(_ name: String) -> VoxelType? {
        switch name.lowercased() {
        case "signed char", "int8", "int8_t": return .int8
        case "uchar", "unsigned char", "uint8", "uint8_t": return .uint8
        case "short", "short int", "signed short", "signed short int", "int16", "int16_t": return .int16
        case "ushort", "unsigned short", "unsigned short int", "uint16", "uint16_t": return .uint16
        case "int", "signed int", "int32", "int32_t": return .int32
        case "uint", "unsigned int", "uint32", "uint32_t": return .uint32
        case "longlong", "long long", "long long int", "signed long long", "signed long long int", "int64", "int64_t":
            return .int64
        case "float": return .float32
        case "double": return .float64
        default: return nil
        }
    }

    static func typeName(_ t: VoxelType) -> String {
        switch t {
        case .int8: return "signed char"
        case .uint8: return "unsigned char"
        case .int16: return "short"
        case .uint16: return "unsigned short"
        case .int32: return "int"
        case .uint32: return "unsigned int"
        case .int64: return "long long"
        case .float32: return "float"
        case .float64: return "double"
        }
    }

    public static func read(_ url: URL) throws -> Volume { try readFile(url).volume }

    /// Reads a NRRD with its header fields and key/value pairs (e.g. `Segment0_Name`).
    public static func readFile(_ url: URL) throws -> File {
        let path = url.path
        _ = try FileBytes.size(path)
        let bytes: Data
        do { bytes = try Data(contentsOf: url, options: .alwaysMapped) } catch {
            throw ImagingError("cannot read \(path): \(error.localizedDescription)")
        }
        do { return try parse(bytes, path: path) } catch let e as ImagingError {
            throw ImagingError("\(path): \(e.message)")
        }
    }

    /// What a NRRD header says, checked (type, sizes, the voxel limit, voxel data that fits the payload) before
    /// anything of the claimed size is allocated.
    struct Header {
        var fields: [String: String]
        var keyValues: [String: String]
        var type: VoxelType
        var sizes: [Int]
        var spatial: [Int]
        var channels: Int
        var channelAxis: Int
        /// Bytes of voxel data once decoded.
        var count: Int
        var encoding: String
        /// Where the (possibly compressed) voxel data starts.
        var payloadStart: Data.Index
    }

    static func parseHeader(_ bytes: Data) throws -> Header {
        guard bytes.count >= 8, bytes.prefix(4) == Data("NRRD".utf8) else { throw ImagingError("not a NRRD file (bad magic)") }
        // The header ends at the first empty line.
        var fields: [String: String] = [:], keyValues: [String: String] = [:]
        var pos = bytes.startIndex
        var first = true
        var headerDone = false
        while pos < bytes.endIndex {
            guard let nl = bytes[pos...].firstIndex(of: 0x0a) else { break }
            var line = String(decoding: bytes[pos..<nl], as: UTF8.self)
            if line.hasSuffix("\r") { line.removeLast() }
            pos = bytes.index(after: nl)
            if first {
                first = false
                continue
            }
            if line.isEmpty {
                headerDone = true
                break
            }
            if line.hasPrefix("#") { continue }
            if let r = line.range(of: ":=") {
                keyValues[String(line[..<r.lowerBound])] = String(line[r.upperBound...])
            } else if let r = line.range(of: ": ") {
                fields[line[..<r.lowerBound].lowercased()] = String(line[r.upperBound...]).trimmingCharacters(in: .whitespaces)
            }
            if pos - bytes.startIndex > 1 << 20 { throw ImagingError("NRRD header is larger than 1 MiB") }
        }
        guard headerDone else { throw ImagingError("NRRD header is not terminated by an empty line") }
        if fields["data file"] != nil || fields["datafile"] != nil {
            throw ImagingError("detached NRRD data files are not supported")
        }
        guard let typeName = fields["type"], let type = voxelType(typeName) else {
            throw ImagingError("unsupported or missing NRRD type \(fields["type"] ?? "(none)")")
        }
        guard let dimText = fields["dimension"], let dimension = Int(dimText), (2...4).contains(dimension) else {
            throw ImagingError("unsupported NRRD dimension \(fields["dimension"] ?? "(none)") (2 to 4 supported)")
        }
        let sizes = (fields["sizes"] ?? "").split(separator: " ").compactMap { Int($0) }
        guard sizes.count == dimension, sizes.allSatisfy({ $0 >= 1 }) else {
            throw ImagingError("invalid NRRD sizes \(fields["sizes"] ?? "(none)")")
        }
        let kinds = (fields["kinds"] ?? "").split(separator: " ").map { $0.lowercased() }
        let spatialKinds: Set<String> = ["domain", "space", "time"]
        // Our volumes are channel-first: a non-spatial leading axis of a 4-D (or 3-D with 2-D space) file.
        var channelAxis = -1
        if kinds.count == dimension, let idx = kinds.firstIndex(where: { !spatialKinds.contains($0) && $0 != "???" && $0 != "none" }) {
            channelAxis = idx
        } else if dimension == 4 {
            channelAxis = 0
        }
        if channelAxis > 0 { throw ImagingError("NRRD with a non-spatial axis other than the first is not supported") }
        let channels = channelAxis == 0 ? sizes[0] : 1
        let spatial = Array(sizes[(channelAxis == 0 ? 1 : 0)...])
        guard spatial.count == 2 || spatial.count == 3 else {
            throw ImagingError("NRRD must have 2 or 3 spatial axes, got \(spatial.count)")
        }
        var count = type.size
        for s in sizes {
            let (p, o) = count.multipliedReportingOverflow(by: s)
            guard !o, p < 1 << 46 else { throw ImagingError("NRRD sizes \(sizes) are impossibly large") }
            count = p
        }
        try ImagingLimits.checkVoxels(sizes, what: "NRRD")
        let payload = bytes[pos...]
        let encoding = (fields["encoding"] ?? "raw").lowercased()
        switch encoding {
        case "raw":
            guard payload.count >= count else {
                throw ImagingError("file is truncated: \(count) bytes of voxel data expected, \(payload.count) present")
            }
        case "gzip", "gz":
            guard count <= FileBytes.maxInflatedSize(compressedSize: payload.count) else {
                throw ImagingError("header claims \(count) bytes, more than \(payload.count) compressed bytes can hold")
            }
        default:
            throw ImagingError("unsupported NRRD encoding \(encoding) (raw and gzip supported)")
        }
        return Header(
            fields: fields, keyValues: keyValues, type: type, sizes: sizes, spatial: spatial, channels: channels,
            channelAxis: channelAxis, count: count, encoding: encoding, payloadStart: pos)
    }

    /// The grid of a NRRD from its header alone (the file is mapped, not read).
    public static func readGrid(_ url: URL) throws -> Grid {
        let h = try header(url)
        let affine = try affineFrom(fields: h.fields, spatialCount: h.spatial.count, channelAxis: h.channelAxis)
        return Grid(spatialShape: h.spatial, affine: affine)
    }

    /// Checks a NRRD's header (see `Header`) without decoding its voxels.
    public static func checkHeader(_ url: URL) throws { _ = try header(url) }

    private static func header(_ url: URL) throws -> Header {
        _ = try FileBytes.size(url.path)
        let bytes: Data
        do { bytes = try Data(contentsOf: url, options: .alwaysMapped) } catch {
            throw ImagingError("cannot read \(url.lastPathComponent): \(error.localizedDescription)")
        }
        do { return try parseHeader(bytes) } catch let e as ImagingError {
            throw ImagingError("\(url.lastPathComponent): \(e.message)")
        }
    }

    static func parse(_ bytes: Data, path: String) throws -> File {
        let h = try parseHeader(bytes)
        let (fields, keyValues, type, sizes, spatial) = (h.fields, h.keyValues, h.type, h.sizes, h.spatial)
        let (channels, channelAxis, count) = (h.channels, h.channelAxis, h.count)
        let payload = bytes[h.payloadStart...]
        var raw: [UInt8]
        if h.encoding == "raw" {
            raw = [UInt8](payload.prefix(count))
        } else {
            raw = [UInt8](repeating: 0, count: count)
            try payload.withUnsafeBytes { src in
                try raw.withUnsafeMutableBytes { dst in try Zlib.gunzip(src, into: dst.baseAddress!, expected: count) }
            }
        }
        let big = (fields["endian"] ?? "little").lowercased() == "big"
        if big && type.size > 1 {
            raw.withUnsafeMutableBytes { VoxelReader.swapBytes($0.baseAddress!, count: count / type.size, size: type.size) }
        }
        // File order is first-axis fastest: a C-order array of the reversed sizes; reverse it to [c, x, y, z].
        let reversed = Array(sizes.reversed())
        let perm = Array((0..<sizes.count).reversed())
        let op = PermuteFlip(shape: reversed, channels: 1, perm: perm, flip: [Bool](repeating: false, count: sizes.count))
        let data = try typedData(raw, type: type).transformed(by: op)
        let affine = try affineFrom(fields: fields, spatialCount: spatial.count, channelAxis: channelAxis)
        guard affine.isFinite else { throw ImagingError("the header's space directions or origin are not finite") }
        let source = SourceHeader(format: .nrrd, storedType: type, path: path)
        let volume = Volume(spatialShape: spatial, channels: channels, data: data, affine: affine, source: source)
        return File(volume: volume, fields: fields, keyValues: keyValues)
    }

    static func typedData(_ raw: [UInt8], type: VoxelType) throws -> VoxelData {
        func load<T>(_: T.Type) -> [T] {
            raw.withUnsafeBytes { b in (0..<(raw.count / MemoryLayout<T>.size)).map { b.loadUnaligned(fromByteOffset: $0 * MemoryLayout<T>.size, as: T.self) } }
        }
        switch type {
        case .int8: return .int8(load(Int8.self))
        case .uint8: return .uint8(raw)
        case .int16: return .int16(load(Int16.self))
        case .uint16: return .uint16(load(UInt16.self))
        case .int32: return .int32(load(Int32.self))
        case .uint32: return .uint32(load(UInt32.self))
        case .int64: return .int64(load(Int64.self))
        case .float32: return .float32(load(Float.self))
        case .float64: return .float64(load(Double.self))
        }
    }

    static func parseVector(_ s: Substring) throws -> [Double] {
        let inner = s.trimmingCharacters(in: CharacterSet(charactersIn: "() "))
        let parts = inner.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        let vals = parts.compactMap { Double($0) }
        guard vals.count == parts.count, !vals.isEmpty else { throw ImagingError("bad NRRD vector \(s)") }
        return vals
    }

    static func affineFrom(fields: [String: String], spatialCount: Int, channelAxis: Int) throws -> Affine {
        let space = (fields["space"] ?? "").lowercased()
        let flipXY: Bool
        switch space {
        case "left-posterior-superior", "lps", "left-posterior-superior-time": flipXY = true
        case "right-anterior-superior", "ras", "right-anterior-superior-time", "", "scanner-xyz", "3d-right-handed":
            flipXY = false
        default: throw ImagingError("unsupported NRRD space \(space)")
        }
        var m = Affine.identity
        if let dirs = fields["space directions"] {
            // Each vector is a parenthesised tuple; "none" marks a non-spatial axis.
            var vectors: [[Double]?] = []
            var rest = Substring(dirs)
            while !rest.isEmpty {
                rest = rest.drop { $0 == " " }
                if rest.hasPrefix("none") {
                    vectors.append(nil)
                    rest = rest.dropFirst(4)
                } else if rest.hasPrefix("(") {
                    guard let close = rest.firstIndex(of: ")") else { throw ImagingError("bad NRRD space directions") }
                    vectors.append(try parseVector(rest[...close]))
                    rest = rest[rest.index(after: close)...]
                } else if !rest.isEmpty {
                    throw ImagingError("bad NRRD space directions \(dirs)")
                }
            }
            let spatialVectors = vectors.compactMap { $0 }
            guard spatialVectors.count == spatialCount else {
                throw ImagingError("NRRD space directions give \(spatialVectors.count) vectors for \(spatialCount) axes")
            }
            for (j, v) in spatialVectors.enumerated() {
                for i in 0..<min(3, v.count) { m[i, j] = v[i] }
            }
        } else if let sp = fields["spacings"] {
            let vals = sp.split(separator: " ").compactMap { Double($0) }
            for (j, v) in vals.suffix(spatialCount).enumerated() where v.isFinite { m[j, j] = v }
        }
        if let o = fields["space origin"] {
            let v = try parseVector(Substring(o))
            for i in 0..<min(3, v.count) { m[i, 3] = v[i] }
        }
        if flipXY {
            for j in 0..<4 {
                m[0, j] = -m[0, j]
                m[1, j] = -m[1, j]
            }
        }
        return m
    }

    static func format(_ x: Double) -> String {
        if x == x.rounded() && abs(x) < 1e15 { return String(Int(x)) }
        return "\(x)"
    }

    /// Writes `volume` as NRRD in LPS space (gzip encoding unless `compress` is false), with `dtype` (default:
    /// the volume's own). A multi-channel volume is written as a `list` axis first; `segments` add the
    /// `Segment{i}_*` keys that make a `.seg.nrrd` for 3D Slicer.
    public static func write(
        _ volume: Volume, to url: URL, dtype: VoxelType? = nil, compress: Bool = true, segments: [Segment] = []
    ) throws {
        let data = dtype.map { volume.data.converted(to: $0) } ?? volume.data
        let sr = volume.spatialShape.count
        let multi = volume.channels > 1
        var lines = ["NRRD0004", "# Complete NRRD file format specification at:", "# http://teem.sourceforge.net/nrrd/format.html"]
        lines.append("type: \(typeName(data.type))")
        lines.append("dimension: \(sr + (multi ? 1 : 0))")
        lines.append("space: left-posterior-superior")
        let sizes = (multi ? [volume.channels] : []) + volume.spatialShape
        lines.append("sizes: " + sizes.map(String.init).joined(separator: " "))
        var lps = volume.affine
        for j in 0..<4 {
            lps[0, j] = -lps[0, j]
            lps[1, j] = -lps[1, j]
        }
        let dirs = (0..<sr).map { j in "(" + (0..<3).map { format(lps[$0, j]) }.joined(separator: ",") + ")" }
        lines.append("space directions: " + (multi ? "none " : "") + dirs.joined(separator: " "))
        lines.append("kinds: " + (multi ? "list " : "") + Array(repeating: "domain", count: sr).joined(separator: " "))
        lines.append("endian: little")
        lines.append("encoding: \(compress ? "gzip" : "raw")")
        lines.append("space origin: (" + (0..<3).map { format(lps[$0, 3]) }.joined(separator: ",") + ")")
        for (i, s) in segments.enumerated() {
            lines.append("Segment\(i)_ID:=\(s.id)")
            lines.append("Segment\(i)_Name:=\(s.name)")
            lines.append("Segment\(i)_LabelValue:=\(multi ? 1 : s.labelValue)")
            lines.append("Segment\(i)_Layer:=\(multi ? i : 0)")
            if let c = s.color { lines.append("Segment\(i)_Color:=" + c.map { "\($0)" }.joined(separator: " ")) }
        }
        var out = Data((lines.joined(separator: "\n") + "\n\n").utf8)
        // C order [c, x, y, z] to the file's first-axis-fastest order: reverse the axes.
        let shape = sizes
        let op = PermuteFlip(
            shape: shape, channels: 1, perm: Array((0..<shape.count).reversed()),
            flip: [Bool](repeating: false, count: shape.count))
        let fileOrder = data.transformed(by: op)
        try withBytes(fileOrder) { raw in
            if compress { out.append(contentsOf: try Zlib.gzip(raw)) } else { out.append(contentsOf: raw) }
        }
        do { try out.write(to: url) } catch {
            throw ImagingError("cannot write \(url.path): \(error.localizedDescription)")
        }
    }

    static func withBytes(_ d: VoxelData, _ body: (UnsafeRawBufferPointer) throws -> Void) rethrows {
        switch d {
        case .int8(let a): try a.withUnsafeBytes(body)
        case .uint8(let a): try a.withUnsafeBytes(body)
        case .int16(let a): try a.withUnsafeBytes(body)
        case .uint16(let a): try a.withUnsafeBytes(body)
        case .int32(let a): try a.withUnsafeBytes(body)
        case .uint32(let a): try a.withUnsafeBytes(body)
        case .int64(let a): try a.withUnsafeBytes(body)
        case .float32(let a): try a.withUnsafeBytes(body)
        case .float64(let a): try a.withUnsafeBytes(body)
        }
    }
}
