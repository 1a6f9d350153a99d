import CTorch
import Foundation

/// Process-wide libtorch settings and queries.
public enum Torch {
    /// Loads the libtorch backend library once per process: `MONAILABEL_TORCH_BACKEND` when set, else
    /// `libmonailabel_torch.so` next to the executable. Every other TorchKit call needs it and ends the
    /// process when it is missing, so entry points call this first and report the error.
    public static func loadBackend() throws {
        if let message = mlt_backend_load() {
            throw TorchError(operation: "loadBackend", message: String(cString: message))
        }
    }

    /// Where the loaded backend library lives; nil until `loadBackend()` succeeded.
    public static var backendPath: String? { mlt_backend_path().map { String(cString: $0) } }

    /// libtorch's own version string for the backend's build (`TORCH_VERSION`, e.g. "2.13.0").
    public static var versionString: String { String(cString: mlt_version_string()) }

    /// Version of the linked libtorch as (major, minor).
    public static var version: (major: Int, minor: Int) {
        let v = Int(mlt_version())
        return (v / 100, v % 100)
    }

    /// Seeds libtorch's global generators (CPU and CUDA).
    public static func manualSeed(_ seed: UInt64) { mlt_manual_seed(seed) }

    /// Intra-op threads libtorch uses for the calling thread's parallel regions.
    public static var numThreads: Int { Int(mlt_get_num_threads()) }

    /// The default for the thread-count setting: every core the process may use. libtorch itself starts
    /// with 1 on some machines, so callers set this explicitly at start-up.
    public static var defaultNumThreads: Int { max(1, ProcessInfo.processInfo.activeProcessorCount) }

    /// Sets libtorch's intra-op thread count. OpenMP keeps the count per OS thread and libtorch copies the
    /// global value into a thread on its first parallel op, so set it once at start-up, before model work.
    public static func setNumThreads(_ n: Int) throws {
        try checked("setNumThreads") { mlt_set_num_threads(Int32(clamping: n), $0) }
    }

    public static var cudaIsAvailable: Bool { mlt_cuda_is_available() != 0 }
    public static var cudaDeviceCount: Int { Int(mlt_cuda_device_count()) }

    /// Whether the backend was compiled with CUDA's headers (`MLT_WITH_CUDA`): only then can it report free GPU
    /// memory (`cudaMemoryInfo`) and release the allocator's cache (`emptyCudaCache`).
    public static var cudaSupportBuilt: Bool { mlt_cuda_built() != 0 }

    /// Free and total bytes of GPU `index` as the driver reports them (other processes' use, and what this
    /// process's caching allocator holds, count as used).
    public static func cudaMemoryInfo(device index: Int) throws -> (free: Int, total: Int) {
        var free: Int64 = 0, total: Int64 = 0
        try checked("cudaMemoryInfo") { mlt_cuda_memory_info(Int32(clamping: index), &free, &total, $0) }
        return (Int(free), Int(total))
    }

    /// GPU `index`'s product name as the driver reports it (`torch.cuda.get_device_name`); needs a backend
    /// built with CUDA's headers.
    public static func cudaDeviceName(device index: Int) throws -> String {
        var name: UnsafeMutablePointer<CChar>?
        try checked("cudaDeviceName") { mlt_cuda_device_name(Int32(clamping: index), &name, $0) }
        guard let name else { return "" }
        defer { mlt_string_free(name) }
        return String(cString: name)
    }

    /// Hands the CUDA caching allocator's unused blocks back to the driver (`torch.cuda.empty_cache()`), so other
    /// processes sharing the GPU can use them; nothing on a backend without CUDA.
    public static func emptyCudaCache() { mlt_cuda_empty_cache() }

    /// Sets cuDNN's autotuner (`torch.backends.cudnn.benchmark`) process-wide; returns the previous value.
    @discardableResult
    public static func setCudnnBenchmark(_ enabled: Bool) -> Bool { mlt_cuda_set_cudnn_benchmark(enabled ? 1 : 0) != 0 }

    /// Whether operations on the calling thread record autograd history.
    public static var isGradEnabled: Bool { mlt_is_grad_enabled() != 0 }

    /// Runs `body` without recording autograd history (inference, in-place parameter updates).
    /// Grad mode is per OS thread in libtorch; `body` is synchronous, so it cannot resume elsewhere.
    public static func withNoGrad<T>(_ body: () throws -> T) rethrows -> T {
        let previous = mlt_set_grad_enabled(0)
        defer { mlt_set_grad_enabled(previous) }
        return try body()
    }

    /// Runs `body` with autograd recording on, e.g. a training step inside an inference scope.
    public static func withGrad<T>(_ body: () throws -> T) rethrows -> T {
        let previous = mlt_set_grad_enabled(1)
        defer { mlt_set_grad_enabled(previous) }
        return try body()
    }
}
