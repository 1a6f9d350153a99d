import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Streams stored (uncompressed) members into a zip file the way PyTorch's `PyTorchStreamWriter` does:
/// each member's data starts on a 64-byte boundary (padding goes in an "FB" extra field), so readers can
/// map storages in place. ZIP64 records are added when sizes or offsets need them.
struct ZipWriter {
    static let alignment: UInt64 = 64
    private static let limit32: UInt64 = 0xFFFF_FFFF

    private struct Written {
        var name: [UInt8]
        var crc: UInt32
        var size: UInt64
        var offset: UInt64
    }

    /// Where the archive's bytes go, in order: a file descriptor or, in tests, memory.
    enum Sink {
        case file(descriptor: Int32, path: String)
        case memory
    }

    private let sink: Sink
    /// The archive so far, for `.memory` sinks.
    private(set) var bytes: [UInt8] = []
    /// Writes ZIP64 records even for small archives; lets tests exercise the ZIP64 paths of the reader.
    private let forceZip64: Bool
    private var offset: UInt64 = 0
    private var written: [Written] = []

    init(sink: Sink, forceZip64: Bool = false) {
        self.sink = sink
        self.forceZip64 = forceZip64
    }

    mutating func add(name: String, bytes: [UInt8]) throws {
        let nameBytes = Array(name.utf8)
        let size = UInt64(bytes.count)
        let crc = CRC32.checksum(bytes)
        let zip64 = forceZip64 || size >= ZipWriter.limit32 || offset >= ZipWriter.limit32
        var header: [UInt8] = []
        header.appendLE(0x0403_4B50, 4)
        header.appendLE(zip64 ? 45 : 20, 2)
        header.appendLE(0, 2) // flags
        header.appendLE(0, 2) // stored
        header.appendLE(0, 2) // time
        header.appendLE(0x21, 2) // date: 1980-01-01
        header.appendLE(UInt64(crc), 4)
        header.appendLE(zip64 ? ZipWriter.limit32 : size, 4)
        header.appendLE(zip64 ? ZipWriter.limit32 : size, 4)
        header.appendLE(UInt64(nameBytes.count), 2)
        var extra: [UInt8] = []
        if zip64 {
            extra.appendLE(0x0001, 2)
            extra.appendLE(16, 2)
            extra.appendLE(size, 8)
            extra.appendLE(size, 8)
        }
        let unpadded = offset + 30 + UInt64(nameBytes.count) + UInt64(extra.count) + 4
        let padding = (ZipWriter.alignment - unpadded % ZipWriter.alignment) % ZipWriter.alignment
        extra.append(contentsOf: [0x46, 0x42]) // "FB", as PyTorch names its padding field
        extra.appendLE(padding, 2)
        extra.append(contentsOf: [UInt8](repeating: 0x5A, count: Int(padding)))
        header.appendLE(UInt64(extra.count), 2)
        header.append(contentsOf: nameBytes)
        header.append(contentsOf: extra)
        written.append(Written(name: nameBytes, crc: crc, size: size, offset: offset))
        try emit(header)
        try emit(bytes)
    }

    /// Writes the central directory and end records.
    mutating func finish() throws {
        let directoryOffset = offset
        var directory: [UInt8] = []
        for entry in written {
            let zip64Size = forceZip64 || entry.size >= ZipWriter.limit32
            let zip64Offset = forceZip64 || entry.offset >= ZipWriter.limit32
            var extra: [UInt8] = []
            if zip64Size || zip64Offset {
                extra.appendLE(0x0001, 2)
                extra.appendLE(UInt64((zip64Size ? 16 : 0) + (zip64Offset ? 8 : 0)), 2)
                if zip64Size {
                    extra.appendLE(entry.size, 8)
                    extra.appendLE(entry.size, 8)
                }
                if zip64Offset { extra.appendLE(entry.offset, 8) }
            }
            directory.appendLE(0x0201_4B50, 4)
            directory.appendLE(extra.isEmpty ? 20 : 45, 2) // made by
            directory.appendLE(extra.isEmpty ? 20 : 45, 2) // needed
            directory.appendLE(0, 2)
            directory.appendLE(0, 2)
            directory.appendLE(0, 2)
            directory.appendLE(0x21, 2)
            directory.appendLE(UInt64(entry.crc), 4)
            directory.appendLE(zip64Size ? ZipWriter.limit32 : entry.size, 4)
            directory.appendLE(zip64Size ? ZipWriter.limit32 : entry.size, 4)
            directory.appendLE(UInt64(entry.name.count), 2)
            directory.appendLE(UInt64(extra.count), 2)
            directory.appendLE(0, 2) // comment
            directory.appendLE(0, 2) // disk
            directory.appendLE(0, 2) // internal attributes
            directory.appendLE(0, 4) // external attributes
            directory.appendLE(zip64Offset ? ZipWriter.limit32 : entry.offset, 4)
            directory.append(contentsOf: entry.name)
            directory.append(contentsOf: extra)
        }
        try emit(directory)
        let directorySize = UInt64(directory.count)
        let count = UInt64(written.count)
        let needsZip64 = forceZip64 || count >= 0xFFFF || directorySize >= ZipWriter.limit32
            || directoryOffset >= ZipWriter.limit32
        var end: [UInt8] = []
        if needsZip64 {
            let zip64EndOffset = offset
            end.appendLE(0x0606_4B50, 4)
            end.appendLE(44, 8)
            end.appendLE(45, 2)
            end.appendLE(45, 2)
            end.appendLE(0, 4)
            end.appendLE(0, 4)
            end.appendLE(count, 8)
            end.appendLE(count, 8)
            end.appendLE(directorySize, 8)
            end.appendLE(directoryOffset, 8)
            end.appendLE(0x0706_4B50, 4)
            end.appendLE(0, 4)
            end.appendLE(zip64EndOffset, 8)
            end.appendLE(1, 4)
        }
        end.appendLE(0x0605_4B50, 4)
        end.appendLE(0, 2)
        end.appendLE(0, 2)
        end.appendLE(needsZip64 ? 0xFFFF : count, 2)
        end.appendLE(needsZip64 ? 0xFFFF : count, 2)
        end.appendLE(needsZip64 ? ZipWriter.limit32 : directorySize, 4)
        end.appendLE(needsZip64 ? ZipWriter.limit32 : directoryOffset, 4)
        end.appendLE(0, 2)
        try emit(end)
    }

    private mutating func emit(_ chunk: [UInt8]) throws {
        switch sink {
        case .memory:
            bytes.append(contentsOf: chunk)
        case .file(let descriptor, let path):
            try chunk.withUnsafeBytes { buffer in
                guard let base = buffer.baseAddress else { return }
                var done = 0
                while done < buffer.count {
                    let n = write(descriptor, base + done, buffer.count - done)
                    if n > 0 {
                        done += n
                    } else if n < 0 && errno == EINTR {
                        continue
                    } else {
                        throw CheckpointError(.io, "cannot write \(path): \(String(cString: strerror(errno)))")
                    }
                }
            }
        }
        offset += UInt64(chunk.count)
    }
}

extension [UInt8] {
    fileprivate mutating func appendLE(_ value: UInt64, _ width: Int) {
        for i in 0..<width { append(UInt8(truncatingIfNeeded: value >> (8 * UInt64(i)))) }
    }
}
