import Foundation
import TorchKit

/// libtorch's process-wide setup, for the server and its children (jobs, model workers), so no layer above
/// the domain needs TorchKit.
public enum TorchRuntime {
    /// Loads the libtorch backend; throws when it cannot be found or opened.
    public static func load() throws { try Torch.loadBackend() }

    /// libtorch defaults to one thread in these processes; one per core unless `MONAI_LABEL_TORCH_THREADS`
    /// (`settings.torchThreads`) says otherwise.
    public static func configureThreads(_ settings: Settings) {
        try? Torch.setNumThreads(settings.torchThreads > 0 ? settings.torchThreads : Torch.defaultNumThreads)
        // Every process that runs models comes through here: cuDNN's autotuner (MONAI_LABEL_CUDNN_BENCHMARK)
        // picks the fastest convolution algorithms for the fixed window shapes of inference and training.
        Torch.setCudnnBenchmark(settings.cudnnBenchmark)
    }

    /// `libtorch: <version> (backend <path>)` and `devices: ...` lines for `--version`, or the reason there is
    /// no backend.
    public static func versionLines() -> String {
        do {
            try Torch.loadBackend()
        } catch {
            return "libtorch: no backend (\((error as? TorchError)?.message ?? "\(error)"))"
        }
        return """
            libtorch: \(Torch.versionString) (backend \(Torch.backendPath ?? "?"))
            devices: \(DeviceList.names().joined(separator: ", "))
            """
    }
}
