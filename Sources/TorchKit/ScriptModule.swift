import CTorch
import Foundation
import TorchCheckpoint

/// A TorchScript module (`torch.jit.save` output) loaded with `torch::jit::load`.
///
/// Not thread-safe: confine one instance to one actor or serial queue.
public final class ScriptModule: @unchecked Sendable {
    let handle: mlt_jit_module

    /// Loads `url` onto `device`. A file libtorch cannot read (not TorchScript, or using operators or a format
    /// version this libtorch lacks) throws `TorchError` with libtorch's message.
    public init(contentsOf url: URL, device: Device = .cpu) throws {
        var out: mlt_jit_module?
        try checked("ScriptModule.load(\(url.path))") {
            mlt_jit_load(url.path, device.type, device.index, &out, $0)
        }
        guard let out else { throw TorchError(operation: "ScriptModule.load", message: "libtorch returned no module") }
        handle = out
    }

    deinit { mlt_jit_module_free(handle) }

    /// Calls `forward` with `inputs`; a tuple or list result is flattened into its tensors.
    public func forward(_ inputs: [Tensor], maxOutputs: Int = 64) throws -> [Tensor] {
        var outputs = [mlt_tensor?](repeating: nil, count: maxOutputs)
        var count = 0
        try withHandles(inputs) { h, n in
            try outputs.withUnsafeMutableBufferPointer { o in
                try checked("ScriptModule.forward") { mlt_jit_forward(handle, h, n, o.baseAddress, o.count, &count, $0) }
            }
        }
        return outputs.prefix(count).compactMap { $0.map { Tensor(owning: $0) } }
    }

    public func forward(_ input: Tensor) throws -> Tensor {
        let out = try forward([input])
        guard out.count == 1 else {
            throw TorchError(operation: "ScriptModule.forward", message: "expected one output tensor, got \(out.count)")
        }
        return out[0]
    }

    public func train(_ on: Bool = true) throws {
        try checked("ScriptModule.train") { mlt_jit_set_training(handle, on ? 1 : 0, $0) }
    }

    public func eval() throws { try train(false) }

    public func to(_ device: Device) throws {
        try checked("ScriptModule.to") { mlt_jit_to(handle, device.type, device.index, $0) }
    }

    /// Parameters, then buffers, with their dotted names: for a traced `torch.nn.Module` these are the names of
    /// its `state_dict()` (in a different order), so weights can move from a `.ts` file into a TorchKit module.
    public func namedState() throws -> [(name: String, tensor: Tensor)] {
        var count = 0
        try checked("ScriptModule.namedState") { mlt_jit_named_state(handle, nil, nil, 0, &count, $0) }
        var names = [UnsafeMutablePointer<CChar>?](repeating: nil, count: count)
        var tensors = [mlt_tensor?](repeating: nil, count: count)
        var written = 0
        try names.withUnsafeMutableBufferPointer { n in
            try tensors.withUnsafeMutableBufferPointer { t in
                try checked("ScriptModule.namedState") {
                    mlt_jit_named_state(handle, n.baseAddress, t.baseAddress, count, &written, $0)
                }
            }
        }
        var result: [(name: String, tensor: Tensor)] = []
        for (name, tensor) in zip(names.prefix(written), tensors.prefix(written)) {
            defer { mlt_string_free(name) }
            let owned = tensor.map { Tensor(owning: $0) }
            if let name, let owned { result.append((String(cString: name), owned)) }
        }
        return result
    }

    /// `namedState()` copied to the host as checkpoint tensors.
    public func stateDict() throws -> [(String, StoredTensor)] {
        try namedState().map { ($0.name, try $0.tensor.stored()) }
    }
}
