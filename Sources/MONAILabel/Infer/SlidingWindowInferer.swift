import Foundation
import Imaging
import TorchKit

/// How overlapping windows are blended (MONAI's `BlendMode`).
public enum BlendMode: String, Sendable {
    case constant, gaussian
}

/// MONAI 1.4's `sliding_window_inference`: pad the input up to the window where it is smaller (symmetric,
/// extra voxel at the end), cover it with windows `roi * (1 - overlap)` apart (the last one flush with the end),
/// run the predictor on batches of `swBatchSize` windows, blend with a constant or Gaussian importance map,
/// divide by the accumulated weights and crop the padding away.
public struct SlidingWindowInferer: Sendable {
    public var roiSize: [Int]
    public var swBatchSize: Int
    public var overlap: Double
    public var mode: BlendMode
    public var sigmaScale: Double
    public var padding: PaddingMode
    /// Hands 2-d and 3-d windows to the predictor channels-last (NHWC / NDHWC), which libtorch's convolutions
    /// then keep through the network; same values, another memory layout.
    public var channelsLast: Bool

    public init(roiSize: [Int], swBatchSize: Int = 1, overlap: Double = 0.25, mode: BlendMode = .constant,
                sigmaScale: Double = 0.125, padding: PaddingMode = .constant(0), channelsLast: Bool = false) {
        self.roiSize = roiSize
        self.swBatchSize = max(1, swBatchSize)
        self.overlap = overlap
        self.mode = mode
        self.sigmaScale = sigmaScale
        self.padding = padding
        self.channelsLast = channelsLast
    }

    /// Most windows one inference may run: `sw_overlap` close to 1 multiplies them without bound (0.97 on a
    /// 96-voxel window gives over a million) and keeps the cores busy long after the client has given up.
    public static let maxWindows = 100_000

    /// Most voxels one network call may take (`roi_size` times the windows batched together): the network's
    /// activations are hundreds of bytes per input voxel, so 2^25 (a 320^3 window, or 16 of 128^3) already needs
    /// gigabytes.
    public static let maxBatchVoxels = 1 << 25

    /// Refuses, before anything is allocated, settings that would trap or allocate without bound: a window or
    /// batch that is not positive, an overlap outside [0, 1) or NaN, a padded image over `ImagingLimits.maxVoxels`,
    /// more than `maxWindows` windows, or a network call over `maxBatchVoxels`. Errors name the request parameter
    /// (`roi_size`, `sw_batch_size`, `sw_overlap`).
    func validate(imageShape: [Int]) throws {
        guard roiSize.count == imageShape.count, roiSize.allSatisfy({ $0 > 0 }) else {
            throw MONAILabelError.invalid("roi_size must be \(imageShape.count) positive integers, got \(roiSize)")
        }
        guard swBatchSize > 0 else { throw MONAILabelError.invalid("sw_batch_size must be positive, got \(swBatchSize)") }
        guard overlap.isFinite, overlap >= 0, overlap < 1 else {
            throw MONAILabelError.invalid("sw_overlap must be a number >= 0 and < 1, got \(overlap)")
        }
        let padded = zip(imageShape, roiSize).map { max($0, $1) }
        let window: Int
        do {
            window = try ImagingLimits.checkVoxels(roiSize, what: "roi_size")
            try ImagingLimits.checkVoxels(padded, what: "the padded image")
        } catch let e as ImagingError {
            throw MONAILabelError.invalid(e.message)
        }
        var windows = 1
        for d in 0..<roiSize.count {
            let interval = roiSize[d] == padded[d] ? roiSize[d] : max(1, Int(Double(roiSize[d]) * (1 - overlap)))
            let along = (padded[d] - roiSize[d] + interval - 1) / interval + 1
            let (w, o) = windows.multipliedReportingOverflow(by: along)
            guard !o, w <= Self.maxWindows else {
                throw MONAILabelError.invalid(
                    "sw_overlap \(overlap) with roi_size \(roiSize) needs more than \(Self.maxWindows) windows for an image of "
                        + "\(imageShape); use a smaller overlap or a larger roi_size")
            }
            windows = w
        }
        // Batches never hold more windows than there are.
        let (batch, o) = window.multipliedReportingOverflow(by: min(swBatchSize, windows))
        guard !o, batch <= Self.maxBatchVoxels else {
            throw MONAILabelError.invalid("roi_size \(roiSize) x sw_batch_size \(swBatchSize) puts \(o ? "too many" : "\(batch)") "
                + "voxels through the network at once; at most \(Self.maxBatchVoxels)")
        }
    }

