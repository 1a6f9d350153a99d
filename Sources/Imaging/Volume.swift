import Foundation

/// The element type of a voxel buffer, named as NumPy names them.
public enum VoxelType: String, Sendable, CaseIterable {
    case int8, uint8, int16, uint16, int32, uint32, int64, float32, float64

    /// Whether the type holds integers.
    public var isInteger: Bool { self != .float32 && self != .float64 }

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .int8, .uint8: return 1
        case .int16, .uint16: return 2
        case .int32, .uint32, .float32: return 4
        case .int64, .float64: return 8
        }
    }
}

private func saturatingIntegers<T: FixedWidthInteger>(_ values: [Float]) -> [T] {
    let lo = Float(T.min), hi = Float(T.max)
    return Parallel.map(values) { v -> T in
        if v.isNaN { return 0 }
        if v <= lo { return T.min }
        if v >= hi { return T.max }
        return T(v.rounded(.towardZero))
    }
}

/// Typed voxel storage, flat, in C order over `Volume.shape` (last axis fastest).
public enum VoxelData: Sendable, Equatable {
    case int8([Int8])
    case uint8([UInt8])
    case int16([Int16])
    case uint16([UInt16])
    case int32([Int32])
    case uint32([UInt32])
    case int64([Int64])
    case float32([Float])
    case float64([Double])

    public var type: VoxelType {
        switch self {
        case .int8: return .int8
        case .uint8: return .uint8
        case .int16: return .int16
        case .uint16: return .uint16
        case .int32: return .int32
        case .uint32: return .uint32
        case .int64: return .int64
        case .float32: return .float32
        case .float64: return .float64
        }
    }

    public var count: Int {
        switch self {
        case .int8(let a): return a.count
        case .uint8(let a): return a.count
        case .int16(let a): return a.count
        case .uint16(let a): return a.count
        case .int32(let a): return a.count
        case .uint32(let a): return a.count
        case .int64(let a): return a.count
        case .float32(let a): return a.count
        case .float64(let a): return a.count
        }
    }

    /// Every value converted to Float (the working type of the transforms), converted in parallel.
    public func asFloat() -> [Float] {
        if case .float32(let a) = self { return a }
        return visit(ToFloat())
    }

    /// A buffer of `type` holding `values` converted as NumPy's `astype` does for in-range values (floats
    /// truncated toward zero); out-of-range values saturate and NaN becomes 0 instead of being undefined.
    public static func converting(_ values: [Float], to type: VoxelType) -> VoxelData {
        switch type {
        case .float32: return .float32(values)
        case .float64: return .float64(values.map { Double($0) })
        case .int8: return .int8(saturatingIntegers(values))
        case .uint8: return .uint8(saturatingIntegers(values))
        case .int16: return .int16(saturatingIntegers(values))
        case .uint16: return .uint16(saturatingIntegers(values))
        case .int32: return .int32(saturatingIntegers(values))
        case .uint32: return .uint32(saturatingIntegers(values))
        case .int64: return .int64(saturatingIntegers(values))
        }
    }

    /// This buffer as `type`; integer to integer conversions saturate, float to integer as `converting`.
    public func converted(to type: VoxelType) -> VoxelData {
        if type == self.type { return self }
        switch (self, type) {
        case (.float64(let a), .float64): return .float64(a)
        case (.float64(let a), _) where type != .float32:
            return VoxelData.converting(a.map { Float($0.rounded(.towardZero)) }, to: type)
        default:
            if self.type.isInteger && type == .float64 { return .float64(asDouble()) }
            return VoxelData.converting(asFloat(), to: type)
        }
    }

