import Foundation
import Imaging

/// One image/label pair after the deterministic transforms (load, orientation, spacing, intensity), kept in
/// memory for the whole run: MONAI's `CacheDataset`.
public struct CachedCase: Sendable {
    public var id: String
    public var image: Volume
    public var label: Volume
}

/// The deterministic part of training and validation pre-processing: the model's own pre-transforms
/// (`Orientationd`, `Spacingd` at the planned spacing, `ScaleIntensityRanged`, ...) on the image, the same
/// orientation and nearest-neighbour spacing on the label.
public struct TrainPreprocessing: Sendable {
    let imageTransforms: [PreTransform]
    let axcodes: String?
    let spacing: [Double]?
    let labelValues: Set<Int>

    public init(definition d: TrainDefinition, plan: TrainPlan) throws {
        var ts: [PreTransform] = []
        var ax: String?
        var sp: [Double]?
        for var spec in d.pre {
            let name = spec["name"]?.stringValue ?? ""
            if name.hasPrefix("Orientation") { ax = spec["axcodes"]?.stringValue ?? "RAS" }
            if name.hasPrefix("Spacing") {
                spec["pixdim"] = .array(plan.targetSpacing.map { .double($0) })
                sp = plan.targetSpacing
            }
            ts.append(try PreTransform(spec))
        }
        imageTransforms = ts
        axcodes = ax
        spacing = sp
        labelValues = d.labelValues
    }

    /// Loads and transforms one pair. Problems the run can survive come back as `warnings`; a pair whose image
    /// and label grids differ is refused (nil) since voxels would not correspond.
    public func load(image: String, label: String, warnings: inout [String]) throws -> CachedCase? {
        let id = URL(fileURLWithPath: image).lastPathComponent
        var img = try ImageIO.load(URL(fileURLWithPath: image))
        var lab = try ImageIO.load(URL(fileURLWithPath: label))
        if img.spatialShape != lab.spatialShape || !Self.close(img.affine, lab.affine) {
            warnings.append("\(id): label grid \(lab.spatialShape) does not match the image's \(img.spatialShape) "
                + "(or their affines differ); case skipped")
            return nil
        }
        // NaN or huge values (nil) count as unknown: they are trained as background too.
        let values = Set(lab.floats.map { $0.labelInteger ?? -1 })
        let unknown = values.subtracting(labelValues).sorted()
        if !unknown.isEmpty {
            warnings.append("\(id): label values \(unknown) are not among the model's labels \(labelValues.sorted()); "
                + "trained as background")
            let known = labelValues
            lab = Volume(spatialShape: lab.spatialShape, channels: lab.channels,
                         data: .float32(lab.floats.map { known.contains($0.labelInteger ?? -1) ? $0.rounded() : 0 }),
                         affine: lab.affine)
        }
        for t in imageTransforms { img = try t.apply(img) }
        if let axcodes { lab = try Orientation(axcodes: axcodes)(lab) }
        if let spacing { lab = try Spacing(pixdim: spacing, mode: .nearest)(lab) }
        guard img.spatialShape == lab.spatialShape else {
            warnings.append("\(id): image and label resample to different grids; case skipped")
            return nil
        }
        return CachedCase(id: id, image: img, label: lab)
    }

    static func close(_ a: Affine, _ b: Affine) -> Bool {
        zip(a.m, b.m).allSatisfy { abs($0 - $1) <= 1e-3 * max(1, abs($0)) }
    }
}

/// One training step's input: `count` crops stacked, channel-first, as flat floats.
public struct TrainBatch: Sendable {
    public var image: [Float]
    public var label: [Float]
    /// `[count, 1, *patch]`.
    public var shape: [Int]
}

/// The random part of segmentation training after the cached deterministic transforms:
/// `RandCropByPosNegLabeld` (`pos`, `neg`, `image_threshold`; size and count from the plan), then the flips,
/// the quarter turn and the intensity shift. `standard` is upstream's segmentation trainer's; a bundle's
/// `train.json` lists its own (MONAIBundleTrain).
public struct CropAugmentation: Sendable {
    public struct Flip: Sendable {
        public var prob: Double
        /// nil: every axis at once (MONAI's `spatial_axis=None`).
        public var axes: [Int]?
    }

    public struct Rotate: Sendable {
        public var prob: Double
        public var maxK: Int
        public var axes: (Int, Int)
    }

    public var pos = 1.0
    public var neg = 1.0
    public var imageThreshold: Float = 0
    public var flips: [Flip] = []
    public var rotate: Rotate?
    /// `RandShiftIntensityd(offsets, prob)`.
    public var shift: (offsets: Double, prob: Double)?

    public init() {}

    /// Upstream's segmentation trainer: `RandFlipd` per axis (prob 0.1), `RandRotate90d` (prob 0.1, max_k 3) and
    /// `RandShiftIntensityd` (offsets 0.1, prob 0.5).
    public static func standard(dimension: Int) -> CropAugmentation {
        var a = CropAugmentation()
        a.flips = (0..<dimension).map { Flip(prob: 0.1, axes: [$0]) }
        a.rotate = Rotate(prob: 0.1, maxK: 3, axes: (0, 1))
        a.shift = (0.1, 0.5)
        return a
    }
}

