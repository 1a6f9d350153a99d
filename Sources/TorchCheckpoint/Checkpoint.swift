import Foundation

/// Reads and writes PyTorch `torch.save` checkpoints (the zip format of PyTorch >= 1.6) without Python and
/// without executing anything from the file.
///
/// Reading uses a restricted unpickler that accepts only what `torch.load(weights_only=True)` accepts for
/// plain checkpoints: dicts, `OrderedDict` state dicts, lists, tuples, numbers, strings, bytes, None and
/// tensors. Any other global (`os.system`, `builtins.eval`, ...) is refused by name before anything else
/// happens. Members are read by byte range, so a checkpoint is never loaded into memory whole.
///
/// Errors are `CheckpointError`s. Limits that only hostile files reach: nesting deeper than 200 levels,
/// more than 2 million objects, or tensor views (slices, transposes, broadcasts; whole-storage tensors
/// share the storage for free) materialising more than 4 x the file size + 64 MiB.
public enum Checkpoint {
    /// Bytes tensor views may always materialise, however small the file (an expanded 1-element storage...).
    static let minimumCopyBudget = 64 << 20

    /// The value a checkpoint file holds.
    public static func read(contentsOf url: URL) throws -> PickleValue {
        try read(try ZipReader(url: url))
    }

    /// The record names of a torch zip archive (a checkpoint or a TorchScript module), from its central directory
    /// only: what a caller checks before handing an untrusted file to a library that trusts it.
    public static func recordNames(in url: URL) throws -> [String] {
        try ZipReader(url: url).entries.map(\.name)
    }

    /// The value a checkpoint held in memory (an upload, say) holds.
    public static func read(bytes: [UInt8]) throws -> PickleValue {
        try read(try ZipReader(source: MemorySource(bytes)))
    }

    private static func read(_ zip: ZipReader) throws -> PickleValue {
        let prefix = try archivePrefix(zip)
        guard let pickleEntry = zip.entry(named: prefix + "data.pkl") else {
            throw CheckpointError(.missingRecord, "the archive has no \(prefix)data.pkl record")
        }
        let swapBytes = try isBigEndian(zip, prefix: prefix)
        let pickle = try zip.contents(of: pickleEntry)
        // Views (slices, transposes, broadcasts) are copied; legitimate checkpoints copy little, so a few
        // times the archive's size is ample and stops a small hostile file from demanding terabytes.
        let copyBudget = Int(clamping: min(zip.size, UInt64(Int.max / 8))) * 4 + Checkpoint.minimumCopyBudget
        return try Unpickler.load(pickle, copyBudget: copyBudget) { key, dtype, numel in
            guard let entry = zip.entry(named: prefix + "data/" + key) else {
                throw CheckpointError(.missingRecord, "storage \"\(key)\" is referenced by data.pkl but \(prefix)data/\(key) is not in the archive")
            }
            let (needed, overflow) = numel.multipliedReportingOverflow(by: dtype.size)
            guard !overflow, UInt64(needed) <= entry.uncompressedSize else {
                throw CheckpointError(
                    .invalidTensor,
                    "storage \"\(key)\" declares \(numel) \(dtype.rawValue) elements but its record has only \(entry.uncompressedSize) bytes")
            }
            var bytes = try zip.contents(of: entry)
            if bytes.count > needed { bytes.removeLast(bytes.count - needed) }
            if swapBytes { byteSwap(&bytes, elementSize: dtype.size) }
            return LoadedStorage(key: key, dtype: dtype, bytes: bytes)
        }
    }

    /// The tensors of a state dict, in file order.
    ///
    /// With `key` set (MONAI Label saves `{"model": state_dict, ...}`; some trainers use other keys), a
    /// top-level dict holding that key is unwrapped first; a file that is itself a state dict is accepted
    /// either way. Pass `key: nil` to require a bare state dict.
    public static func stateDict(from url: URL, key: String? = "model") throws -> [(name: String, tensor: StoredTensor)] {
        try stateDict(in: read(contentsOf: url), key: key)
    }

