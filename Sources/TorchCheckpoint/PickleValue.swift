/// The values a weights-only checkpoint can hold, after our restricted unpickler has rebuilt them.
///
/// Only plain data and tensors exist here: there is no way to represent an arbitrary Python object, so
/// nothing read from a file can turn into code.
public indirect enum PickleValue: Sendable, Equatable {
    case none
    case bool(Bool)
    /// Python `int`; values outside `Int` (64-bit) are refused on read.
    case int(Int)
    case float(Double)
    case string(String)
    case bytes([UInt8])
    case list([PickleValue])
    case tuple([PickleValue])
    /// `dict` or `collections.OrderedDict`, with its insertion order kept.
    case dict(PickleDict)
    /// A tensor rebuilt from `torch._utils._rebuild_tensor_v2` or `_rebuild_parameter`.
    case tensor(StoredTensor)

    /// A `collections.OrderedDict` state dict with these entries, in this order.
    public static func stateDict(_ entries: [(name: String, tensor: StoredTensor)]) -> PickleValue {
        .dict(PickleDict(ordered: true, entries.map { PickleDict.Entry(key: .string($0.name), value: .tensor($0.tensor)) }))
    }

    /// The value stored under string key `key`, if this is a dict holding one.
    public subscript(key: String) -> PickleValue? {
        guard case .dict(let dict) = self else { return nil }
        return dict[key]
    }
}

/// A Python dict or `collections.OrderedDict`: entries in insertion order.
public struct PickleDict: Sendable, Equatable {
    /// One key/value pair.
    public struct Entry: Sendable, Equatable {
        public var key: PickleValue
        public var value: PickleValue

        public init(key: PickleValue, value: PickleValue) {
            self.key = key
            self.value = value
        }
    }

    /// Whether this was (and will be written as) a `collections.OrderedDict` rather than a plain `dict`.
    public var ordered: Bool
    public var entries: [Entry]
    /// The `_metadata` attribute PyTorch attaches to state dicts (per-module `version` numbers that
    /// `load_state_dict` passes to modules), kept so a read-then-written checkpoint loses nothing.
    public var metadata: PickleValue?

    public init(ordered: Bool = false, _ entries: [Entry] = [], metadata: PickleValue? = nil) {
        self.ordered = ordered
        self.entries = entries
        self.metadata = metadata
    }

    /// The value of the first entry whose key is the string `key`.
    public subscript(key: String) -> PickleValue? {
        entries.first { $0.key == .string(key) }?.value
    }
}
