import Foundation
import TorchKit

/// Where a sliding-window inference adds up its windows: MONAI's `sliding_window_inference(sw_device=...,
/// device=...)` split. The network and its windows always run on the request's device (`sw_device`); the
/// blended output and the weight sum (`device`) live there too unless the volume's accumulators would not fit.
/// Request parameter `sw_accumulate`, default `MONAI_LABEL_SW_ACCUMULATE`.
public enum AccumulateMode: String, Sendable, CaseIterable {
    /// On the device while the accumulators fit in its free memory, else on the CPU (decided before they are
    /// allocated). Upstream 0.8.5 passes `sw_device=device=device`, i.e. always `device`.
    case auto
    /// Always on the device the network runs on (upstream's behaviour).
    case device
    /// Always on the CPU: each window's prediction is copied back to host memory.
    case cpu

    /// The mode a request asks for, its `sw_accumulate` over `fallback`; another value is a 422 naming it.
    static func from(params p: JSONObject, fallback: AccumulateMode = .auto) throws -> AccumulateMode {
        guard let v = p["sw_accumulate"], v != .null else { return fallback }
        guard let s = v.stringValue, let mode = AccumulateMode(rawValue: s) else {
            throw MONAILabelError.invalid("sw_accumulate must be one of auto, device, cpu")
        }
        return mode
    }
}

/// Where one inference runs (the request's `device`, else the process's default) and how it reacts to running
/// out of memory there. Every infer task that runs a network goes through `run`, so all of them place work
/// the same way and answer an out-of-memory the same way.
public struct InferPlacement: Sendable, Equatable {
    /// Where the network and the sliding windows run (upstream's `device` param; MONAI's `sw_device`).
    public var device: Device
    /// Where sliding-window output accumulates (MONAI's `device`).
    public var accumulate: AccumulateMode

    public init(device: Device, accumulate: AccumulateMode = .auto) {
        self.device = device
        self.accumulate = accumulate
    }

    /// The placement a task's merged params ask for: `device` (checked against the backend's devices, a 422
    /// naming it otherwise), else `fallback` (the model worker's own device, else the backend's first); and
    /// `sw_accumulate`.
    init(params p: JSONObject, fallback: Device? = nil) throws {
        let device = try DeviceList.requested(p["device"]) ?? fallback ?? .best
        self.init(device: device, accumulate: try AccumulateMode.from(params: p))
    }

    /// Runs `body` with the accumulation mode to use. A libtorch out-of-memory on a GPU is retried once, after
    /// the caching allocator has handed its unused blocks back (`releaseCache`), with the output accumulated on
    /// the CPU; a second one, or one on the CPU (where there is nothing to move elsewhere), is a 503 naming the
    /// device. Other errors pass through unchanged.
    public func run<T>(releaseCache: () -> Void = Torch.emptyCudaCache, _ body: (AccumulateMode) throws -> T) throws -> T {
        do {
            return try body(accumulate)
        } catch let e as TorchError where e.isOutOfMemory {
            guard device != .cpu else { throw Self.outOfMemory(e, on: device, retried: false) }
            releaseCache()
            do {
                return try body(.cpu)
            } catch let again as TorchError where again.isOutOfMemory {
                releaseCache()
                throw Self.outOfMemory(again, on: device, retried: true)
            }
        }
    }

    /// The answer to an allocation that failed on `device`: 503 (the server lacks the memory now; a smaller
    /// `roi_size` or `sw_batch_size`, or another device, may succeed), never the libtorch trace. libtorch's
    /// first line is kept (how much it tried to allocate), without paths.
    static func outOfMemory(_ e: TorchError, on device: Device, retried: Bool) -> MONAILabelError {
        let first = e.message.split(separator: "\n", maxSplits: 1).first.map(String.init) ?? e.message
        let cause = OutputTail.withoutPaths(String(first.prefix(300)))
        var detail = "Inference ran out of memory on \(device)"
        if retried { detail += " (also when retried with the sliding-window output on the CPU and the GPU cache released)" }
        detail += ": \(cause). Retry later, or use a smaller roi_size or sw_batch_size"
        if case .cuda = device { detail += ", or another device" }
        return MONAILabelError(.unavailable, detail)
    }

    /// Whether a sliding window accumulates on the CPU rather than on `device`: `cpu` always, `device` never,
    /// `auto` when the accumulators (`bytes`, nil when their size overflows) exceed 90% of the device's free
    /// memory (`freeBytes`, nil when the backend cannot tell: then on the device, as upstream). The 10% is slack
    /// for the allocator's rounding and fragmentation; the windows' own activations are already held by the
    /// caching allocator when this is decided (after the first batch) and are reused, not added.
    static func accumulatesOnCPU(mode: AccumulateMode, device: Device, bytes: Int?, freeBytes: Int?) -> Bool {
        guard device != .cpu else { return false }
        switch mode {
        case .cpu: return true
        case .device: return false
        case .auto:
            guard let bytes else { return true }
            guard let freeBytes else { return false }
            return bytes > freeBytes / 10 * 9
        }
    }

    /// Free memory of `device` now: the driver's figure for a GPU, nil for the CPU or when the backend cannot
    /// tell (built without CUDA headers).
    static func freeBytes(_ device: Device) -> Int? {
        guard case .cuda(let i) = device, Torch.cudaSupportBuilt else { return nil }
        return try? Torch.cudaMemoryInfo(device: i).free
    }
}

/// Device work around one request, in the process that runs the models.
enum DeviceMemory {
    /// Hands the GPU memory the request's tensors left in libtorch's caching allocator back to the driver, as
    /// upstream does after each inference (`torch.cuda.empty_cache()`): other model workers on the same GPU and
    /// other processes can then use it. Nothing on CPU-only backends.
    static func releaseAfterRequest() {
        guard Torch.cudaIsAvailable else { return }
        Torch.emptyCudaCache()
    }
}