    /// The tensors of a state dict already read with `read(contentsOf:)`; see `stateDict(from:key:)`.
    public static func stateDict(in value: PickleValue, key: String? = "model") throws -> [(name: String, tensor: StoredTensor)] {
        guard case .dict(let top) = value else {
            throw CheckpointError(.unexpectedContent, "the checkpoint holds a \(value.kindName), not a state dict")
        }
        var dict = top
        // Like MONAI Label's `checkpoint.get(key, checkpoint)`; a tensor under `key` means a bare state dict
        // that happens to have a parameter of that name.
        if let key, let inner = top[key] {
            switch inner {
            case .dict(let unwrapped): dict = unwrapped
            case .tensor: break
            default:
                throw CheckpointError(.unexpectedContent, "checkpoint key \"\(key)\" holds a \(inner.kindName), not a state dict")
            }
        }
        return try dict.entries.map { entry in
            guard case .string(let name) = entry.key else {
                throw CheckpointError(.unexpectedContent, "state dict key \(entry.key.kindName) is not a string")
            }
            guard case .tensor(let tensor) = entry.value else {
                let hint = key.map { " (and it has no \"\($0)\" entry)" } ?? ""
                throw CheckpointError(.unexpectedContent, "state dict entry \"\(name)\" is a \(entry.value.kindName), not a tensor\(hint)")
            }
            return (name, tensor)
        }
    }

    /// The folder all records live under. PyTorch names it after the file and takes it from the first
    /// record; we accept any single folder holding a `data.pkl`.
    private static func archivePrefix(_ zip: ZipReader) throws -> String {
        let candidates = zip.entries.compactMap { entry -> String? in
            let parts = entry.name.split(separator: "/", omittingEmptySubsequences: false)
            return parts.count == 2 && parts[1] == "data.pkl" ? String(parts[0]) + "/" : nil
        }
        if candidates.count == 1 { return candidates[0] }
        if candidates.isEmpty {
            throw CheckpointError(.missingRecord, "no <archive>/data.pkl record: not a torch.save checkpoint")
        }
        if let first = zip.entries.first, let match = candidates.first(where: { first.name.hasPrefix($0) }) { return match }
        throw CheckpointError(.corruptZip, "several archives hold a data.pkl: \(candidates.joined(separator: ", "))")
    }

    private static func isBigEndian(_ zip: ZipReader, prefix: String) throws -> Bool {
        // Checkpoints from before PyTorch 1.10 have no byteorder record and were written little-endian.
        guard let entry = zip.entry(named: prefix + "byteorder") else { return false }
        guard entry.uncompressedSize <= 16 else { throw CheckpointError(.corruptZip, "byteorder record is \(entry.uncompressedSize) bytes") }
        switch String(decoding: try zip.contents(of: entry), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) {
        case "little": return false
        case "big": return true
        case let other: throw CheckpointError(.corruptZip, "unknown byteorder \"\(other)\"")
        }
    }

    private static func byteSwap(_ bytes: inout [UInt8], elementSize: Int) {
        guard elementSize > 1 else { return }
        bytes.withUnsafeMutableBufferPointer { buffer in
            var i = 0
            while i + elementSize <= buffer.count {
                var lo = i, hi = i + elementSize - 1
                while lo < hi {
                    buffer.swapAt(lo, hi)
                    lo += 1
                    hi -= 1
                }
                i += elementSize
            }
        }
    }
}

extension PickleValue {
    /// The Python type name, for messages.
    var kindName: String {
        switch self {
        case .none: return "None"
        case .bool: return "bool"
        case .int: return "int"
        case .float: return "float"
        case .string: return "str"
        case .bytes: return "bytes"
        case .list: return "list"
        case .tuple: return "tuple"
        case .dict(let d): return d.ordered ? "OrderedDict" : "dict"
        case .tensor: return "tensor"
        }
    }
}
