import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One file in a zip's central directory.
struct ZipEntry: Sendable {
    var name: String
    var flags: UInt16
    var method: UInt16
    var crc32: UInt32
    var compressedSize: UInt64
    var uncompressedSize: UInt64
    var localHeaderOffset: UInt64
}

/// Little-endian field reads over a byte buffer, every one bounds-checked so hostile offsets become errors.
struct LittleEndianCursor {
    let bytes: [UInt8]
    var position: Int
    let context: String

    init(_ bytes: [UInt8], at position: Int = 0, context: String) {
        self.bytes = bytes
        self.position = position
        self.context = context
    }

    mutating func take(_ count: Int) throws -> ArraySlice<UInt8> {
        guard count >= 0, position <= bytes.count, count <= bytes.count - position else {
            throw CheckpointError(.corruptZip, "\(context) is truncated")
        }
        defer { position += count }
        return bytes[position..<(position + count)]
    }

    mutating func u16() throws -> UInt16 {
        let s = try take(2)
        return UInt16(s[s.startIndex]) | UInt16(s[s.startIndex + 1]) << 8
    }

    mutating func u32() throws -> UInt32 {
        let s = try take(4)
        return s.reversed().reduce(0) { $0 << 8 | UInt32($1) }
    }

    mutating func u64() throws -> UInt64 {
        let s = try take(8)
        return s.reversed().reduce(0) { $0 << 8 | UInt64($1) }
    }
}

/// Random access to an archive's bytes. Callers check every range against `size` first.
protocol ByteSource: AnyObject {
    var size: UInt64 { get }
    /// Exactly `count` bytes at `offset`.
    func read(at offset: UInt64, count: Int, what: String) throws -> [UInt8]
}

/// A file read by range with `pread`, so only the members asked for are ever in memory.
final class FileSource: ByteSource {
    private let descriptor: Int32
    let size: UInt64

    init(url: URL) throws {
        let fd = open(url.path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw CheckpointError(.io, "cannot open \(url.path): \(String(cString: strerror(errno)))")
        }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw CheckpointError(.io, "cannot stat \(url.path): \(reason)")
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            close(fd)
            throw CheckpointError(.io, "\(url.path) is not a regular file")
        }
        descriptor = fd
        size = UInt64(info.st_size)
    }

    deinit { close(descriptor) }

    func read(at offset: UInt64, count: Int, what: String) throws -> [UInt8] {
        var failure: CheckpointError?
        let bytes = [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            guard let base = buffer.baseAddress else {
                initialized = 0
                return
            }
            var done = 0
            while done < count {
                let n = pread(descriptor, base + done, count - done, off_t(offset) + off_t(done))
                if n > 0 {
                    done += n
                } else if n < 0 && errno == EINTR {
                    continue
                } else {
                    failure = n == 0
                        ? CheckpointError(.corruptZip, "\(what) is truncated (file shrank while reading?)")
                        : CheckpointError(.io, "cannot read \(what): \(String(cString: strerror(errno)))")
                    break
                }
            }
            initialized = failure == nil ? count : 0
        }
        if let failure { throw failure }
        return bytes
    }
}

/// An archive already in memory.
final class MemorySource: ByteSource {
    private let bytes: [UInt8]
    var size: UInt64 { UInt64(bytes.count) }

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    func read(at offset: UInt64, count: Int, what: String) throws -> [UInt8] {
        Array(bytes[Int(offset)..<(Int(offset) + count)])
    }
}

/// A read-only zip archive that reads the central directory once and then each member by byte range, so a
/// checkpoint of hundreds of MB is never loaded whole. Only stored (uncompressed) members can be read, which
/// is what `torch.save` writes.
final class ZipReader {
    private static let localHeaderSignature: UInt32 = 0x0403_4B50
    private static let centralHeaderSignature: UInt32 = 0x0201_4B50
    private static let zip64EndSignature: UInt32 = 0x0606_4B50

    let entries: [ZipEntry]
    private let index: [String: Int]
    private let source: ByteSource
    private var fileSize: UInt64 { source.size }
    /// The archive's size in bytes.
    var size: UInt64 { source.size }

    convenience init(url: URL) throws {
        try self.init(source: FileSource(url: url))
    }

    init(source: ByteSource) throws {
        self.source = source
        entries = try ZipReader.readCentralDirectory(source)
        var index: [String: Int] = [:]
        for (i, entry) in entries.enumerated() {
            guard index.updateValue(i, forKey: entry.name) == nil else {
                throw CheckpointError(.corruptZip, "the archive lists \"\(entry.name)\" twice")
            }
        }
        self.index = index
    }

