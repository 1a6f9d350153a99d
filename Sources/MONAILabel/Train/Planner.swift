import Foundation
import Imaging
import TorchKit

/// What the machine offers a training run.
public struct MachineResources: Sendable, Equatable {
    public var cores: Int
    /// Memory available to new allocations, in MB.
    public var availableRAMMB: Int
    /// Free GPU memory in MB, nil without CUDA.
    public var gpuMemoryMB: Int?

    public init(cores: Int, availableRAMMB: Int, gpuMemoryMB: Int?) {
        self.cores = cores
        self.availableRAMMB = availableRAMMB
        self.gpuMemoryMB = gpuMemoryMB
    }

    /// This machine: online cores, `MemAvailable` from /proc/meminfo, and upstream's 4300 MB guess for a GPU
    /// (libtorch 1.13's C API offers no free-memory query, and upstream falls back to the same number).
    public static func current() -> MachineResources {
        var ram = 4096
        if let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8) {
            for line in text.split(separator: "\n") where line.hasPrefix("MemAvailable:") {
                let kb = line.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
                if kb > 0 { ram = kb / 1024 }
            }
        }
        return MachineResources(
            cores: ProcessInfo.processInfo.activeProcessorCount, availableRAMMB: ram,
            gpuMemoryMB: Torch.cudaIsAvailable ? 4300 : nil)
    }
}

/// Geometry of one sampled training image (header facts only).
public struct ImageStats: Sendable, Equatable {
    public var spatialShape: [Int]
    public var spacing: [Double]

    public init(spatialShape: [Int], spacing: [Double]) {
        self.spatialShape = spatialShape
        self.spacing = spacing
    }
}

/// The heuristic planner's choices (spec section 5.3; upstream computes its plan and then ignores it, ours is
/// used): the spacing the data is resampled to, the training crop, crops per image and images per batch.
public struct TrainPlan: Sendable, Equatable {
    public var targetSpacing: [Double]
    public var patchSize: [Int]
    public var numSamples: Int
    public var trainBatchSize: Int
    public var device: String
    /// Why the plan departs from the model's own settings.
    public var notes: [String]
    public var sampledImages: Int
    public var meanShape: [Int]
    public var meanSpacing: [Double]

    public var json: JSONObject {
        var o = JSONObject()
        o["target_spacing"] = .array(targetSpacing.map { .double(($0 * 1000).rounded() / 1000) })
        o["spatial_size"] = .array(patchSize.map { .int($0) })
        o["num_samples"] = .int(numSamples)
        o["train_batch_size"] = .int(trainBatchSize)
        o["device"] = .string(device)
        o["sampled_images"] = .int(sampledImages)
        o["mean_shape"] = .array(meanShape.map { .int($0) })
        o["mean_spacing"] = .array(meanSpacing.map { .double(($0 * 1000).rounded() / 1000) })
        o["notes"] = .array(notes.map { .string($0) })
        return o
    }
}

public enum Planner {
    /// Voxels in one training crop on a CPU: 64^3 keeps an iteration of a 5-level UNet at a few seconds on
    /// two cores, which is what makes training in the loop usable there.
    static let cpuCropVoxels = 64 * 64 * 64
    /// Share of available RAM the cached, preprocessed dataset may take.
    static let cacheRAMShare = 0.4

