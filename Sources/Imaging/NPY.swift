import Foundation

/// A NumPy `.npy` array (format versions 1.0 to 3.0): dtypes `<f4 <f8 <i8 <i4 <i2 <u2 |i1 |u1 |b1` (and their
/// big-endian forms on read), C or Fortran order on read; `data` is always in C order.
public struct NPYArray: Sendable, Equatable {
    public var shape: [Int]
    public var data: VoxelData
    /// True when the values are NumPy booleans (`|b1`), stored here as 0/1 `uint8`.
    public var isBool: Bool

    public init(shape: [Int], data: VoxelData, isBool: Bool = false) throws {
        let n = shape.reduce(1, *)
        guard shape.allSatisfy({ $0 >= 0 }), n == data.count else {
            throw ImagingError("npy: shape \(shape) does not match \(data.count) values")
        }
        self.shape = shape
        self.data = data
        self.isBool = isBool
    }

    /// The values as Float (C order).
    public var floats: [Float] { data.asFloat() }

    /// A channel-first volume view of a `[C, d0, d1(, d2)]` array (or `[d0, d1(, d2)]`, one channel) with an
    /// identity affine.
    public func volume(channelFirst: Bool = true, affine: Affine = .identity) throws -> Volume {
        if channelFirst, shape.count == 3 || shape.count == 4 {
            return Volume(spatialShape: Array(shape.dropFirst()), channels: shape[0], data: data, affine: affine)
        }
        guard shape.count == 2 || shape.count == 3 else {
            throw ImagingError("npy: cannot view shape \(shape) as a volume")
        }
        return Volume(spatialShape: shape, channels: 1, data: data, affine: affine)
    }

    public static func read(_ url: URL) throws -> NPYArray {
        let bytes: Data
        do { bytes = try Data(contentsOf: url) } catch {
            throw ImagingError("cannot read \(url.path): \(error.localizedDescription)")
        }
        do { return try parse(bytes) } catch let e as ImagingError {
            throw ImagingError("\(url.path): \(e.message)")
        }
    }

    public static func parse(_ bytes: Data) throws -> NPYArray {
        let b = [UInt8](bytes)
        guard b.count >= 10, b[0] == 0x93, Array(b[1..<6]) == Array("NUMPY".utf8) else {
            throw ImagingError("npy: bad magic")
        }
        let major = b[6]
        let headerLen: Int, start: Int
        switch major {
        case 1:
            headerLen = Int(b[8]) | Int(b[9]) << 8
            start = 10
        case 2, 3:
            guard b.count >= 12 else { throw ImagingError("npy: truncated header") }
            headerLen = Int(b[8]) | Int(b[9]) << 8 | Int(b[10]) << 16 | Int(b[11]) << 24
            start = 12
        default: throw ImagingError("npy: unsupported format version \(major)")
        }
        guard start + headerLen <= b.count else { throw ImagingError("npy: truncated header") }
        let header = String(decoding: b[start..<(start + headerLen)], as: UTF8.self)
        let descr = try field(header, "descr")
        let fortran = try field(header, "fortran_order")
        let shapeText = try field(header, "shape")
        let inner = shapeText.trimmingCharacters(in: CharacterSet(charactersIn: "() "))
        var shape: [Int] = []
        for part in inner.split(separator: ",") {
            let t = part.trimmingCharacters(in: .whitespaces)
            if t.isEmpty { continue }
            guard let v = Int(t), v >= 0 else { throw ImagingError("npy: bad shape \(shapeText)") }
            shape.append(v)
        }
        let d = descr.trimmingCharacters(in: CharacterSet(charactersIn: "'\""))
        guard d.count >= 3 else { throw ImagingError("npy: bad descr \(descr)") }
        let order = d.first!
        let kind = String(d.dropFirst())
        let bigEndian = order == ">"
        var count = 1
        for s in shape {
            let (p, o) = count.multipliedReportingOverflow(by: s)
            guard !o else { throw ImagingError("npy: shape \(shape) overflows") }
            count = p
        }
        let payload = start + headerLen
        func typed<T>(_: T.Type) throws -> [T] {
            let size = MemoryLayout<T>.size
            guard count <= (b.count - payload) / size else {
                throw ImagingError("npy: truncated data: \(count) values of \(size) bytes do not fit")
            }
            return b.withUnsafeBytes { raw in
                (0..<count).map { i in
                    if bigEndian && size > 1 {
                        var tmp = [UInt8](raw[(payload + i * size)..<(payload + (i + 1) * size)])
                        tmp.reverse()
                        return tmp.withUnsafeBytes { $0.loadUnaligned(as: T.self) }
                    }
                    return raw.loadUnaligned(fromByteOffset: payload + i * size, as: T.self)
                }
            }
        }
        var data: VoxelData
        var isBool = false
        switch kind {
        case "f4": data = .float32(try typed(Float.self))
        case "f8": data = .float64(try typed(Double.self))
        case "i8": data = .int64(try typed(Int64.self))
        case "i4": data = .int32(try typed(Int32.self))
        case "u4": data = .uint32(try typed(UInt32.self))
        case "i2": data = .int16(try typed(Int16.self))
        case "u2": data = .uint16(try typed(UInt16.self))
        case "i1": data = .int8(try typed(Int8.self))
        case "u1": data = .uint8(try typed(UInt8.self))
        case "b1":
            data = .uint8(try typed(UInt8.self).map { $0 != 0 ? 1 : 0 })
            isBool = true
        default: throw ImagingError("npy: unsupported dtype \(d)")
        }
        if fortran.hasPrefix("True") && shape.count > 1 {
            data = fortranToC(data, shape: shape)
        }
        return try NPYArray(shape: shape, data: data, isBool: isBool)
    }