    func entry(named name: String) -> ZipEntry? {
        index[name].map { entries[$0] }
    }

    /// Where a member's data starts in the file (after its local header).
    func dataOffset(of entry: ZipEntry) throws -> UInt64 {
        guard entry.localHeaderOffset <= fileSize, fileSize - entry.localHeaderOffset >= 30 else {
            throw CheckpointError(.corruptZip, "local header of \"\(entry.name)\" lies outside the file")
        }
        var header = LittleEndianCursor(
            try read(at: entry.localHeaderOffset, count: 30, what: "local header of \"\(entry.name)\""),
            context: "local header of \"\(entry.name)\"")
        guard try header.u32() == ZipReader.localHeaderSignature else {
            throw CheckpointError(.corruptZip, "bad local header signature for \"\(entry.name)\"")
        }
        header.position = 26
        let nameLength = UInt64(try header.u16())
        let extraLength = UInt64(try header.u16())
        return entry.localHeaderOffset + 30 + nameLength + extraLength
    }

    /// The bytes of a stored member, CRC-checked.
    func contents(of entry: ZipEntry) throws -> [UInt8] {
        guard entry.flags & 0x1 == 0 else {
            throw CheckpointError(.unsupportedZip, "\"\(entry.name)\" is encrypted")
        }
        guard entry.method == 0 else {
            throw CheckpointError(
                .unsupportedZip,
                "\"\(entry.name)\" is compressed (zip method \(entry.method)); only stored entries, as torch.save writes them, are supported")
        }
        guard entry.compressedSize == entry.uncompressedSize else {
            throw CheckpointError(.corruptZip, "stored entry \"\(entry.name)\" has different compressed and uncompressed sizes")
        }
        let dataStart = try dataOffset(of: entry)
        guard dataStart <= fileSize, entry.uncompressedSize <= fileSize - dataStart else {
            throw CheckpointError(
                .corruptZip,
                "\"\(entry.name)\" claims \(entry.uncompressedSize) bytes at offset \(dataStart) but the file has \(fileSize)")
        }
        let bytes = try read(at: dataStart, count: Int(entry.uncompressedSize), what: "\"\(entry.name)\"")
        let crc = CRC32.checksum(bytes)
        guard crc == entry.crc32 else {
            throw CheckpointError(.corruptZip, "CRC mismatch in \"\(entry.name)\" (the file is damaged)")
        }
        return bytes
    }

    private func read(at offset: UInt64, count: Int, what: String) throws -> [UInt8] {
        try ZipReader.readExactly(source, at: offset, count: count, what: what)
    }

    /// Checks the range against the real size first, so allocations are bounded by what is really there.
    private static func readExactly(_ source: ByteSource, at offset: UInt64, count: Int, what: String) throws -> [UInt8] {
        guard count >= 0, offset <= source.size, UInt64(count) <= source.size - offset else {
            throw CheckpointError(.corruptZip, "\(what) lies outside the file")
        }
        return try source.read(at: offset, count: count, what: what)
    }

