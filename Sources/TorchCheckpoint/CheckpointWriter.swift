import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension Checkpoint {
    /// Writes `value` as a `torch.save`-format checkpoint that `torch.load(weights_only=True)` reads back.
    ///
    /// Dicts marked `ordered` become `collections.OrderedDict` (with their `_metadata`, if any), tensors
    /// become `_rebuild_tensor_v2` calls over one little-endian storage record each, aligned to 64 bytes.
    /// The file is replaced atomically: written to a temporary file in the same directory, flushed to disk,
    /// renamed over `url`, and the directory flushed, so readers see the old or the new checkpoint, never
    /// a partial one. Torch 2.x's weights-only loader reads every `PickleValue`; torch 1.13's has no opcode
    /// for floats and no allowlisted way to build bytes, so it reads only checkpoints without those.
    public static func write(_ value: PickleValue, to url: URL) throws {
        try write(value, to: url, forceZip64: false)
    }

    /// Writes `stateDict` wrapped as `{key: OrderedDict(stateDict), extra...}` when `key` is given (MONAI
    /// Label's layout is `key: "model"`), or as a bare `OrderedDict` state dict when `key` is nil.
    public static func write(
        stateDict: [(name: String, tensor: StoredTensor)], key: String? = nil,
        extra: [(key: String, value: PickleValue)] = [], to url: URL
    ) throws {
        let sd = PickleValue.stateDict(stateDict)
        guard let key else {
            guard extra.isEmpty else { throw CheckpointError(.unwritableValue, "extra entries need a wrapping key") }
            try write(sd, to: url)
            return
        }
        let entries = [PickleDict.Entry(key: .string(key), value: sd)]
            + extra.map { PickleDict.Entry(key: .string($0.key), value: $0.value) }
        try write(.dict(PickleDict(entries)), to: url)
    }

    static func write(_ value: PickleValue, to url: URL, forceZip64: Bool) throws {
        let (pickle, storages) = try Pickler.pickle(value)
        let directory = url.deletingLastPathComponent()
        let temporary = directory.appendingPathComponent(".\(url.lastPathComponent).\(UUID().uuidString).tmp")
        let fd = open(temporary.path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw CheckpointError(.io, "cannot create \(temporary.path): \(String(cString: strerror(errno)))")
        }
        var pending = true
        defer {
            if pending {
                close(fd)
                unlink(temporary.path)
            }
        }
        // PyTorch names the archive folder after the file; any name works for torch.load.
        let archive = url.deletingPathExtension().lastPathComponent.filter { $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" || $0 == "." }
        let prefix = (archive.isEmpty ? "archive" : archive) + "/"
        var zip = ZipWriter(sink: .file(descriptor: fd, path: temporary.path), forceZip64: forceZip64)
        try zip.add(name: prefix + "data.pkl", bytes: pickle)
        try zip.add(name: prefix + "byteorder", bytes: Array("little".utf8))
        for storage in storages {
            try zip.add(name: prefix + "data/" + storage.key, bytes: storage.bytes)
        }
        try zip.add(name: prefix + "version", bytes: Array("3\n".utf8))
        try zip.finish()
        guard fsync(fd) == 0 else {
            throw CheckpointError(.io, "cannot flush \(temporary.path): \(String(cString: strerror(errno)))")
        }
        pending = false
        guard close(fd) == 0 else {
            unlink(temporary.path)
            throw CheckpointError(.io, "cannot close \(temporary.path): \(String(cString: strerror(errno)))")
        }
        guard rename(temporary.path, url.path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary.path)
            throw CheckpointError(.io, "cannot move checkpoint into place at \(url.path): \(reason)")
        }
        let dirfd = open(directory.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dirfd >= 0 {
            // The rename is what makes the new file visible; flushing the directory makes it survive a crash.
            let synced = fsync(dirfd)
            close(dirfd)
            guard synced == 0 else {
                throw CheckpointError(.io, "cannot flush directory \(directory.path): \(String(cString: strerror(errno)))")
            }
        }
    }
}