    private static func field(_ header: String, _ key: String) throws -> String {
        guard let r = header.range(of: "'\(key)'") else { throw ImagingError("npy: header lacks \(key)") }
        var rest = header[r.upperBound...].drop { $0 == " " || $0 == ":" }
        if rest.first == "(" {
            guard let close = rest.firstIndex(of: ")") else { throw ImagingError("npy: bad \(key)") }
            return String(rest[...close])
        }
        if let end = rest.firstIndex(where: { $0 == "," || $0 == "}" }) { rest = rest[..<end] }
        return rest.trimmingCharacters(in: .whitespaces)
    }

    /// `data` laid out in Fortran order (first axis fastest) for `shape`, rearranged into our C order. Also the
    /// layout of OHIF's raw `.bin` label buffers.
    public static func fortranToC(_ data: VoxelData, shape: [Int]) -> VoxelData {
        func go<T>(_ a: [T]) -> [T] {
            let n = shape.count
            var fstride = [Int](repeating: 1, count: n)
            for i in 1..<n { fstride[i] = fstride[i - 1] * shape[i - 1] }
            var out: [T] = []
            out.reserveCapacity(a.count)
            var idx = [Int](repeating: 0, count: n)
            for _ in 0..<a.count {
                var off = 0
                for i in 0..<n { off += idx[i] * fstride[i] }
                out.append(a[off])
                var k = n - 1
                while k >= 0 {
                    idx[k] += 1
                    if idx[k] < shape[k] { break }
                    idx[k] = 0
                    k -= 1
                }
            }
            return out
        }
        switch data {
        case .int8(let a): return .int8(go(a))
        case .uint8(let a): return .uint8(go(a))
        case .int16(let a): return .int16(go(a))
        case .uint16(let a): return .uint16(go(a))
        case .int32(let a): return .int32(go(a))
        case .uint32(let a): return .uint32(go(a))
        case .int64(let a): return .int64(go(a))
        case .float32(let a): return .float32(go(a))
        case .float64(let a): return .float64(go(a))
        }
    }

    /// The `.npy` bytes (format 1.0, C order, little-endian).
    public func encoded() -> Data {
        let descr: String
        switch data {
        case .float32: descr = "<f4"
        case .float64: descr = "<f8"
        case .int64: descr = "<i8"
        case .int32: descr = "<i4"
        case .uint32: descr = "<u4"
        case .int16: descr = "<i2"
        case .uint16: descr = "<u2"
        case .int8: descr = "|i1"
        case .uint8: descr = isBool ? "|b1" : "|u1"
        }
        let shapeText = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
        var header = "{'descr': '\(descr)', 'fortran_order': False, 'shape': \(shapeText), }"
        // NumPy pads the header with spaces so the data starts on a 64-byte boundary.
        let total = 10 + header.utf8.count + 1
        header += String(repeating: " ", count: (64 - total % 64) % 64) + "\n"
        var out = Data([0x93] + Array("NUMPY".utf8) + [1, 0])
        let len = UInt16(header.utf8.count)
        out.append(contentsOf: [UInt8(len & 0xff), UInt8(len >> 8)])
        out.append(contentsOf: Array(header.utf8))
        func append<T>(_ a: [T]) { a.withUnsafeBytes { out.append(contentsOf: $0) } }
        switch data {
        case .int8(let a): append(a)
        case .uint8(let a): append(a)
        case .int16(let a): append(a)
        case .uint16(let a): append(a)
        case .int32(let a): append(a)
        case .uint32(let a): append(a)
        case .int64(let a): append(a)
        case .float32(let a): append(a)
        case .float64(let a): append(a)
        }
        return out
    }

    public func write(to url: URL) throws {
        do { try encoded().write(to: url) } catch {
            throw ImagingError("cannot write \(url.path): \(error.localizedDescription)")
        }
    }
}
