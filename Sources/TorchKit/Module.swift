import TorchCheckpoint

/// A named slot for a module's parameter or buffer. Modules read `tensor` at each forward, so moving a module
/// to another device or loading a state dict updates every user of the slot.
public final class Parameter {
    public internal(set) var tensor: Tensor

    /// A slot for `tensor`, to register with `Module.adopt`/`adoptBuffer` (layers create slots before `super.init`).
    public init(_ tensor: Tensor) { self.tensor = tensor }
}

/// Base of the module tree, mirroring `torch.nn.Module`'s naming: parameters and buffers registered under
/// names, child modules under names, so `stateDict()` yields PyTorch's dotted keys in PyTorch's order
/// (a module's own parameters, then its buffers, then each child's entries).
///
/// Not thread-safe, hence not `Sendable`: create a model inside the actor (or serial queue) that uses it, or
/// hand it over with `sending`.
open class Module {
    private var parameterSlots: [(String, Parameter)] = []
    private var bufferSlots: [(String, Parameter)] = []
    private var childModules: [(String, Module)] = []

    /// Training mode (dropout active, batch statistics used and tracked); see `train(_:)`/`eval()`.
    public private(set) var isTraining = true

    public init() {}

    /// Registers a trainable tensor under `name` and makes it require grad.
    @discardableResult
    public func registerParameter(_ name: String, _ tensor: Tensor) throws -> Parameter {
        try checkFree(name)
        try tensor.setRequiresGrad(true)
        let slot = Parameter(tensor)
        parameterSlots.append((name, slot))
        return slot
    }

    /// Registers non-trainable state saved in the state dict (running statistics, counters).
    @discardableResult
    public func registerBuffer(_ name: String, _ tensor: Tensor) throws -> Parameter {
        try checkFree(name)
        let slot = Parameter(tensor)
        bufferSlots.append((name, slot))
        return slot
    }

    /// Registers an existing slot as a parameter (layers create their slots before `super.init`).
    public func adopt(_ name: String, _ slot: Parameter) throws {
        try checkFree(name)
        try slot.tensor.setRequiresGrad(true)
        parameterSlots.append((name, slot))
    }

    /// Registers an existing slot as a buffer.
    public func adoptBuffer(_ name: String, _ slot: Parameter) throws {
        try checkFree(name)
        bufferSlots.append((name, slot))
    }

    /// Registers `module` as a child under `name`, which prefixes its state-dict keys.
    @discardableResult
    public func registerModule<M: Module>(_ name: String, _ module: M) throws -> M {
        try checkFree(name)
        childModules.append((name, module))
        module.train(isTraining)
        return module
    }

    private func checkFree(_ name: String) throws {
        guard !name.isEmpty, !name.contains(".") else {
            throw TorchError(operation: "Module.register", message: "invalid name '\(name)'")
        }
        let taken = parameterSlots.contains { $0.0 == name } || bufferSlots.contains { $0.0 == name }
            || childModules.contains { $0.0 == name }
        if taken { throw TorchError(operation: "Module.register", message: "name '\(name)' is already registered") }
    }

    /// Direct children in registration order.
    public var children: [(name: String, module: Module)] { childModules.map { ($0.0, $0.1) } }

    /// Every parameter of this module and its descendants, with dotted names, in PyTorch's order. A module
    /// registered under two names (DynUNet's `skip_layers`) contributes its parameters once, under the first.
    public func namedParameters() -> [(name: String, parameter: Parameter)] {
        var result: [(name: String, parameter: Parameter)] = []
        collect(prefix: "", parameters: true, buffers: false, into: &result)
        return unique(result)
    }

    /// Every buffer of this module and its descendants, with dotted names, each once.
    public func namedBuffers() -> [(name: String, parameter: Parameter)] {
        var result: [(name: String, parameter: Parameter)] = []
        collect(prefix: "", parameters: false, buffers: true, into: &result)
        return unique(result)
    }

