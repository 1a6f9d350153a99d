/// Element types a checkpoint tensor can hold, named as PyTorch names them.
public enum StoredDType: String, Sendable, CaseIterable {
    case float32, float64, float16, bfloat16, int64, int32, int16, int8, uint8, bool

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .float64, .int64: return 8
        case .float32, .int32: return 4
        case .float16, .bfloat16, .int16: return 2
        case .int8, .uint8, .bool: return 1
        }
    }
}

/// A tensor as it sits in a checkpoint: dtype, shape and its elements as contiguous C-order little-endian
/// bytes (strided storages are made contiguous on read).
public struct StoredTensor: Sendable, Equatable {
    public var dtype: StoredDType
    public var shape: [Int]
    public var bytes: [UInt8]

    public init(dtype: StoredDType, shape: [Int], bytes: [UInt8]) {
        precondition(shape.reduce(1, *) * dtype.size == bytes.count, "byte count does not match shape and dtype")
        self.dtype = dtype
        self.shape = shape
        self.bytes = bytes
    }

    public var elementCount: Int { shape.reduce(1, *) }
}
