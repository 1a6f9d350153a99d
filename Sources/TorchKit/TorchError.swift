import CTorch

/// A libtorch call failed, or TorchKit refused its arguments before calling libtorch.
public struct TorchError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The TorchKit operation that failed, e.g. `conv` or `ScriptModule.load`.
    public let operation: String
    /// libtorch's message (without its C++ backtrace when libtorch provides one), or TorchKit's own.
    public let message: String
    /// Whether libtorch failed because an allocation failed (CUDA out of memory, the CPU allocator refused):
    /// the backend's `MLT_OUT_OF_MEMORY`. The same work may succeed with less on the device.
    public let isOutOfMemory: Bool

    public init(operation: String, message: String, isOutOfMemory: Bool = false) {
        self.operation = operation
        self.message = message
        self.isOutOfMemory = isOutOfMemory
    }

    public var description: String { "\(operation): \(message)" }
}

/// `load(stateDict:strict:)` found keys or shapes that do not line up with the module.
public struct StateDictError: Error, CustomStringConvertible, Sendable, Equatable {
    /// Names the module has and the state dict lacks (only reported in strict mode).
    public var missingKeys: [String]
    /// Names the state dict has and the module lacks (only reported in strict mode).
    public var unexpectedKeys: [String]
    /// Names present in both with different shapes (reported in every mode, as PyTorch does).
    public var shapeMismatches: [ShapeMismatch]

    public struct ShapeMismatch: Sendable, Equatable {
        public var name: String
        public var expected: [Int]
        public var found: [Int]
    }

    public var description: String {
        var parts: [String] = []
        if !missingKeys.isEmpty { parts.append("missing keys: \(missingKeys.joined(separator: ", "))") }
        if !unexpectedKeys.isEmpty { parts.append("unexpected keys: \(unexpectedKeys.joined(separator: ", "))") }
        for m in shapeMismatches {
            parts.append("size mismatch for \(m.name): checkpoint has \(m.found), module has \(m.expected)")
        }
        return "error loading state dict: " + parts.joined(separator: "; ")
    }
}

typealias ErrorSlot = UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>

/// Runs one shim call and turns a failed status into a `TorchError` carrying the shim's message.
@inline(__always)
func checked(_ operation: String, _ body: (ErrorSlot) -> mlt_status) throws {
    var err: UnsafeMutablePointer<CChar>?
    let status = body(&err)
    guard status != MLT_OK else { return }
    var message = "libtorch reported an error without a message"
    if let err {
        message = String(cString: err)
        mlt_error_free(err)
    }
    throw TorchError(operation: operation, message: message, isOutOfMemory: status == MLT_OUT_OF_MEMORY)
}

/// Runs one shim call that produces a tensor and takes ownership of it.
@inline(__always)
func producing(_ operation: String, _ body: (UnsafeMutablePointer<mlt_tensor?>, ErrorSlot) -> mlt_status) throws
    -> Tensor
{
    var out: mlt_tensor?
    try checked(operation) { body(&out, $0) }
    guard let handle = out else { throw TorchError(operation: operation, message: "libtorch returned no tensor") }
    return Tensor(owning: handle)
}

func withInt64s<R>(_ values: [Int], _ body: (UnsafePointer<Int64>?, Int) throws -> R) rethrows -> R {
    let converted = values.map { Int64($0) }
    return try converted.withUnsafeBufferPointer { try body($0.baseAddress, $0.count) }
}

/// Keeps `tensors` alive while their handles are in use by `body`.
func withHandles<R>(_ tensors: [Tensor], _ body: (UnsafePointer<mlt_tensor?>?, Int) throws -> R) rethrows -> R {
    let handles: [mlt_tensor?] = tensors.map { $0.handle }
    return try withExtendedLifetime(tensors) {
        try handles.withUnsafeBufferPointer { try body($0.baseAddress, $0.count) }
    }
}