    /// Window start offsets along each spatial axis, first axis slowest (MONAI's `dense_patch_slices`).
    static func windowStarts(imageSize: [Int], roi: [Int], overlap: Double) -> [[Int]] {
        var perDim: [[Int]] = []
        for d in 0..<imageSize.count {
            let interval: Int
            if roi[d] == imageSize[d] {
                interval = roi[d]
            } else {
                let i = Int(Double(roi[d]) * (1 - overlap))
                interval = i > 0 ? i : 1
            }
            let num = Int((Double(imageSize[d]) / Double(interval)).rounded(.up))
            var count = 1
            for k in 0..<num where k * interval + roi[d] >= imageSize[d] {
                count = k + 1
                break
            }
            perDim.append((0..<count).map { k in
                let s = k * interval
                return s - max(s + roi[d] - imageSize[d], 0)
            })
        }
        var out: [[Int]] = [[]]
        for starts in perDim { out = out.flatMap { prefix in starts.map { prefix + [$0] } } }
        return out
    }

    /// MONAI's `compute_importance_map`, shaped `[1, 1, *roi]`.
    static func importanceMap(roi: [Int], mode: BlendMode, sigmaScale: Double) throws -> Tensor {
        let n = roi.reduce(1, *)
        var values = [Float](repeating: 1, count: n)
        if mode == .gaussian {
            let axes: [[Float]] = roi.map { size in
                let sigma = Double(size) * sigmaScale
                return (0..<size).map { i in
                    let x = Double(i) - Double(size - 1) / 2
                    return Float(Foundation.exp(x * x / (-2 * sigma * sigma)))
                }
            }
            var strides = [Int](repeating: 1, count: roi.count)
            for d in stride(from: roi.count - 2, through: 0, by: -1) { strides[d] = strides[d + 1] * roi[d + 1] }
            for idx in 0..<n {
                var v: Float = 1
                for d in 0..<roi.count { v *= axes[d][(idx / strides[d]) % roi[d]] }
                values[idx] = v
            }
            let minNonZero = max(values.min() ?? 1, 1e-3)
            for i in 0..<n where values[i] < minNonZero { values[i] = minNonZero }
        }
        return try Tensor(values, shape: [1, 1] + roi)
    }

    /// Runs `predictor` over `input` (`[1, C, *spatial]`) and returns the blended output (`[1, K, *spatial]`).
    public func callAsFunction(_ input: Tensor, device: Device? = nil, accumulate: AccumulateMode = .device,
                               predictor: (Tensor) throws -> Tensor) throws -> Tensor
    {
        try callAsFunction(input, device: device, accumulate: accumulate,
                           predictingRegion: { try predictor($0).narrowed(to: $1) })
    }