/// Produces training batches on worker threads ahead of the training loop, so the network never waits on
/// cropping and augmentation: per batch, `RandCropByPosNegLabeld` (`num_samples` per image) on the
/// foreground-cropped, padded cached cases, then the `augmentation`'s flips, quarter turn and intensity shift.
/// Each batch's randomness is seeded by its index, so runs are reproducible whatever the thread timing.
public final class CropLoader: @unchecked Sendable {
    private let cases: [CachedCase]
    private let schedule: [[Int]]
    private let patch: [Int]
    private let numSamples: Int
    private let seed: UInt64
    private let augmentation: CropAugmentation
    private let prefetch: Int
    private let cond = NSCondition()
    private var ready: [Int: TrainBatch] = [:]
    private var nextToBuild = 0
    private var consumed = 0
    private var stopped = false
    private var failure: Error?

    /// - Parameters:
    ///   - cases: training cases (already foreground-cropped and padded to at least `patch`).
    ///   - schedule: for each batch in order, the indices of its cases.
    public init(cases: [CachedCase], schedule: [[Int]], patch: [Int], numSamples: Int, seed: UInt64,
                augmentation: CropAugmentation? = nil, workers: Int, prefetch: Int = 4)
    {
        self.augmentation = augmentation ?? .standard(dimension: patch.count)
        self.cases = cases
        self.schedule = schedule
        self.patch = patch
        self.numSamples = numSamples
        self.seed = seed
        self.prefetch = max(1, prefetch)
        for w in 0..<max(1, workers) {
            let t = Thread { [self] in work() }
            t.name = "crop-worker-\(w)"
            t.start()
        }
    }

    deinit { stop() }

    /// Batch number `index` (in schedule order), waiting for the workers if they are behind.
    public func batch(_ index: Int) throws -> TrainBatch {
        cond.lock()
        defer { cond.unlock() }
        while ready[index] == nil && failure == nil && !stopped { cond.wait() }
        if let failure { throw failure }
        guard let b = ready.removeValue(forKey: index) else {
            throw MONAILabelError.io("the crop loader was stopped")
        }
        consumed = max(consumed, index + 1)
        cond.broadcast()
        return b
    }

    /// Ends the worker threads.
    public func stop() {
        cond.lock()
        stopped = true
        cond.broadcast()
        cond.unlock()
    }

    private func work() {
        while true {
            cond.lock()
            while !stopped && nextToBuild < schedule.count && nextToBuild - consumed >= prefetch { cond.wait() }
            if stopped || nextToBuild >= schedule.count {
                cond.unlock()
                return
            }
            let index = nextToBuild
            nextToBuild += 1
            cond.unlock()
            do {
                let b = try build(index)
                cond.lock()
                ready[index] = b
                cond.broadcast()
                cond.unlock()
            } catch {
                cond.lock()
                failure = error
                cond.broadcast()
                cond.unlock()
                return
            }
        }
    }

    private func build(_ index: Int) throws -> TrainBatch {
        var rng = SeededGenerator(seed: seed &+ UInt64(index) &* 0x9E37_79B9_7F4A_7C15)
        let a = augmentation
        let crop = RandCropByPosNegLabel(spatialSize: patch, pos: a.pos, neg: a.neg, numSamples: numSamples,
                                         imageThreshold: a.imageThreshold)
        let flips = a.flips.map { RandFlip(prob: $0.prob, spatialAxis: $0.axes) }
        let rotate = a.rotate.map { RandRotate90(prob: $0.prob, maxK: $0.maxK, spatialAxes: $0.axes) }
        let shift = a.shift.map { RandShiftIntensity(offsets: $0.offsets, prob: $0.prob) }
        var images: [Float] = [], labels: [Float] = []
        var count = 0
        for ci in schedule[index] {
            let c = cases[ci]
            for pair in try crop(image: c.image, label: c.label, using: &rng) {
                var vs = [pair.image, pair.label]
                for f in flips { vs = try f(vs, using: &rng) }
                // A quarter turn swaps its two axes: only shape-preserving when they are equal.
                if let rotate, patch.indices.contains(rotate.spatialAxes.0), patch.indices.contains(rotate.spatialAxes.1),
                   patch[rotate.spatialAxes.0] == patch[rotate.spatialAxes.1]
                {
                    vs = try rotate(vs, using: &rng)
                }
                let img = shift.map { $0(vs[0], using: &rng) } ?? vs[0]
                guard img.spatialShape == patch, vs[1].spatialShape == patch else {
                    throw MONAILabelError.io("\(c.id): crop \(img.spatialShape) is not the planned \(patch)")
                }
                images += img.floats
                labels += vs[1].floats
                count += 1
            }
        }
        return TrainBatch(image: images, label: labels, shape: [count, 1] + patch)
    }
}