    private func unique(_ entries: [(name: String, parameter: Parameter)]) -> [(name: String, parameter: Parameter)] {
        var seen = Set<ObjectIdentifier>()
        return entries.filter { seen.insert(ObjectIdentifier($0.parameter)).inserted }
    }

    /// The trainable tensors, for an optimizer.
    public func parameters() -> [Tensor] { namedParameters().map { $0.parameter.tensor } }

    /// Parameters and buffers with their state-dict names, in `torch.nn.Module.state_dict()` order; like
    /// PyTorch's state dict, a tensor reachable under two names is listed under both.
    public func namedState() -> [(name: String, parameter: Parameter)] {
        var result: [(name: String, parameter: Parameter)] = []
        collect(prefix: "", parameters: true, buffers: true, into: &result)
        return result
    }

    private func collect(prefix: String, parameters: Bool, buffers: Bool,
                         into result: inout [(name: String, parameter: Parameter)])
    {
        if parameters { for (n, p) in parameterSlots { result.append((prefix + n, p)) } }
        if buffers { for (n, b) in bufferSlots { result.append((prefix + n, b)) } }
        for (n, child) in childModules {
            child.collect(prefix: prefix + n + ".", parameters: parameters, buffers: buffers, into: &result)
        }
    }

    /// The state dict, as `torch.nn.Module.state_dict()` names and orders it, copied to the host.
    public func stateDict() throws -> [(String, StoredTensor)] {
        try namedState().map { ($0.name, try $0.parameter.tensor.detach().stored()) }
    }

    /// Copies `stateDict` into this module's tensors in place (keeping their dtype and device, so optimizers
    /// holding them stay valid). Shape mismatches always fail; missing and unexpected keys fail when `strict`.
    /// Nothing is modified when it fails.
    public func load(stateDict: [(String, StoredTensor)], strict: Bool = true) throws {
        let own = namedState()
        var incoming: [String: StoredTensor] = [:]
        for (name, t) in stateDict { incoming[name] = t }
        let ownNames = Set(own.map { $0.name })
        var error = StateDictError(missingKeys: [], unexpectedKeys: [], shapeMismatches: [])
        for (name, slot) in own {
            guard let t = incoming[name] else {
                if strict { error.missingKeys.append(name) }
                continue
            }
            let expected = slot.tensor.shape
            if t.shape != expected {
                error.shapeMismatches.append(.init(name: name, expected: expected, found: t.shape))
            }
        }
        if strict { error.unexpectedKeys = stateDict.map { $0.0 }.filter { !ownNames.contains($0) } }
        if !error.missingKeys.isEmpty || !error.unexpectedKeys.isEmpty || !error.shapeMismatches.isEmpty {
            throw error
        }
        let sources = try own.compactMap { name, slot in try incoming[name].map { (slot, try Tensor($0)) } }
        try Torch.withNoGrad {
            for (slot, source) in sources { try slot.tensor.copy(from: source) }
        }
    }

    /// Sets training mode on this module and its descendants.
    public func train(_ on: Bool = true) {
        isTraining = on
        for (_, child) in childModules { child.train(on) }
    }

    /// Evaluation mode: `train(false)`.
    public func eval() { train(false) }

    /// Moves (or converts) every parameter and buffer; parameters stay leaves that require grad.
    /// Create optimizers after moving, as with PyTorch.
    public func to(_ device: Device) throws {
        for (_, slot) in namedState() where slot.tensor.device != device {
            let wasParameter = slot.tensor.requiresGrad
            let moved = try slot.tensor.detach().to(device)
            if wasParameter { try moved.setRequiresGrad(true) }
            slot.tensor = moved
        }
    }

    /// Drops the accumulated gradients of every parameter.
    public func zeroGrad() throws {
        for (_, p) in namedParameters() { try p.tensor.zeroGrad() }
    }
}

/// A module with a single-tensor forward, the unit `Sequential` chains.
public protocol Layer: Module {
    func forward(_ input: Tensor) throws -> Tensor
}

extension Layer {
    public func callAsFunction(_ input: Tensor) throws -> Tensor { try forward(input) }
}
