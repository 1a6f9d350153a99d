import CTorch

/// Mixed precision (`torch.autocast`): inside a scope, convolutions and matrix products on one device type run in
/// a lower-precision dtype while precision-sensitive ops stay in float32, per libtorch's own op lists. Outputs
/// may come back in the lower precision; callers convert what they keep (`to(.float32)`).
public struct Autocast: Sendable, Equatable, CustomStringConvertible {
    /// The device type whose ops are cast; the index does not matter (autocast is per device type).
    public var device: Device
    /// `float16` or `bfloat16`.
    public var dtype: DType

    public init(device: Device, dtype: DType) {
        self.device = device
        self.dtype = dtype
    }

    public var description: String { "\(dtype) autocast on \(device)" }

    /// Whether the loaded backend can autocast to `dtype` on `device`: CUDA with float16 or bfloat16 (on a CUDA
    /// backend), the CPU with bfloat16.
    public static func isSupported(on device: Device, dtype: DType) -> Bool {
        mlt_autocast_supported(device.type, dtype.code) != 0
    }

    /// Whether autocast is on for `device`'s type on the calling thread.
    public static func isEnabled(on device: Device) -> Bool { mlt_autocast_is_enabled(device.type) != 0 }

    /// Runs `body` with autocast on. libtorch keeps the state per OS thread, like grad mode: `body` is synchronous,
    /// so it runs on the thread that set it, and the previous state is restored (and the cast cache cleared
    /// when this is the outermost scope) however `body` ends.
    public func run<T>(_ body: () throws -> T) throws -> T {
        var previousEnabled: Int32 = 0
        var previousDType = MLT_FLOAT32
        try checked("Autocast") { mlt_autocast_enter(device.type, dtype.code, &previousEnabled, &previousDType, $0) }
        defer { mlt_autocast_exit(device.type, previousEnabled, previousDType) }
        return try body()
    }
}

extension Optional where Wrapped == Autocast {
    /// Runs `body` under the autocast when there is one, else as it is.
    public func run<T>(_ body: () throws -> T) throws -> T {
        switch self {
        case .some(let a): return try a.run(body)
        case .none: return try body()
        }
    }
}
