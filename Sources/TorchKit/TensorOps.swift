import CTorch

// MARK: Elementwise

extension Tensor {
    private func unary(_ op: mlt_unary_op, _ name: String) throws -> Tensor {
        try producing(name) { mlt_unary(op, handle, $0, $1) }
    }

    private func binary(_ op: mlt_binary_op, _ other: Tensor, _ name: String) throws -> Tensor {
        try producing(name) { mlt_binary(op, handle, other.handle, $0, $1) }
    }

    private func binary(_ op: mlt_binary_op, _ scalar: Double, _ name: String) throws -> Tensor {
        try producing(name) { mlt_binary_scalar(op, handle, scalar, $0, $1) }
    }

    public func neg() throws -> Tensor { try unary(MLT_NEG, "neg") }
    public func abs() throws -> Tensor { try unary(MLT_ABS, "abs") }
    public func exp() throws -> Tensor { try unary(MLT_EXP, "exp") }
    public func log() throws -> Tensor { try unary(MLT_LOG, "log") }
    public func sqrt() throws -> Tensor { try unary(MLT_SQRT, "sqrt") }
    public func rsqrt() throws -> Tensor { try unary(MLT_RSQRT, "rsqrt") }
    public func sigmoid() throws -> Tensor { try unary(MLT_SIGMOID, "sigmoid") }
    public func tanh() throws -> Tensor { try unary(MLT_TANH, "tanh") }
    public func relu() throws -> Tensor { try unary(MLT_RELU, "relu") }
    public func floor() throws -> Tensor { try unary(MLT_FLOOR, "floor") }
    public func ceil() throws -> Tensor { try unary(MLT_CEIL, "ceil") }
    public func round() throws -> Tensor { try unary(MLT_ROUND, "round") }
    public func sign() throws -> Tensor { try unary(MLT_SIGN, "sign") }
    public func reciprocal() throws -> Tensor { try unary(MLT_RECIPROCAL, "reciprocal") }
    public func logicalNot() throws -> Tensor { try unary(MLT_LOGICAL_NOT, "logicalNot") }
    public func square() throws -> Tensor { try unary(MLT_SQUARE, "square") }
    public func isNaN() throws -> Tensor { try unary(MLT_ISNAN, "isNaN") }
    /// Exact (erf-based) GELU, `torch.nn.GELU()`'s default.
    public func gelu() throws -> Tensor { try unary(MLT_GELU, "gelu") }

    public func add(_ other: Tensor) throws -> Tensor { try binary(MLT_ADD, other, "add") }
    public func sub(_ other: Tensor) throws -> Tensor { try binary(MLT_SUB, other, "sub") }
    public func mul(_ other: Tensor) throws -> Tensor { try binary(MLT_MUL, other, "mul") }
    public func div(_ other: Tensor) throws -> Tensor { try binary(MLT_DIV, other, "div") }
    public func pow(_ other: Tensor) throws -> Tensor { try binary(MLT_POW, other, "pow") }
    public func maximum(_ other: Tensor) throws -> Tensor { try binary(MLT_MAXIMUM, other, "maximum") }
    public func minimum(_ other: Tensor) throws -> Tensor { try binary(MLT_MINIMUM, other, "minimum") }
    public func eq(_ other: Tensor) throws -> Tensor { try binary(MLT_EQ, other, "eq") }
    public func ne(_ other: Tensor) throws -> Tensor { try binary(MLT_NE, other, "ne") }
    public func lt(_ other: Tensor) throws -> Tensor { try binary(MLT_LT, other, "lt") }
    public func le(_ other: Tensor) throws -> Tensor { try binary(MLT_LE, other, "le") }
    public func gt(_ other: Tensor) throws -> Tensor { try binary(MLT_GT, other, "gt") }
    public func ge(_ other: Tensor) throws -> Tensor { try binary(MLT_GE, other, "ge") }
    public func matmul(_ other: Tensor) throws -> Tensor { try binary(MLT_MATMUL, other, "matmul") }
    public func logicalAnd(_ other: Tensor) throws -> Tensor { try binary(MLT_LOGICAL_AND, other, "logicalAnd") }
    public func logicalOr(_ other: Tensor) throws -> Tensor { try binary(MLT_LOGICAL_OR, other, "logicalOr") }
    public func remainder(_ other: Tensor) throws -> Tensor { try binary(MLT_REMAINDER, other, "remainder") }