    /// Plans a run of `definition` on `images` (a sample of the datalist; `datasetSize` images will be cached)
    /// on `machine`. Request keys `target_spacing`, `spatial_size`, `num_samples` and `train_batch_size`
    /// override the plan.
    public static func plan(
        definition d: TrainDefinition, images: [ImageStats], datasetSize: Int, machine: MachineResources,
        request: JSONObject = JSONObject()
    ) -> TrainPlan {
        let dims = d.spatialSize.count
        var notes: [String] = []
        let n = Double(max(images.count, 1))
        let meanSpacing = (0..<dims).map { i in
            images.isEmpty ? 1.0 : images.map { i < $0.spacing.count ? $0.spacing[i] : 1 }.reduce(0, +) / n
        }
        let meanShape = (0..<dims).map { i in
            images.isEmpty ? d.spatialSize[i]
                : Int((Double(images.map { i < $0.spatialShape.count ? $0.spatialShape[i] : 1 }.reduce(0, +)) / n).rounded())
        }
        // Spacing: the model's own (inference resamples to it, so training must match), else the data's.
        var spacing: [Double]
        if let r = request["target_spacing"], let s = doubles(r, count: dims) {
            spacing = s
        } else if let s = d.preSpacing, s.count == dims {
            spacing = s
        } else {
            spacing = meanSpacing.map { max(0.5, ($0 * 2).rounded() / 2) }
        }
        func resampled(_ sp: [Double]) -> [Int] {
            // Image headers feed these numbers: clamp before converting, a spacing of 1e30 must not trap.
            (0..<dims).map { i in
                let n = (Double(meanShape[i]) * meanSpacing[i] / sp[i]).rounded()
                return n.isFinite ? Int(min(max(n, 1), 1e9)) : 1
            }
        }
        // The cache holds every image and label as 4-byte floats at the target spacing.
        let budget = Double(machine.availableRAMMB) * 1_048_576 * cacheRAMShare
        let cacheBytes = Double(resampled(spacing).reduce(1, *)) * 8 * Double(max(datasetSize, 1))
        if request["target_spacing"] == nil, cacheBytes > budget, budget > 0 {
            let f = Foundation.cbrt(cacheBytes / budget)
            spacing = spacing.map { $0 * f }
            notes.append(String(format: "dataset cache needs %.0f MB at the model's spacing, over %.0f%% of %d MB "
                + "available RAM: spacing coarsened x%.2f (inference still uses the model's spacing)",
                cacheBytes / 1_048_576, cacheRAMShare * 100, machine.availableRAMMB, f))
        }
        let shape = resampled(spacing)

        // Crop: the model's crop, no larger than the (padded) image, within the device's budget.
        let div = d.divisor
        func roundUp(_ x: Int) -> Int { max(div, (x + div - 1) / div * div) }
        var patch: [Int]
        if let r = request["spatial_size"], let s = TrainDefinition.ints(r, count: dims) {
            patch = s
        } else {
            patch = (0..<dims).map { min(d.spatialSize[$0], roundUp(shape[$0])) }
            let cropBudget: Int
            if let gpu = machine.gpuMemoryMB {
                // Upstream's rule of thumb: ~2 GB for the context, the rest for activations.
                cropBudget = max(div * div * div, (gpu - 2000) * 1024 / max(d.numSamples, 1))
            } else {
                cropBudget = cpuCropVoxels
            }
            while patch.reduce(1, *) > cropBudget, let i = patch.indices.max(by: { patch[$0] < patch[$1] }),
                patch[i] > div
            {
                patch[i] -= div
            }
            if patch != d.spatialSize {
                notes.append("crop \(patch) instead of the model's \(d.spatialSize) to fit the "
                    + (machine.gpuMemoryMB == nil ? "CPU's compute budget" : "GPU memory") + " and the images")
            }
        }
        var samples = request["num_samples"]?.intValue ?? d.numSamples
        if request["num_samples"] == nil, machine.gpuMemoryMB == nil, samples > max(1, machine.cores) {
            samples = max(1, machine.cores)
            notes.append("\(samples) crops per image instead of \(d.numSamples) on \(machine.cores) CPU cores")
        }
        // A bundle's trainer carries its dataloader's batch size in its config.
        let batch = max(1, min(1024, request["train_batch_size"]?.intValue ?? d.config["train_batch_size"]?.intValue ?? 1))
        return TrainPlan(
            targetSpacing: spacing, patchSize: patch, numSamples: max(1, samples), trainBatchSize: batch,
            device: machine.gpuMemoryMB == nil ? "cpu" : "cuda", notes: notes, sampledImages: images.count,
            meanShape: meanShape, meanSpacing: meanSpacing)
    }

    /// Reads geometry from up to `maxSamples` images, evenly spread over `paths` (deterministic, unlike
    /// upstream's `random.sample`).
    public static func sampleStats(_ paths: [String], maxSamples: Int = 10) -> [ImageStats] {
        guard !paths.isEmpty else { return [] }
        let step = max(1, paths.count / maxSamples)
        return stride(from: 0, to: paths.count, by: step).prefix(maxSamples).compactMap { i in
            // Headers only where the format allows: this runs in the server process, for /info/.
            guard let g = try? ImageIO.grid(URL(fileURLWithPath: paths[i])) else { return nil }
            return ImageStats(spatialShape: g.spatialShape, spacing: Array(g.affine.spacing.prefix(g.spatialShape.count)))
        }
    }

    static func doubles(_ v: JSONValue, count: Int) -> [Double]? {
        if let x = v.doubleValue, x > 0 { return Array(repeating: x, count: count) }
        guard let a = v.arrayValue, a.count == count else { return nil }
        let r = a.compactMap(\.doubleValue)
        return r.count == count && r.allSatisfy({ $0 > 0 }) ? r : nil
    }
}