    /// Every value converted to Double.
    public func asDouble() -> [Double] {
        switch self {
        case .int8(let a): return a.map { Double($0) }
        case .uint8(let a): return a.map { Double($0) }
        case .int16(let a): return a.map { Double($0) }
        case .uint16(let a): return a.map { Double($0) }
        case .int32(let a): return a.map { Double($0) }
        case .uint32(let a): return a.map { Double($0) }
        case .int64(let a): return a.map { Double($0) }
        case .float32(let a): return a.map { Double($0) }
        case .float64(let a): return a
        }
    }
}

/// A 4x4 homogeneous matrix in row-major order, mapping voxel indices (i, j, k, 1) to RAS+ world millimetres
/// as nibabel and MONAI use it.
public struct Affine: Sendable, Equatable {
    /// Row-major entries: `m[r * 4 + c]`.
    public var m: [Double]

    public init(_ rowMajor: [Double]) {
        precondition(rowMajor.count == 16, "an affine has 16 entries")
        m = rowMajor
    }

    public static let identity = Affine([1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1])

    public subscript(row: Int, column: Int) -> Double {
        get { m[row * 4 + column] }
        set { m[row * 4 + column] = newValue }
    }

    public static func * (a: Affine, b: Affine) -> Affine {
        var r = [Double](repeating: 0, count: 16)
        for i in 0..<4 {
            for j in 0..<4 {
                var s = 0.0
                for k in 0..<4 { s += a.m[i * 4 + k] * b.m[k * 4 + j] }
                r[i * 4 + j] = s
            }
        }
        return Affine(r)
    }

    /// Maps a voxel index (i, j, k) to world coordinates.
    public func apply(_ p: (Double, Double, Double)) -> (Double, Double, Double) {
        (
            m[0] * p.0 + m[1] * p.1 + m[2] * p.2 + m[3],
            m[4] * p.0 + m[5] * p.1 + m[6] * p.2 + m[7],
            m[8] * p.0 + m[9] * p.1 + m[10] * p.2 + m[11]
        )
    }

    /// The inverse, or nil when the matrix is singular.
    public func inverted() -> Affine? {
        // Gauss-Jordan on a 4x8 augmented matrix.
        var a = [[Double]](repeating: [Double](repeating: 0, count: 8), count: 4)
        for i in 0..<4 {
            for j in 0..<4 { a[i][j] = m[i * 4 + j] }
            a[i][4 + i] = 1
        }
        for col in 0..<4 {
            var pivot = col
            for r in col..<4 where abs(a[r][col]) > abs(a[pivot][col]) { pivot = r }
            if abs(a[pivot][col]) < 1e-12 { return nil }
            a.swapAt(col, pivot)
            let p = a[col][col]
            for j in 0..<8 { a[col][j] /= p }
            for r in 0..<4 where r != col {
                let f = a[r][col]
                if f != 0 { for j in 0..<8 { a[r][j] -= f * a[col][j] } }
            }
        }
        var r = [Double](repeating: 0, count: 16)
        for i in 0..<4 { for j in 0..<4 { r[i * 4 + j] = a[i][4 + j] } }
        return Affine(r)
    }

    /// Whether every entry is a finite number.
    public var isFinite: Bool { m.allSatisfy(\.isFinite) }

    /// Voxel sizes: the column norms of the 3x3 part.
    public var spacing: [Double] {
        (0..<3).map { (c: Int) -> Double in
            let x = m[c], y = m[4 + c], z = m[8 + c]
            return (x * x + y * y + z * z).squareRoot()
        }
    }
}

/// A medical image or label: channel-first voxels in C order `[channels, d0, d1, d2]` (the layout of a MONAI
/// `MetaTensor` and of the NumPy arrays in our fixtures), spatial axis `i` being the NIfTI file's i-th axis,
/// plus the voxel-to-RAS affine and what is needed to write a result back on the source grid.
public struct Volume: Sendable {
    /// Spatial shape, 2 or 3 entries.
    public var spatialShape: [Int]
    /// Number of channels (1 for a plain scalar image).
    public var channels: Int
    public var data: VoxelData
    /// Voxel to RAS+ world, for the spatial axes.
    public var affine: Affine
    /// Metadata of the file this volume came from (nil for derived volumes); carried so that a label can be
    /// written back with the source header (qform/sform codes, units, description).
    public var source: SourceHeader?

