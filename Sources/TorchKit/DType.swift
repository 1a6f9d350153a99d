import CTorch
import TorchCheckpoint

/// Element type of a tensor, named as PyTorch names it.
public enum DType: String, Sendable, CaseIterable {
    case float32, float64, float16, bfloat16, int64, int32, int16, int8, uint8, bool

    /// Bytes per element.
    public var size: Int { StoredDType(self).size }

    public var isFloatingPoint: Bool {
        switch self {
        case .float32, .float64, .float16, .bfloat16: return true
        default: return false
        }
    }

    var code: mlt_dtype {
        switch self {
        case .uint8: return MLT_UINT8
        case .int8: return MLT_INT8
        case .int16: return MLT_INT16
        case .int32: return MLT_INT32
        case .int64: return MLT_INT64
        case .float16: return MLT_FLOAT16
        case .float32: return MLT_FLOAT32
        case .float64: return MLT_FLOAT64
        case .bool: return MLT_BOOL
        case .bfloat16: return MLT_BFLOAT16
        }
    }

    init?(code: mlt_dtype) {
        guard let match = DType.allCases.first(where: { $0.code == code }) else { return nil }
        self = match
    }

    public init(_ stored: StoredDType) {
        switch stored {
        case .float32: self = .float32
        case .float64: self = .float64
        case .float16: self = .float16
        case .bfloat16: self = .bfloat16
        case .int64: self = .int64
        case .int32: self = .int32
        case .int16: self = .int16
        case .int8: self = .int8
        case .uint8: self = .uint8
        case .bool: self = .bool
        }
    }
}

extension StoredDType {
    public init(_ dtype: DType) {
        switch dtype {
        case .float32: self = .float32
        case .float64: self = .float64
        case .float16: self = .float16
        case .bfloat16: self = .bfloat16
        case .int64: self = .int64
        case .int32: self = .int32
        case .int16: self = .int16
        case .int8: self = .int8
        case .uint8: self = .uint8
        case .bool: self = .bool
        }
    }
}

/// Where a tensor lives. CUDA devices exist only when the linked libtorch was built with CUDA
/// (`Torch.cudaIsAvailable`); asking for one otherwise fails with libtorch's error.
public enum Device: Sendable, Hashable, CustomStringConvertible {
    case cpu
    case cuda(Int)

    /// The first CUDA device when libtorch has one, else the CPU.
    public static var best: Device { Torch.cudaIsAvailable ? .cuda(0) : .cpu }

    public var description: String {
        switch self {
        case .cpu: return "cpu"
        case .cuda(let i): return "cuda:\(i)"
        }
    }

    /// Every device the loaded backend offers, CPU first.
    public static var available: [Device] {
        [.cpu] + (Torch.cudaIsAvailable ? (0..<Torch.cudaDeviceCount).map { .cuda($0) } : [])
    }

    /// Parses upstream's device names (`cpu`, `cuda`, `cuda:N`) and checks the backend has that device.
    /// Bare `cuda` is upstream's default name: the first GPU, or the CPU on a CPU-only backend as upstream's
    /// `name_to_device` does (upstream's own batch-inference defaults send it). A GPU named by index that the
    /// backend lacks is refused: the caller answers the client with the message.
    public init(parsing name: String) throws(DeviceError) {
        let device: Device
        if name == "cpu" {
            device = .cpu
        } else if name == "cuda" {
            device = Torch.cudaIsAvailable ? .cuda(0) : .cpu
        } else if name.hasPrefix("cuda:"), case let digits = name.dropFirst(5), (1...4).contains(digits.count),
            digits.allSatisfy({ $0.isASCII && $0.isNumber }), let i = Int(digits)
        {
            device = .cuda(i)
        } else {
            throw DeviceError(message: "device '\(name.prefix(40))' is not a device name (cpu, cuda, cuda:N)")
        }
        let available = Device.available
        guard available.contains(device) else {
            throw DeviceError(message: "device '\(name)' is not available; libtorch \(Torch.versionString) offers: "
                + available.map(\.description).joined(separator: ", "))
        }
        self = device
    }

    var type: mlt_device_type {
        switch self {
        case .cpu: return MLT_CPU
        case .cuda: return MLT_CUDA
        }
    }

    var index: Int32 {
        switch self {
        case .cpu: return 0
        case .cuda(let i): return Int32(truncatingIfNeeded: i)
        }
    }
}

/// A device name that is malformed or names a device the backend does not have.
public struct DeviceError: Error, CustomStringConvertible, Sendable, Equatable {
    public let message: String
    public var description: String { message }
}

/// Swift element types that map one-to-one onto a tensor dtype with the same in-memory layout.
public protocol TensorElement: Sendable {
    static var dtype: DType { get }
}

extension Float: TensorElement { public static var dtype: DType { .float32 } }
extension Double: TensorElement { public static var dtype: DType { .float64 } }
extension Float16: TensorElement { public static var dtype: DType { .float16 } }
extension Int64: TensorElement { public static var dtype: DType { .int64 } }
extension Int32: TensorElement { public static var dtype: DType { .int32 } }
extension Int16: TensorElement { public static var dtype: DType { .int16 } }
extension Int8: TensorElement { public static var dtype: DType { .int8 } }
extension UInt8: TensorElement { public static var dtype: DType { .uint8 } }
extension Bool: TensorElement { public static var dtype: DType { .bool } }