    /// Runs `predictor` over `input` (`[1, C, *spatial]`) and returns the blended output (`[1, K, *spatial]`).
    /// `predictor` gets a batch of windows and the box of them (window coordinates, a range per spatial axis)
    /// that the result keeps, and returns its output over that box only: a window that reaches past the image
    /// (one smaller than the window is padded up to it) has its padded rim cropped away in the end, so a network
    /// that can compute part of its output (`OutputRegionForward`) skips it.
    ///
    /// MONAI's `sw_device` / `device` split: each batch of windows is copied to `device` (default: the input's)
    /// where `predictor` runs; the blended output and the weight sum live where `accumulate` says (`.device`
    /// keeps them on `device`, `.cpu` on the host, `.auto` decides when they are allocated, after the first
    /// batch has told the class count, from the device's free memory). The input itself stays where it is.
    /// The result lies on the accumulation device.
    public func callAsFunction(_ input: Tensor, device: Device? = nil, accumulate: AccumulateMode = .device,
                               predictingRegion predictor: (Tensor, [Range<Int>]) throws -> Tensor) throws -> Tensor
    {
        let shape = input.shape
        let dims = shape.count - 2
        guard dims == roiSize.count, shape[0] == 1 else {
            throw MONAILabelError.invalid("sliding window: input \(shape) does not match roi \(roiSize)")
        }
        let swDevice = device ?? input.device
        let original = Array(shape[2...])
        try validate(imageShape: original)
        // Pad (F.pad order: last axis first) so every axis is at least the window.
        var pad: [Int] = []
        for d in stride(from: dims - 1, through: 0, by: -1) {
            let diff = max(roiSize[d] - original[d], 0)
            pad += [diff / 2, diff - diff / 2]
        }
        let padded = pad.contains(where: { $0 > 0 }) ? try input.pad(pad, mode: padding) : input
        let imageSize = (0..<dims).map { max(original[$0], roiSize[$0]) }
        let starts = Self.windowStarts(imageSize: imageSize, roi: roiSize, overlap: overlap)
        // The image within the padded one (pad[] lists axes last-first).
        let imageBox = (0..<dims).map { d in pad[(dims - 1 - d) * 2] ..< pad[(dims - 1 - d) * 2] + original[d] }
        // The box of a batch of windows that lies on the image, in window coordinates: the union over the batch
        // (every window of it is computed over the same box; a window's prediction is valid all over it).
        func kept(_ batch: [[Int]]) -> [Range<Int>] {
            (0..<dims).map { d in
                let lo = batch.map { max(imageBox[d].lowerBound - $0[d], 0) }.min() ?? 0
                let hi = batch.map { min(imageBox[d].upperBound - $0[d], roiSize[d]) }.max() ?? roiSize[d]
                return lo < hi ? lo..<hi : 0..<roiSize[d]
            }
        }
        func window(_ t: Tensor, _ s: [Int]) throws -> Tensor {
            var w = t
            for d in 0..<dims { w = try w.narrow(dim: d + 2, start: s[d], length: roiSize[d]) }
            return w
        }
        func predict(_ batch: [[Int]], region: [Range<Int>]) throws -> Tensor {
            let data = batch.count == 1
                ? try window(padded, batch[0]) : try Tensor.cat(batch.map { try window(padded, $0) }, dim: 0)
            let pred = try predictor(channelsLast && (2...3).contains(dims)
                ? try data.contiguous(channelsLast: true).to(swDevice) : try data.contiguous().to(swDevice), region)
            let predShape = pred.shape
            guard predShape.count == dims + 2, Array(predShape[2...]) == region.map(\.count), predShape[0] == batch.count
            else {
                throw MONAILabelError.io("the network returned \(predShape) for windows of \(roiSize) kept at \(region)")
            }
            return pred
        }

        var result: Tensor
        // Where `result`'s first row lies in the padded image, per axis.
        var resultOrigin = Array(repeating: 0, count: dims)
        if starts.count == 1 {
            // One window covers the (padded) image: blending divides its prediction by the weight it was just
            // multiplied with, so the prediction is the output and no image-sized accumulator is needed.
            let region = kept(starts)
            result = try predict(starts, region: region)
            resultOrigin = region.map(\.lowerBound)
            if accumulate == .cpu { result = try result.to(.cpu) }
        } else {
            // Accumulate each window's weighted prediction and the weights, then divide in place slab by slab.
            // Beyond the output (`[1, K, *imageSize]`) this holds the weight sum (one byte per voxel with
            // constant blending, which only counts windows, else a float) and one batch's temporaries.
            let countType: DType = mode == .constant && maxCoverage(imageSize: imageSize) < 256 ? .uint8 : .float32
            var accumulators: (output: Tensor, count: Tensor, weight: Tensor)?
            var i = 0
            while i < starts.count {
                let batch = Array(starts[i..<min(i + swBatchSize, starts.count)])
                let region = kept(batch)
                var pred = try predict(batch, region: region)
                if accumulators == nil {
                    // The blended output holds every class over the whole padded image.
                    do { try ImagingLimits.checkVoxels(imageSize, channels: pred.shape[1], what: "the sliding-window output") }
                    catch let e as ImagingError { throw MONAILabelError.invalid(e.message) }
                    let place = InferPlacement.accumulatesOnCPU(
                        mode: accumulate, device: swDevice,
                        bytes: Self.accumulatorBytes(imageSize: imageSize, channels: pred.shape[1], countType: countType),
                        freeBytes: accumulate == .auto ? InferPlacement.freeBytes(swDevice) : nil) ? Device.cpu : swDevice
                    let count = try Tensor.zeros([1, 1] + imageSize, dtype: countType, device: place)
                    let weight = try Self.importanceMap(roi: roiSize, mode: mode, sigmaScale: sigmaScale).to(place)
                    for s in starts {
                        let region = try window(count, s)
                        try region.copy(from: region.add(weight))
                    }
                    accumulators = (try Tensor.zeros([1, pred.shape[1]] + imageSize, device: place), count, weight)
                }
                guard let acc = accumulators else { break }
                pred = try pred.to(acc.output.device)
                for (b, s) in batch.enumerated() {
                    var p = try pred.narrow(dim: 0, start: b, length: 1)
                    // Constant blending weighs every voxel 1: the product would only copy.
                    if mode != .constant { p = try p.mul(acc.weight.narrowed(to: region)) }
                    // In place: `add` then `copy` would allocate and write a window-sized temporary per window.
                    try window(acc.output, s).narrowed(to: region).addInPlace(p)
                }
                i += batch.count
            }
            guard let acc = accumulators else { throw MONAILabelError.io("sliding window produced nothing") }
            var z = 0
            while z < imageSize[0] {
                let n = min(Self.divisionSlab, imageSize[0] - z)
                let slab = try acc.output.narrow(dim: 2, start: z, length: n)
                try slab.copy(from: slab.div(acc.count.narrow(dim: 2, start: z, length: n)))
                z += n
            }
            result = acc.output
        }
        return try result.narrowed(to: imageBox, origin: resultOrigin).contiguous()
    }