    public func add(_ s: Double) throws -> Tensor { try binary(MLT_ADD, s, "add") }
    public func sub(_ s: Double) throws -> Tensor { try binary(MLT_SUB, s, "sub") }
    public func mul(_ s: Double) throws -> Tensor { try binary(MLT_MUL, s, "mul") }
    public func div(_ s: Double) throws -> Tensor { try binary(MLT_DIV, s, "div") }
    public func pow(_ s: Double) throws -> Tensor { try binary(MLT_POW, s, "pow") }
    public func maximum(_ s: Double) throws -> Tensor { try binary(MLT_MAXIMUM, s, "maximum") }
    public func minimum(_ s: Double) throws -> Tensor { try binary(MLT_MINIMUM, s, "minimum") }
    public func eq(_ s: Double) throws -> Tensor { try binary(MLT_EQ, s, "eq") }
    public func ne(_ s: Double) throws -> Tensor { try binary(MLT_NE, s, "ne") }
    public func lt(_ s: Double) throws -> Tensor { try binary(MLT_LT, s, "lt") }
    public func le(_ s: Double) throws -> Tensor { try binary(MLT_LE, s, "le") }
    public func gt(_ s: Double) throws -> Tensor { try binary(MLT_GT, s, "gt") }
    public func ge(_ s: Double) throws -> Tensor { try binary(MLT_GE, s, "ge") }
    public func remainder(_ s: Double) throws -> Tensor { try binary(MLT_REMAINDER, s, "remainder") }

    /// `s - self`.
    public func reverseSub(_ s: Double) throws -> Tensor {
        try producing("reverseSub") { mlt_scalar_binary(MLT_SUB, s, handle, $0, $1) }
    }

    /// `s / self`.
    public func reverseDiv(_ s: Double) throws -> Tensor {
        try producing("reverseDiv") { mlt_scalar_binary(MLT_DIV, s, handle, $0, $1) }
    }

    public func clamp(min: Double? = nil, max: Double? = nil) throws -> Tensor {
        try producing("clamp") {
            mlt_clamp(handle, min == nil ? 0 : 1, min ?? 0, max == nil ? 0 : 1, max ?? 0, $0, $1)
        }
    }

    /// Elements of `a` where `condition` holds, else of `b` (broadcasting).
    public static func `where`(_ condition: Tensor, _ a: Tensor, _ b: Tensor) throws -> Tensor {
        try producing("where") { mlt_where(condition.handle, a.handle, b.handle, $0, $1) }
    }

    public static func + (a: Tensor, b: Tensor) throws -> Tensor { try a.add(b) }
    public static func - (a: Tensor, b: Tensor) throws -> Tensor { try a.sub(b) }
    public static func * (a: Tensor, b: Tensor) throws -> Tensor { try a.mul(b) }
    public static func / (a: Tensor, b: Tensor) throws -> Tensor { try a.div(b) }
    public static func + (a: Tensor, s: Double) throws -> Tensor { try a.add(s) }
    public static func - (a: Tensor, s: Double) throws -> Tensor { try a.sub(s) }
    public static func * (a: Tensor, s: Double) throws -> Tensor { try a.mul(s) }
    public static func / (a: Tensor, s: Double) throws -> Tensor { try a.div(s) }
    public static func + (s: Double, a: Tensor) throws -> Tensor { try a.add(s) }
    public static func - (s: Double, a: Tensor) throws -> Tensor { try a.reverseSub(s) }
    public static func * (s: Double, a: Tensor) throws -> Tensor { try a.mul(s) }
    public static func / (s: Double, a: Tensor) throws -> Tensor { try a.reverseDiv(s) }
    public static prefix func - (a: Tensor) throws -> Tensor { try a.neg() }
}

