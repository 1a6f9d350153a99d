import Foundation
import TorchKit

extension SegmentationTask {
    /// Loads the network (weights, the inference engine's folding) and runs it once on zeros of the shape every
    /// request's network calls have: the sliding window pads each image to at least the window, so the batches
    /// are always `[sw_batch_size, in_channels, *roi_size]`. libtorch's and oneDNN's first-call work (kernel
    /// selection, primitive creation, the allocator's growth) is then done before the first request.
    func prewarm(on device: Device = .best) throws {
        guard let sw = try slidingWindow(params: [:]) else {
            try loader.withNetwork(on: device) { _ in }
            return
        }
        let channels = loader.networkSpec["in_channels"]?.intValue ?? 1
        let input = try Tensor.zeros([sw.swBatchSize, channels] + sw.roiSize, device: device)
        _ = try loader.withNetwork(on: device) { try $0.forward(input) }
        DeviceMemory.releaseAfterRequest()
    }
}

extension MONAILabelApp {
    /// Whether models are warmed at start-up (`--conf preload true`).
    public var preloadsModels: Bool { conf.preload }

    /// Warms every segmentation model (`SegmentationTask.prewarm`) in this process, one after another, so the
    /// first inference costs what a warm one does. Runs on the caller's thread; failures are reported through
    /// `report` and leave the model to load on its first request, as without pre-warming.
    public func prewarmModels(device: Device = .best, report: (String) -> Void) {
        for (name, task) in inferTasks {
            guard let t = task as? SegmentationTask else { continue }
            let started = DispatchTime.now().uptimeNanoseconds
            do {
                try t.prewarm(on: device)
                let seconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
                report("model \(name) pre-warmed in \(String(format: "%.2f", seconds)) s")
            } catch {
                report("model \(name) could not be pre-warmed: \(error)")
            }
        }
        ProcessMemory.trim()
    }
}