    private static func readCentralDirectory(_ source: ByteSource) throws -> [ZipEntry] {
        let fileSize = source.size
        guard fileSize >= 22 else {
            throw CheckpointError(.notZip, "the file is \(fileSize) bytes, too short to be a zip archive")
        }
        // The end record sits in the last 22 bytes plus an optional comment of at most 65535 bytes.
        let tailLength = Int(min(fileSize, 22 + 65535))
        let tailStart = fileSize - UInt64(tailLength)
        let tail = try readExactly(source, at: tailStart, count: tailLength, what: "end of archive")
        var endPosition: Int?
        var p = tailLength - 22
        while p >= 0 {
            // "PK\u{5}\u{6}": end of central directory.
            if tail[p] == 0x50, tail[p + 1] == 0x4B, tail[p + 2] == 0x05, tail[p + 3] == 0x06 {
                let commentLength = Int(tail[p + 20]) | Int(tail[p + 21]) << 8
                if p + 22 + commentLength <= tailLength { endPosition = p; break }
            }
            p -= 1
        }
        guard let endPosition else {
            let head = try readExactly(source, at: 0, count: 4, what: "file header")
            if head == [0x50, 0x4B, 0x03, 0x04] {
                throw CheckpointError(.corruptZip, "no end-of-central-directory record: the zip archive is truncated")
            }
            throw CheckpointError(.notZip, "not a zip archive (legacy pre-1.6 torch.save files are not supported)")
        }
        var end = LittleEndianCursor(tail, at: endPosition + 4, context: "end-of-central-directory record")
        let diskNumber = try end.u16()
        let directoryDisk = try end.u16()
        _ = try end.u16()
        var entryCount = UInt64(try end.u16())
        var directorySize = UInt64(try end.u32())
        var directoryOffset = UInt64(try end.u32())
        let endOffset = tailStart + UInt64(endPosition)
        var directoryLimit = endOffset

        // "PK\u{6}\u{7}": a zip64 locator sits right before the classic end record.
        if endPosition >= 20, tail[endPosition - 20..<endPosition - 16].elementsEqual([0x50, 0x4B, 0x06, 0x07]) {
            var locator = LittleEndianCursor(tail, at: endPosition - 16, context: "zip64 locator")
            _ = try locator.u32()
            let zip64EndOffset = try locator.u64()
            guard zip64EndOffset <= endOffset - 20, endOffset - 20 - zip64EndOffset >= 56 else {
                throw CheckpointError(.corruptZip, "zip64 end record offset \(zip64EndOffset) is out of range")
            }
            var record = LittleEndianCursor(
                try readExactly(source, at: zip64EndOffset, count: 56, what: "zip64 end record"),
                context: "zip64 end record")
            guard try record.u32() == zip64EndSignature else {
                throw CheckpointError(.corruptZip, "bad zip64 end record signature")
            }
            record.position = 32
            entryCount = try record.u64()
            directorySize = try record.u64()
            directoryOffset = try record.u64()
            directoryLimit = zip64EndOffset
        } else if diskNumber != 0 || directoryDisk != 0 {
            throw CheckpointError(.unsupportedZip, "multi-disk zip archives are not supported")
        }

        guard directoryOffset <= directoryLimit, directorySize <= directoryLimit - directoryOffset else {
            throw CheckpointError(
                .corruptZip,
                "central directory (offset \(directoryOffset), \(directorySize) bytes) lies outside the file; it is truncated or damaged")
        }
        // Each central header is at least 46 bytes, which bounds the count before anything is allocated.
        guard entryCount <= directorySize / 46 else {
            throw CheckpointError(.corruptZip, "the archive claims \(entryCount) entries in a \(directorySize)-byte central directory")
        }
        let directory = try readExactly(source, at: directoryOffset, count: Int(directorySize), what: "central directory")
        var cursor = LittleEndianCursor(directory, context: "central directory")
        var entries: [ZipEntry] = []
        entries.reserveCapacity(Int(entryCount))
        for _ in 0..<entryCount {
            guard try cursor.u32() == centralHeaderSignature else {
                throw CheckpointError(.corruptZip, "bad central directory header signature at entry \(entries.count)")
            }
            cursor.position += 4
            let flags = try cursor.u16()
            let method = try cursor.u16()
            cursor.position += 4
            let crc = try cursor.u32()
            var compressed = UInt64(try cursor.u32())
            var uncompressed = UInt64(try cursor.u32())
            let nameLength = Int(try cursor.u16())
            let extraLength = Int(try cursor.u16())
            let commentLength = Int(try cursor.u16())
            cursor.position += 8
            var offset = UInt64(try cursor.u32())
            let name = String(decoding: try cursor.take(nameLength), as: UTF8.self)
            var extra = LittleEndianCursor(Array(try cursor.take(extraLength)), context: "extra field of \"\(name)\"")
            _ = try cursor.take(commentLength)
            while extra.position + 4 <= extra.bytes.count {
                let id = try extra.u16()
                let size = Int(try extra.u16())
                let fieldEnd = extra.position + size
                if id == 0x0001 {
                    // Only the fields whose 32-bit slot is saturated appear, in this order.
                    if uncompressed == 0xFFFF_FFFF { uncompressed = try extra.u64() }
                    if compressed == 0xFFFF_FFFF { compressed = try extra.u64() }
                    if offset == 0xFFFF_FFFF { offset = try extra.u64() }
                }
                guard fieldEnd <= extra.bytes.count else {
                    throw CheckpointError(.corruptZip, "extra field of \"\(name)\" is truncated")
                }
                extra.position = fieldEnd
            }
            entries.append(ZipEntry(
                name: name, flags: flags, method: method, crc32: crc,
                compressedSize: compressed, uncompressedSize: uncompressed, localHeaderOffset: offset))
        }
        return entries
    }
}
