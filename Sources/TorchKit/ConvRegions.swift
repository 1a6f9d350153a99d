import Foundation

extension Conv {
    /// The kernel's spatial sizes (the weight's trailing axes; folded and rewritten weights keep them).
    public var kernelSize: [Int] { Array(weight.tensor.shape.dropFirst(2)) }

    /// The spatial size of this convolution's output for an input of spatial size `inputSize` and a kernel of
    /// `kernel` (the weight's spatial sizes; folded weights keep them); nil when the counts do not match, a stride,
    /// dilation or kernel size is below 1, or an axis would come out empty.
    public func outputSize(inputSize: [Int], kernel: [Int]) -> [Int]? {
        // A stride, dilation or kernel below 1 (a bundle's config can say anything) has no output to speak of;
        // libtorch refuses it when the convolution runs.
        guard inputSize.count == spatialDims, kernel.count == spatialDims, kernel.allSatisfy({ $0 > 0 }),
              stride.allSatisfy({ $0 > 0 }), dilation.allSatisfy({ $0 > 0 })
        else { return nil }
        var out: [Int] = []
        for d in 0..<spatialDims {
            let reach = dilation[d] * (kernel[d] - 1)
            let size = transposed
                ? (inputSize[d] - 1) * stride[d] - 2 * padding[d] + reach + outputPadding[d] + 1
                : (inputSize[d] + 2 * padding[d] - reach - 1) / stride[d] + 1
            guard size > 0 else { return nil }
            out.append(size)
        }
        return out
    }

    /// The part of an input of spatial size `inputSize` that the output rows `region` (one half-open range per
    /// spatial axis) depend on: `box`, a range per axis within the input, such that this convolution run on just
    /// that box (same padding and geometry) gives output row `o` of the whole run at row `o - offset`, exactly,
    /// for every `o` in `region`. Nil when the geometry has no such box (the region leaves the output, or the
    /// box's own padded rim would fall inside the region), for which the caller runs the whole input.
    ///
    /// Why it holds: a convolution's output row `o` reads input rows `o * stride - padding + t * dilation`, a
    /// transposed one's the rows `i` with `o + padding - i * stride = t * dilation` (`t` below the kernel). The
    /// box holds every such row of the input for every `o` in the region, and it starts on a multiple of the
    /// stride (a transposed run's output starts at `box.start * stride`), so the box's run reads the same rows
    /// with the same weights; the rows it reads as zero padding are the ones the whole run reads as padding.
    public func inputWindow(for region: [Range<Int>], inputSize: [Int], kernel: [Int])
        -> (box: [Range<Int>], offset: [Int])?
    {
        guard region.count == spatialDims, let full = outputSize(inputSize: inputSize, kernel: kernel) else {
            return nil
        }
        var box: [Range<Int>] = []
        var offset: [Int] = []
        for d in 0..<spatialDims {
            let lo = region[d].lowerBound, hi = region[d].upperBound
            guard lo >= 0, lo < hi, hi <= full[d] else { return nil }
            let s = stride[d], p = padding[d], reach = dilation[d] * (kernel[d] - 1), size = inputSize[d]
            let a: Int, b: Int, shift: Int
            if transposed {
                // Rows i with lo + p - reach <= i * s <= hi - 1 + p.
                let first = lo + p - reach
                a = max(0, first >= 0 ? (first + s - 1) / s : -((-first) / s))
                b = min(size, (hi - 1 + p) / s + 1)
                shift = a * s
            } else {
                // Start on a multiple of the stride so that the box's output rows line up with the whole's.
                a = (max(0, lo * s - p) / s) * s
                b = min(size, (hi - 1) * s - p + reach + 1)
                shift = a / s
            }
            guard a < b else { return nil }
            // The box's run must produce the region's rows at their shifted places.
            let boxOut = transposed
                ? (b - a - 1) * s - 2 * p + reach + outputPadding[d] + 1
                : (b - a + 2 * p - reach - 1) / s + 1
            guard lo - shift >= 0, hi - shift <= boxOut else { return nil }
            box.append(a..<b)
            offset.append(shift)
        }
        return (box, offset)
    }
}
