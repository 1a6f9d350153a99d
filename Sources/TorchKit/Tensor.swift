import CTorch
import TorchCheckpoint

/// A libtorch tensor. Owns one shim handle, released when the object goes away.
///
/// Operations return new tensors and throw `TorchError` with libtorch's message when libtorch refuses them.
/// A `Tensor` may be passed between tasks; libtorch permits concurrent reads, but in-place updates
/// (`copy(from:)`, optimizer steps) must not race with other use of the same tensor.
public final class Tensor: @unchecked Sendable {
    let handle: mlt_tensor

    init(owning handle: mlt_tensor) { self.handle = handle }

    deinit { mlt_tensor_free(handle) }

    // MARK: Metadata

    public var shape: [Int] {
        let n = mlt_tensor_ndim(handle)
        var sizes = [Int64](repeating: 0, count: n)
        sizes.withUnsafeMutableBufferPointer { if let base = $0.baseAddress { mlt_tensor_sizes(handle, base) } }
        return sizes.map { Int($0) }
    }

    public var rank: Int { Int(mlt_tensor_ndim(handle)) }

    /// Number of elements.
    public var count: Int { Int(mlt_tensor_numel(handle)) }

    public var dtype: DType {
        // The shim only produces dtypes in `DType`; an unknown code would mean a libtorch/shim mismatch.
        DType(code: mlt_tensor_dtype(handle)) ?? .float32
    }

    public var device: Device {
        var type = MLT_CPU
        var index: Int32 = 0
        mlt_tensor_device(handle, &type, &index)
        return type == MLT_CUDA ? .cuda(Int(index)) : .cpu
    }

    // MARK: Host data

    /// Copies `values` (C order) into a new CPU tensor of `T`'s dtype.
    public convenience init<T: TensorElement>(_ values: [T], shape: [Int]) throws {
        let handle = try values.withUnsafeBytes { raw in
            try Tensor.makeHandle(raw, shape: shape, dtype: T.dtype, operation: "Tensor.init(values:shape:)")
        }
        self.init(owning: handle)
    }

    /// A 1-D tensor holding `values`.
    public convenience init<T: TensorElement>(_ values: [T]) throws {
        try self.init(values, shape: [values.count])
    }

    /// Copies a checkpoint tensor into a new CPU tensor. Assumes a little-endian host, as every platform
    /// Swift and libtorch share is.
    public convenience init(_ stored: StoredTensor) throws {
        let handle = try stored.bytes.withUnsafeBytes { raw in
            try Tensor.makeHandle(raw, shape: stored.shape, dtype: DType(stored.dtype), operation: "Tensor.init(stored:)")
        }
        self.init(owning: handle)
    }

    private static func makeHandle(_ raw: UnsafeRawBufferPointer, shape: [Int], dtype: DType, operation: String) throws
        -> mlt_tensor
    {
        if let bad = shape.first(where: { $0 < 0 }) {
            throw TorchError(operation: operation, message: "negative dimension \(bad) in shape \(shape)")
        }
        var out: mlt_tensor?
        try withInt64s(shape) { dims, n in
            try checked(operation) { mlt_tensor_from_data(raw.baseAddress, raw.count, dims, n, dtype.code, &out, $0) }
        }
        guard let out else { throw TorchError(operation: operation, message: "libtorch returned no tensor") }
        return out
    }

    /// The elements in C order, copied to the host. `T` must match `dtype`.
    public func array<T: TensorElement>(of type: T.Type = T.self) throws -> [T] {
        guard T.dtype == dtype else {
            throw TorchError(operation: "Tensor.array", message: "tensor is \(dtype), asked for \(T.dtype)")
        }
        let n = count
        return try [T](unsafeUninitializedCapacity: n) { buffer, initialized in
            try checked("Tensor.array") {
                mlt_tensor_copy_to_host(handle, UnsafeMutableRawPointer(buffer.baseAddress), n * MemoryLayout<T>.stride, $0)
            }
            initialized = n
        }
    }

    /// The elements converted to Float32.
    public func floats() throws -> [Float] {
        try (dtype == .float32 ? self : to(.float32)).array(of: Float.self)
    }

    /// The single element of a one-element tensor, as a Double.
    public func item() throws -> Double {
        var value = 0.0
        try checked("Tensor.item") { mlt_tensor_item(handle, &value, $0) }
        return value
    }