// MARK: Reductions

extension Tensor {
    private func reduce(_ op: mlt_reduce_op, _ dims: [Int], _ keepDim: Bool, _ name: String) throws -> Tensor {
        try withInt64s(dims) { d, n in
            try producing(name) { mlt_reduce(op, handle, d, n, keepDim ? 1 : 0, $0, $1) }
        }
    }

    /// Sum over `dims` (all elements when empty).
    public func sum(dims: [Int] = [], keepDim: Bool = false) throws -> Tensor { try reduce(MLT_SUM, dims, keepDim, "sum") }
    /// Mean over `dims` (all elements when empty).
    public func mean(dims: [Int] = [], keepDim: Bool = false) throws -> Tensor {
        try reduce(MLT_MEAN, dims, keepDim, "mean")
    }
    /// Maximum over `dims` (all elements when empty).
    public func max(dims: [Int] = [], keepDim: Bool = false) throws -> Tensor { try reduce(MLT_AMAX, dims, keepDim, "max") }
    /// Minimum over `dims` (all elements when empty).
    public func min(dims: [Int] = [], keepDim: Bool = false) throws -> Tensor { try reduce(MLT_AMIN, dims, keepDim, "min") }
    /// Product over one dim, or all elements when `dim` is nil.
    public func prod(dim: Int? = nil, keepDim: Bool = false) throws -> Tensor {
        try reduce(MLT_PROD, dim.map { [$0] } ?? [], keepDim, "prod")
    }

    /// Indices (int64) of the maxima along `dim`, or of the flattened tensor when `dim` is nil.
    public func argmax(dim: Int? = nil, keepDim: Bool = false) throws -> Tensor {
        try producing("argmax") { mlt_argmax(handle, Int64(dim ?? 0), keepDim ? 1 : 0, dim == nil ? 1 : 0, $0, $1) }
    }

    /// The entries along `dim` at `index` (a 1-D int64 tensor), as `torch.index_select`; gradients flow to `self`.
    public func indexSelect(dim: Int, index: Tensor) throws -> Tensor {
        try producing("indexSelect") { mlt_index_select(handle, Int64(dim), index.handle, $0, $1) }
    }

    /// `torch.roll` along one dim: entries shifted by `shift` (negative: towards the start), wrapping around.
    public func roll(shift: Int, dim: Int) throws -> Tensor {
        let shape = self.shape
        let d = dim < 0 ? dim + shape.count : dim
        guard shape.indices.contains(d) else {
            throw TorchError(operation: "roll", message: "dim \(dim) out of range for rank \(shape.count)")
        }
        let n = shape[d]
        guard n > 0 else { return self }
        let s = ((shift % n) + n) % n
        guard s != 0 else { return self }
        return try Tensor.cat([narrow(dim: d, start: n - s, length: s), narrow(dim: d, start: 0, length: n - s)], dim: d)
    }

    public func softmax(dim: Int) throws -> Tensor { try producing("softmax") { mlt_softmax(handle, Int64(dim), $0, $1) } }

    public func logSoftmax(dim: Int) throws -> Tensor {
        try producing("logSoftmax") { mlt_log_softmax(handle, Int64(dim), $0, $1) }
    }

    /// One-hot encoding of an integer tensor with a trailing class dim (int64), as `F.one_hot`.
    /// `numClasses` -1 infers it from the largest value.
    public func oneHot(numClasses: Int = -1) throws -> Tensor {
        try producing("oneHot") { mlt_one_hot(handle, Int64(numClasses), $0, $1) }
    }
}

// MARK: Neural-network functions

/// Interpolation modes of `torch.nn.functional.interpolate`.
public enum InterpolationMode: Sendable {
    case nearest, linear, bilinear, bicubic, trilinear, area, nearestExact

    var code: mlt_interp_mode {
        switch self {
        case .nearest: return MLT_INTERP_NEAREST
        case .linear: return MLT_INTERP_LINEAR
        case .bilinear: return MLT_INTERP_BILINEAR
        case .bicubic: return MLT_INTERP_BICUBIC
        case .trilinear: return MLT_INTERP_TRILINEAR
        case .area: return MLT_INTERP_AREA
        case .nearestExact: return MLT_INTERP_NEAREST_EXACT
        }
    }
}