    /// Bytes of the accumulators for an image of `imageSize` voxels: the float output of `channels` classes and
    /// the weight sum; nil when that overflows.
    static func accumulatorBytes(imageSize: [Int], channels: Int, countType: DType) -> Int? {
        var voxels = 1
        for n in imageSize {
            let (v, o) = voxels.multipliedReportingOverflow(by: n)
            guard !o else { return nil }
            voxels = v
        }
        let (perVoxel, o1) = channels.multipliedReportingOverflow(by: 4)
        let (total, o2) = voxels.multipliedReportingOverflow(by: perVoxel + (countType == .uint8 ? 1 : 4))
        return o1 || o2 ? nil : total
    }

    /// Most slices along the first spatial axis the final division handles at once: its temporary is one slab,
    /// not a second copy of the whole output.
    static let divisionSlab = 8

    /// The most windows one voxel can lie in: the weight sum of constant blending counts them, and fits a byte
    /// below 256.
    func maxCoverage(imageSize: [Int]) -> Int {
        var n = 1
        for d in 0..<roiSize.count where roiSize[d] < imageSize[d] {
            let interval = max(1, Int(Double(roiSize[d]) * (1 - overlap)))
            let (product, overflow) = n.multipliedReportingOverflow(by: (roiSize[d] + interval - 1) / interval + 1)
            guard !overflow else { return Int.max }
            n = product
        }
        return n
    }
}