    /// Dtype, shape and C-order little-endian bytes, as checkpoints store them.
    public func stored() throws -> StoredTensor {
        let n = count * dtype.size
        let bytes = try [UInt8](unsafeUninitializedCapacity: n) { buffer, initialized in
            try checked("Tensor.stored") { mlt_tensor_copy_to_host(handle, buffer.baseAddress, n, $0) }
            initialized = n
        }
        return StoredTensor(dtype: StoredDType(dtype), shape: shape, bytes: bytes)
    }

    // MARK: Factories

    public static func zeros(_ shape: [Int], dtype: DType = .float32, device: Device = .cpu) throws -> Tensor {
        try withInt64s(shape) { d, n in
            try producing("zeros") { mlt_zeros(d, n, dtype.code, device.type, device.index, $0, $1) }
        }
    }

    public static func ones(_ shape: [Int], dtype: DType = .float32, device: Device = .cpu) throws -> Tensor {
        try withInt64s(shape) { d, n in
            try producing("ones") { mlt_ones(d, n, dtype.code, device.type, device.index, $0, $1) }
        }
    }

    public static func full(_ shape: [Int], value: Double, dtype: DType = .float32, device: Device = .cpu) throws
        -> Tensor
    {
        try withInt64s(shape) { d, n in
            try producing("full") { mlt_full(d, n, value, dtype.code, device.type, device.index, $0, $1) }
        }
    }

    /// Standard normal samples from the global generator (`Torch.manualSeed`).
    public static func randn(_ shape: [Int], dtype: DType = .float32, device: Device = .cpu) throws -> Tensor {
        try withInt64s(shape) { d, n in
            try producing("randn") { mlt_randn(d, n, dtype.code, device.type, device.index, $0, $1) }
        }
    }

    /// Uniform [0, 1) samples from the global generator (`Torch.manualSeed`).
    public static func rand(_ shape: [Int], dtype: DType = .float32, device: Device = .cpu) throws -> Tensor {
        try withInt64s(shape) { d, n in
            try producing("rand") { mlt_rand(d, n, dtype.code, device.type, device.index, $0, $1) }
        }
    }

    public static func arange(_ start: Double = 0, _ end: Double, step: Double = 1, dtype: DType = .float32,
                              device: Device = .cpu) throws -> Tensor
    {
        try producing("arange") { mlt_arange(start, end, step, dtype.code, device.type, device.index, $0, $1) }
    }

    /// A 0-dim tensor.
    public static func scalar(_ value: Double, dtype: DType = .float32, device: Device = .cpu) throws -> Tensor {
        try full([], value: value, dtype: dtype, device: device)
    }

    // MARK: Layout and conversion

    public func clone() throws -> Tensor { try producing("clone") { mlt_tensor_clone(handle, $0, $1) } }

    public func contiguous() throws -> Tensor { try producing("contiguous") { mlt_tensor_contiguous(handle, $0, $1) } }

    /// The elements laid out channels-last (4-d: NHWC, 5-d: NDHWC; shape and indexing unchanged) or, when false,
    /// contiguous. Other ranks throw.
    public func contiguous(channelsLast: Bool) throws -> Tensor {
        try producing("contiguous") { mlt_tensor_contiguous_format(handle, channelsLast ? 1 : 0, $0, $1) }
    }

    /// Same elements in a new shape; one dimension may be -1.
    public func reshape(_ shape: [Int]) throws -> Tensor {
        try withInt64s(shape) { d, n in try producing("reshape") { mlt_tensor_reshape(handle, d, n, $0, $1) } }
    }

    /// Like `reshape` but never copies; fails for incompatible strides.
    public func view(_ shape: [Int]) throws -> Tensor {
        try withInt64s(shape) { d, n in try producing("view") { mlt_tensor_view(handle, d, n, $0, $1) } }
    }

    public func permute(_ dims: [Int]) throws -> Tensor {
        try withInt64s(dims) { d, n in try producing("permute") { mlt_tensor_permute(handle, d, n, $0, $1) } }
    }

    public func expand(_ shape: [Int]) throws -> Tensor {
        try withInt64s(shape) { d, n in try producing("expand") { mlt_tensor_expand(handle, d, n, $0, $1) } }
    }

    public func flip(_ dims: [Int]) throws -> Tensor {
        try withInt64s(dims) { d, n in try producing("flip") { mlt_tensor_flip(handle, d, n, $0, $1) } }
    }