/// Padding modes of `torch.nn.functional.pad`.
public enum PaddingMode: Sendable {
    case constant(Double), reflect, replicate, circular
}

/// `grid_sample`'s sampling and border handling.
public enum GridSampleMode: Int32, Sendable { case bilinear = 0, nearest = 1, bicubic = 2 }
public enum GridSamplePadding: Int32, Sendable { case zeros = 0, border = 1, reflection = 2 }

extension Tensor {
    /// Convolution (N-d from `weight`'s rank), or transposed convolution. Per-dim parameters have one value per
    /// spatial dim. `outputPadding` only applies to transposed convolution.
    public func conv(weight: Tensor, bias: Tensor?, stride: [Int], padding: [Int], dilation: [Int],
                     groups: Int = 1, transposed: Bool = false, outputPadding: [Int]? = nil) throws -> Tensor
    {
        try withConvGeometry("conv", stride: stride, padding: padding, dilation: dilation,
                             outputPadding: outputPadding) { s, p, d, o, n in
            try producing("conv") { out, err in
                mlt_convolution(handle, weight.handle, bias?.handle, s, p, d, o, n, transposed ? 1 : 0, Int64(groups),
                                out, err)
            }
        }
    }

    /// Whether the backend has oneDNN's fused convolution + leaky ReLU (`convLeakyRelu`), for transposed or plain
    /// convolutions: libtorch 2.x builds with mkldnn.
    public static func hasFusedConvLeakyRelu(transposed: Bool) -> Bool {
        mlt_convolution_leaky_relu_available(transposed ? 1 : 0) != 0
    }

    /// `conv(...).leakyRelu(slope:)` as one oneDNN primitive (`mkldnn::_convolution_pointwise`): float32 CPU
    /// tensors, no autograd, only where `hasFusedConvLeakyRelu(transposed:)`.
    public func convLeakyRelu(weight: Tensor, bias: Tensor?, stride: [Int], padding: [Int], dilation: [Int],
                              groups: Int = 1, transposed: Bool = false, outputPadding: [Int]? = nil,
                              slope: Double) throws -> Tensor
    {
        try withConvGeometry("convLeakyRelu", stride: stride, padding: padding, dilation: dilation,
                             outputPadding: outputPadding) { s, p, d, o, n in
            try producing("convLeakyRelu") { out, err in
                mlt_convolution_leaky_relu(handle, weight.handle, bias?.handle, s, p, d, o, n, transposed ? 1 : 0,
                                           Int64(groups), slope, out, err)
            }
        }
    }

    /// The most input and output channels `convSmall` takes.
    public static let smallConvChannels = Int(MLT_SMALL_CONV_CHANNELS)

    /// A 2-d or 3-d convolution with stride 1, dilation 1 and one group, computed by the backend's own loops
    /// instead of oneDNN: for float32 CPU tensors with at most `smallConvChannels` channels in and out, which
    /// oneDNN pads to blocks of 8 or 16 (MONAI's UNet's last 2 -> 2 convolution at 146x146x129: 66 ms with
    /// libtorch 1.13 and 27-36 ms with 2.13 against 21 ms, 2 threads). No autograd. The output is contiguous.
    public func convSmall(weight: Tensor, bias: Tensor?, padding: [Int]) throws -> Tensor {
        try withInt64s(padding) { p, n in
            try producing("convSmall") { out, err in
                mlt_convolution_small(handle, weight.handle, bias?.handle, p, n, out, err)
            }
        }
    }