    public init(spatialShape: [Int], channels: Int = 1, data: VoxelData, affine: Affine, source: SourceHeader? = nil) {
        precondition(spatialShape.count == 2 || spatialShape.count == 3, "2D or 3D volumes only")
        precondition(channels * spatialShape.reduce(1, *) == data.count, "voxel count does not match shape")
        self.spatialShape = spatialShape
        self.channels = channels
        self.data = data
        self.affine = affine
        self.source = source
    }

    /// Like `init`, but throws instead of trapping when the shape does not fit the data (for shapes and buffers
    /// that come from requests, files or networks).
    public init(
        checkingShape spatialShape: [Int], channels: Int = 1, data: VoxelData, affine: Affine,
        source: SourceHeader? = nil
    ) throws {
        guard spatialShape.count == 2 || spatialShape.count == 3 else {
            throw ImagingError("a volume has 2 or 3 spatial dimensions, got \(spatialShape)")
        }
        guard channels >= 1, spatialShape.allSatisfy({ $0 >= 0 }),
            channels * spatialShape.reduce(1, *) == data.count
        else {
            throw ImagingError("shape [\(channels)] + \(spatialShape) does not match \(data.count) voxels")
        }
        self.init(spatialShape: spatialShape, channels: channels, data: data, affine: affine, source: source)
    }

    /// Voxels per channel.
    public var voxelCount: Int { spatialShape.reduce(1, *) }
    /// `[channels] + spatialShape`, the shape of the C-order buffer.
    public var shape: [Int] { [channels] + spatialShape }
    public var spacing: [Double] { Array(affine.spacing.prefix(spatialShape.count)) }
}

/// Header facts of a source image file that a written label should repeat.
public struct SourceHeader: Sendable, Equatable {
    public enum Format: String, Sendable { case nifti1, nifti2, nrrd }
    public var format: Format
    public var qformCode: Int32
    public var sformCode: Int32
    /// NIfTI `xyzt_units`.
    public var xyztUnits: Int32
    public var description: String
    /// The original on-disk datatype, before scaling.
    public var storedType: VoxelType
    public var sclSlope: Double
    public var sclInter: Double
    /// The path the volume was read from, when it came from a file.
    public var path: String?

    public init(
        format: Format, qformCode: Int32 = 1, sformCode: Int32 = 1, xyztUnits: Int32 = 10,
        description: String = "", storedType: VoxelType, sclSlope: Double = 1, sclInter: Double = 0,
        path: String? = nil
    ) {
        self.format = format
        self.qformCode = qformCode
        self.sformCode = sformCode
        self.xyztUnits = xyztUnits
        self.description = description
        self.storedType = storedType
        self.sclSlope = sclSlope
        self.sclInter = sclInter
        self.path = path
    }
}

/// Errors of reading, writing or transforming volumes.
extension Float {
    /// This voxel value as an integer label value, nil when it is NaN, infinite or beyond 32 bits: label files
    /// come from clients, and `Int(_:)` traps on such values.
    public var labelInteger: Int? { isFinite && abs(self) < 2_147_483_648 ? Int(rounded()) : nil }
}

public struct ImagingError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

private struct ToFloat: VoxelVisitor {
    func visit<T: VoxelScalar>(_ values: UnsafeBufferPointer<T>) -> [Float] {
        guard values.count > 0 else { return [] }
        return [Float](unsafeUninitializedCapacity: values.count) { dst, n in
            let d = dst.baseAddress!, s = values.baseAddress!
            Parallel.forChunks(count: values.count) { lo, hi in
                for i in lo..<hi { (d + i).initialize(to: s[i].floatValue) }
            }
            n = values.count
        }
    }
}