    /// Elements `start..<end` (by `step`) along `dim`, as a view. Negative indices count from the end.
    public func slice(dim: Int, start: Int, end: Int, step: Int = 1) throws -> Tensor {
        try producing("slice") {
            mlt_tensor_slice(handle, Int64(dim), Int64(start), Int64(end), Int64(step), $0, $1)
        }
    }

    public func narrow(dim: Int, start: Int, length: Int) throws -> Tensor {
        try producing("narrow") { mlt_tensor_narrow(handle, Int64(dim), Int64(start), Int64(length), $0, $1) }
    }

    public func squeeze(dim: Int) throws -> Tensor {
        try producing("squeeze") { mlt_tensor_squeeze(handle, Int64(dim), $0, $1) }
    }

    public func unsqueeze(dim: Int) throws -> Tensor {
        try producing("unsqueeze") { mlt_tensor_unsqueeze(handle, Int64(dim), $0, $1) }
    }

    public func to(_ dtype: DType) throws -> Tensor { try to(dtype: dtype, device: device) }

    public func to(_ device: Device) throws -> Tensor { try to(dtype: dtype, device: device) }

    public func to(dtype: DType, device: Device) throws -> Tensor {
        try producing("to") { mlt_tensor_to(handle, dtype.code, device.type, device.index, $0, $1) }
    }

    public static func cat(_ tensors: [Tensor], dim: Int) throws -> Tensor {
        try withHandles(tensors) { h, n in try producing("cat") { mlt_cat(h, n, Int64(dim), $0, $1) } }
    }

    public static func stack(_ tensors: [Tensor], dim: Int) throws -> Tensor {
        try withHandles(tensors) { h, n in try producing("stack") { mlt_stack(h, n, Int64(dim), $0, $1) } }
    }

    // MARK: In-place updates

    /// Overwrites the elements with `source`'s (same shape; dtype and device are converted).
    public func copy(from source: Tensor) throws {
        try checked("copy") { mlt_tensor_copy_(handle, source.handle, $0) }
    }

    public func fill(_ value: Double) throws { try checked("fill") { mlt_tensor_fill_(handle, value, $0) } }

    public func addInPlace(_ value: Double) throws {
        try checked("addInPlace") { mlt_tensor_add_scalar_(handle, value, $0) }
    }

    /// `self += other` (broadcast to this tensor's shape, in this tensor's dtype).
    public func addInPlace(_ other: Tensor) throws {
        try checked("addInPlace") { mlt_tensor_add_(handle, other.handle, $0) }
    }

    /// Refills with uniform samples in [low, high) from the global generator.
    public func uniformInPlace(low: Double, high: Double) throws {
        try checked("uniformInPlace") { mlt_tensor_uniform_(handle, low, high, $0) }
    }

    public func normalInPlace(mean: Double = 0, std: Double = 1) throws {
        try checked("normalInPlace") { mlt_tensor_normal_(handle, mean, std, $0) }
    }

    // MARK: Autograd

    /// Whether autograd records operations on this tensor (settable on leaves only).
    public var requiresGrad: Bool { mlt_tensor_requires_grad(handle) != 0 }

    public func setRequiresGrad(_ flag: Bool) throws {
        try checked("setRequiresGrad") { mlt_tensor_set_requires_grad(handle, flag ? 1 : 0, $0) }
    }

    /// Backpropagates from this scalar, accumulating into the leaves' `grad`.
    public func backward(gradient: Tensor? = nil) throws {
        try checked("backward") { mlt_tensor_backward(handle, gradient?.handle, $0) }
    }

    /// The accumulated gradient, or nil when none has been computed since the last `zeroGrad`.
    public func grad() throws -> Tensor? {
        var out: mlt_tensor?
        try checked("grad") { mlt_tensor_grad(handle, &out, $0) }
        return out.map { Tensor(owning: $0) }
    }

    /// Drops the accumulated gradient.
    public func zeroGrad() throws { try checked("zeroGrad") { mlt_tensor_zero_grad(handle, $0) } }

    /// The same data, cut off from the autograd graph.
    public func detach() throws -> Tensor { try producing("detach") { mlt_tensor_detach(handle, $0, $1) } }

    /// Another handle to this very tensor (shared storage and autograd identity).
    func alias() throws -> Tensor { try producing("alias") { mlt_tensor_shallow_copy(handle, $0, $1) } }
}

extension Tensor: CustomStringConvertible {
    public var description: String { "Tensor(\(dtype), shape: \(shape), device: \(device))" }
}