    /// Checks that a convolution's per-dim parameters have one value per spatial dim each (`stride`'s count) and
    /// hands them to `body` as int64 arrays, `outputPadding` as nil when absent, with that count.
    private func withConvGeometry<R>(
        _ operation: String, stride: [Int], padding: [Int], dilation: [Int], outputPadding: [Int]?,
        _ body: (_ stride: UnsafePointer<Int64>?, _ padding: UnsafePointer<Int64>?, _ dilation: UnsafePointer<Int64>?,
                 _ outputPadding: UnsafePointer<Int64>?, _ spatialDims: Int) throws -> R
    ) throws -> R {
        let n = stride.count
        guard padding.count == n, dilation.count == n, outputPadding.map({ $0.count == n }) ?? true else {
            throw TorchError(operation: operation, message: "stride, padding, dilation and output padding must have "
                + "one value per spatial dim (\(stride), \(padding), \(dilation), \(outputPadding ?? []))")
        }
        return try withInt64s(stride) { s, _ in
            try withInt64s(padding) { p, _ in
                try withInt64s(dilation) { d, _ in
                    guard let outputPadding else { return try body(s, p, d, nil, n) }
                    return try withInt64s(outputPadding) { o, _ in try body(s, p, d, o, n) }
                }
            }
        }
    }

    /// Batch normalization; in training the running stats (when given) are updated in place.
    public func batchNorm(weight: Tensor?, bias: Tensor?, runningMean: Tensor?, runningVar: Tensor?, training: Bool,
                          momentum: Double, eps: Double) throws -> Tensor
    {
        try producing("batchNorm") {
            mlt_batch_norm(handle, weight?.handle, bias?.handle, runningMean?.handle, runningVar?.handle,
                           training ? 1 : 0, momentum, eps, $0, $1)
        }
    }

    /// Instance normalization; with `useInputStats` the running stats (when given) are updated in place.
    public func instanceNorm(weight: Tensor?, bias: Tensor?, runningMean: Tensor?, runningVar: Tensor?,
                             useInputStats: Bool, momentum: Double, eps: Double) throws -> Tensor
    {
        try producing("instanceNorm") {
            mlt_instance_norm(handle, weight?.handle, bias?.handle, runningMean?.handle, runningVar?.handle,
                              useInputStats ? 1 : 0, momentum, eps, $0, $1)
        }
    }

    public func groupNorm(groups: Int, weight: Tensor?, bias: Tensor?, eps: Double) throws -> Tensor {
        try producing("groupNorm") { mlt_group_norm(handle, Int64(groups), weight?.handle, bias?.handle, eps, $0, $1) }
    }

    public func layerNorm(normalizedShape: [Int], weight: Tensor?, bias: Tensor?, eps: Double) throws -> Tensor {
        try withInt64s(normalizedShape) { s, n in
            try producing("layerNorm") { mlt_layer_norm(handle, s, n, weight?.handle, bias?.handle, eps, $0, $1) }
        }
    }

    public func leakyRelu(slope: Double = 0.01) throws -> Tensor {
        try producing("leakyRelu") { mlt_leaky_relu(handle, slope, $0, $1) }
    }

    /// `leakyRelu(slope:)` in place.
    public func leakyReluInPlace(slope: Double) throws {
        try checked("leakyReluInPlace") { mlt_leaky_relu_(handle, slope, $0) }
    }

    public func prelu(weight: Tensor) throws -> Tensor {
        try producing("prelu") { mlt_prelu(handle, weight.handle, $0, $1) }
    }

    public func elu(alpha: Double = 1) throws -> Tensor { try producing("elu") { mlt_elu(handle, alpha, $0, $1) } }

    /// Zeroes elements (or whole channels when `channelwise`) with probability `p` in training and rescales.
    public func dropout(p: Double, training: Bool, channelwise: Bool = false) throws -> Tensor {
        try producing("dropout") { mlt_dropout(handle, p, training ? 1 : 0, channelwise ? 1 : 0, $0, $1) }
    }

    public func linear(weight: Tensor, bias: Tensor?) throws -> Tensor {
        try producing("linear") { mlt_linear(handle, weight.handle, bias?.handle, $0, $1) }
    }

    /// Resizes the spatial dims to `size`. `alignCorners` must be nil for nearest and area modes.
    public func interpolate(size: [Int], mode: InterpolationMode, alignCorners: Bool? = nil) throws -> Tensor {
        try withInt64s(size) { s, n in
            try producing("interpolate") {
                mlt_interpolate(handle, s, nil, n, mode.code, alignCorners.map { $0 ? 1 : 0 } ?? -1, $0, $1)
            }
        }
    }

