import Foundation
import TorchKit

/// Which model workers serve which device: one group of `MONAI_LABEL_INFER_WORKERS` workers per GPU, or one
/// `cpu` group on a CPU-only backend (as before there were groups).
public enum DeviceRouting {
    /// The worker groups for a backend with `cudaDevices` GPUs: `cuda:0` ... `cuda:N-1`, or `cpu` without one.
    public static func groups(cudaDevices: Int) -> [String] {
        cudaDevices > 0 ? (0..<cudaDevices).map { Device.cuda($0).description } : [Device.cpu.description]
    }

    /// The groups for the loaded backend's devices.
    public static func backendGroups() -> [String] {
        groups(cudaDevices: Torch.cudaIsAvailable ? Torch.cudaDeviceCount : 0)
    }

    /// The device a client's own `device` param pins its request to (a name, or a list whose first is used, as
    /// upstream); nil when it names none, or names bare `cuda`, which here means any GPU (the least-loaded one)
    /// rather than always the first. A malformed or unavailable name is a 422 naming `device`.
    static func pinned(_ value: JSONValue?) throws -> Device? {
        guard let value, value != .null else { return nil }
        var name = value.stringValue
        if case .array(let a) = value { name = a.first?.stringValue }
        if name == "cuda" { return nil }
        return try DeviceList.requested(value)
    }
}
