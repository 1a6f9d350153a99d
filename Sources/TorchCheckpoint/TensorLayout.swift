/// Turns a (storage, offset, size, stride) view into a contiguous C-order `StoredTensor`, checking that
/// every element the view can reach lies inside the storage.
enum TensorLayout {
    /// C-order strides of a contiguous tensor of this shape.
    static func contiguousStrides(_ shape: [Int]) -> [Int] {
        var strides = [Int](repeating: 1, count: shape.count)
        var running = 1
        for d in stride(from: shape.count - 1, through: 0, by: -1) {
            strides[d] = running
            running = running &* max(shape[d], 1)
        }
        return strides
    }

    /// `copyBudget` is how many bytes views may still materialise: a tensor that is its whole storage shares
    /// the storage's buffer for free, but slices, transposes and broadcasts (stride 0) are copied, and a
    /// hostile file could otherwise ask for terabytes from a one-element storage.
    static func gather(storage: LoadedStorage, offset: Int, shape: [Int], stride: [Int], copyBudget: inout Int) throws -> StoredTensor {
        let dtype = storage.dtype
        let esize = dtype.size
        let storageNumel = storage.bytes.count / esize
        guard shape.count == stride.count else {
            throw CheckpointError(.invalidTensor, "size \(shape) and stride \(stride) have different ranks")
        }
        var count = 1
        var lastIndex = offset
        for (n, s) in zip(shape, stride) {
            let (c, o1) = count.multipliedReportingOverflow(by: n)
            guard !o1 else { throw CheckpointError(.invalidTensor, "size \(shape) overflows") }
            count = c
            if n > 0 {
                let (reach, o2) = (n - 1).multipliedReportingOverflow(by: s)
                let (sum, o3) = lastIndex.addingReportingOverflow(reach)
                guard !o2, !o3 else { throw CheckpointError(.invalidTensor, "size \(shape) with stride \(stride) overflows") }
                lastIndex = sum
            }
        }
        guard count.multipliedReportingOverflow(by: esize).overflow == false else {
            throw CheckpointError(.invalidTensor, "size \(shape) overflows")
        }
        if count == 0 { return StoredTensor(dtype: dtype, shape: shape, bytes: []) }
        guard lastIndex < storageNumel else {
            throw CheckpointError(
                .invalidTensor,
                "storage \"\(storage.key)\" holds \(storageNumel) \(dtype.rawValue) elements but a tensor of size \(shape), stride \(stride), offset \(offset) reaches element \(lastIndex)")
        }

        let natural = contiguousStrides(shape)
        let isContiguous = zip(shape, zip(stride, natural)).allSatisfy { n, s in n <= 1 || s.0 == s.1 }
        if isContiguous && offset == 0 && count == storageNumel && storage.bytes.count == count * esize {
            // The common case: the tensor is its whole storage, so share the buffer without copying.
            return StoredTensor(dtype: dtype, shape: shape, bytes: storage.bytes)
        }
        guard count * esize <= copyBudget else {
            throw CheckpointError(
                .invalidTensor,
                "tensor views of size \(shape) would materialise more bytes than the checkpoint's size justifies (\(copyBudget) left)")
        }
        copyBudget -= count * esize
        if isContiguous {
            return StoredTensor(dtype: dtype, shape: shape, bytes: Array(storage.bytes[(offset * esize)..<((offset + count) * esize)]))
        }

        var out = [UInt8](repeating: 0, count: count * esize)
        storage.bytes.withUnsafeBytes { src in
            out.withUnsafeMutableBytes { dst in
                guard let srcBase = src.baseAddress, let dstBase = dst.baseAddress else { return }
                let rank = shape.count
                var index = [Int](repeating: 0, count: rank)
                var source = offset
                for element in 0..<count {
                    (dstBase + element * esize).copyMemory(from: srcBase + source * esize, byteCount: esize)
                    var d = rank - 1
                    while d >= 0 {
                        index[d] += 1
                        source += stride[d]
                        if index[d] < shape[d] { break }
                        source -= stride[d] * shape[d]
                        index[d] = 0
                        d -= 1
                    }
                }
            }
        }
        return StoredTensor(dtype: dtype, shape: shape, bytes: out)
    }
}