    /// Resizes the spatial dims by `scale` (one factor per spatial dim).
    public func interpolate(scale: [Double], mode: InterpolationMode, alignCorners: Bool? = nil) throws -> Tensor {
        try scale.withUnsafeBufferPointer { sc in
            try producing("interpolate") {
                mlt_interpolate(handle, nil, sc.baseAddress, sc.count, mode.code,
                                alignCorners.map { $0 ? 1 : 0 } ?? -1, $0, $1)
            }
        }
    }

    public func gridSample(grid: Tensor, mode: GridSampleMode = .bilinear, padding: GridSamplePadding = .zeros,
                           alignCorners: Bool = false) throws -> Tensor
    {
        try producing("gridSample") {
            mlt_grid_sample(handle, grid.handle, mode.rawValue, padding.rawValue, alignCorners ? 1 : 0, $0, $1)
        }
    }

    /// Max pooling over 1-3 spatial dims (from `kernel.count`); `stride` defaults to the kernel.
    public func maxPool(kernel: [Int], stride: [Int]? = nil, padding: [Int]? = nil, dilation: [Int]? = nil,
                        ceilMode: Bool = false) throws -> Tensor
    {
        let n = kernel.count
        let s = stride ?? kernel, p = padding ?? Array(repeating: 0, count: n), d = dilation ?? Array(repeating: 1, count: n)
        guard s.count == n, p.count == n, d.count == n else {
            throw TorchError(operation: "maxPool", message: "kernel, stride, padding and dilation differ in length")
        }
        return try withInt64s(kernel + s + p + d) { all, _ in
            guard let all else { throw TorchError(operation: "maxPool", message: "empty kernel") }
            return try producing("maxPool") {
                mlt_max_pool(handle, all, all + n, all + 2 * n, all + 3 * n, n, ceilMode ? 1 : 0, $0, $1)
            }
        }
    }

    /// Average pooling over 1-3 spatial dims (from `kernel.count`); `stride` defaults to the kernel.
    public func avgPool(kernel: [Int], stride: [Int]? = nil, padding: [Int]? = nil, ceilMode: Bool = false,
                        countIncludePad: Bool = true) throws -> Tensor
    {
        let n = kernel.count
        let s = stride ?? kernel, p = padding ?? Array(repeating: 0, count: n)
        guard s.count == n, p.count == n else {
            throw TorchError(operation: "avgPool", message: "kernel, stride and padding differ in length")
        }
        return try withInt64s(kernel + s + p) { all, _ in
            guard let all else { throw TorchError(operation: "avgPool", message: "empty kernel") }
            return try producing("avgPool") {
                mlt_avg_pool(handle, all, all + n, all + 2 * n, n, ceilMode ? 1 : 0, countIncludePad ? 1 : 0, $0, $1)
            }
        }
    }

    public func adaptiveAvgPool(outputSize: [Int]) throws -> Tensor {
        try withInt64s(outputSize) { o, n in
            try producing("adaptiveAvgPool") { mlt_adaptive_avg_pool(handle, o, n, $0, $1) }
        }
    }

    /// Pads as `torch.nn.functional.pad`: `pad` lists (before, after) pairs starting from the last dim.
    public func pad(_ pad: [Int], mode: PaddingMode = .constant(0)) throws -> Tensor {
        let (code, value): (mlt_pad_mode, Double)
        switch mode {
        case .constant(let v): (code, value) = (MLT_PAD_CONSTANT, v)
        case .reflect: (code, value) = (MLT_PAD_REFLECT, 0)
        case .replicate: (code, value) = (MLT_PAD_REPLICATE, 0)
        case .circular: (code, value) = (MLT_PAD_CIRCULAR, 0)
        }
        return try withInt64s(pad) { p, n in try producing("pad") { mlt_pad(handle, p, n, code, value, $0, $1) } }
    }
}
