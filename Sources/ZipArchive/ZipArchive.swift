import CZlib
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Bounds a zip archive must keep; all are checked on the central directory, before anything is inflated.
public struct ZipLimits: Sendable {
    /// Members (files and folders).
    public var maxEntries = 10_000
    /// The central directory's size in bytes (read whole into memory).
    public var maxDirectoryBytes = 64 << 20
    /// The sum of the members' uncompressed sizes.
    public var maxTotalBytes: UInt64 = 8 << 30
    /// A deflated member above `ratioFloor` bytes may not inflate to more than this many times its compressed size
    /// (real bundles stay under 20; a zip bomb reaches 1000).
    public var maxRatio: UInt64 = 100
    public var ratioFloor: UInt64 = 1 << 20
    /// A member's path in bytes, and in folders.
    public var maxPathBytes = 1024
    public var maxDepth = 32

    public init() {}
}

/// Why an archive was refused or could not be extracted; the message names the member at fault.
public struct ZipError: Error, CustomStringConvertible, Sendable, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// One member of an archive, as its central directory lists it, checked.
public struct ZipMember: Sendable, Equatable {
    /// The relative path, `/`-separated, without a trailing slash; no `.`/`..` component, never absolute.
    public let path: String
    public let isDirectory: Bool
    /// Uncompressed size in bytes.
    public let size: UInt64
    let method: UInt16
    let crc32: UInt32
    let compressedSize: UInt64
    let localHeaderOffset: UInt64
    /// Where the member's data starts (after its local header), checked against the file.
    let dataOffset: UInt64
}

/// A zip archive read from hostile input: the central directory and every local header are checked when it is
/// opened (truncation, overlapping members, sizes, entry count, compression ratio, names that would leave the
/// destination, symbolic links and special files, encryption, methods other than stored and deflate), so
/// `extract` starts only on an archive that passed all of them; while extracting, a member that inflates past its
/// declared size or whose CRC-32 differs stops it.
public final class ZipArchive {
    public let members: [ZipMember]
    /// The archive's size in bytes.
    public let fileSize: UInt64
    private let descriptor: Int32
    private let name: String

    private static let chunk = 256 * 1024

    /// Opens and checks the archive at `url`. Throws `ZipError`.
    public init(url: URL, limits: ZipLimits = ZipLimits()) throws {
        name = url.lastPathComponent
        let fd = open(url.path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ZipError("cannot open \(url.lastPathComponent): \(String(cString: strerror(errno)))") }
        var info = stat()
        guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG, info.st_size >= 0 else {
            close(fd)
            throw ZipError("\(url.lastPathComponent) is not a regular file")
        }
        descriptor = fd
        fileSize = UInt64(info.st_size)
        do {
            members = try Self.readMembers(fd: fd, fileSize: fileSize, limits: limits)
        } catch {
            close(fd)
            throw error
        }
    }

    deinit { close(descriptor) }

    /// Writes every member under `root`, an existing empty folder the caller made (and renames into place once
    /// this returns, so a crash never leaves a half-extracted tree where a complete one is expected). Files are
    /// created exclusively (never through a link: nothing here creates one) and synced. Throws `ZipError`; what was
    /// written stays in `root` for the caller to remove.
    public func extract(into root: URL) throws {
        var made: [String] = [root.path]
        for m in members {
            let parts = m.path.split(separator: "/").map(String.init)
            var dir = root.path
            for p in (m.isDirectory ? parts : Array(parts.dropLast())) {
                dir += "/" + p
                if mkdir(dir, 0o755) == 0 {
                    made.append(dir)
                } else if errno != EEXIST || !Self.isDirectory(dir) {
                    throw ZipError("\(m.path): cannot create folder \(p): \(String(cString: strerror(errno)))")
                }
            }
            if !m.isDirectory { try write(m, to: root.path + "/" + m.path) }
        }
        for dir in made.reversed() {
            let fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            if fd >= 0 {
                fsync(fd)
                close(fd)
            }
        }
    }

    private static func isDirectory(_ path: String) -> Bool {
        var s = stat()
        return lstat(path, &s) == 0 && (s.st_mode & S_IFMT) == S_IFDIR
    }

    /// One member's bytes into a new file: copied (stored) or inflated, counted against the declared size, CRC-checked.
    private func write(_ m: ZipMember, to path: String) throws {
        let out = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644)
        guard out >= 0 else { throw ZipError("\(m.path): cannot create the file: \(String(cString: strerror(errno)))") }
        defer { close(out) }
        let input = UnsafeMutablePointer<UInt8>.allocate(capacity: Self.chunk)
        let output = UnsafeMutablePointer<UInt8>.allocate(capacity: Self.chunk)
        defer {
            input.deallocate()
            output.deallocate()
        }
        var crc = CZlib.crc32(0, nil, 0)
        var produced: UInt64 = 0
        var position = m.dataOffset
        var left = m.compressedSize

        func emit(_ bytes: UnsafeMutablePointer<UInt8>, _ count: Int) throws {
            guard count > 0 else { return }
            produced += UInt64(count)
            guard produced <= m.size else {
                throw ZipError("\(m.path): inflates past its declared \(m.size) bytes (a zip bomb?); the archive is refused")
            }
            crc = CZlib.crc32(crc, bytes, uInt(count))
            var done = 0
            while done < count {
                let n = Glibc.write(out, bytes + done, count - done)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw ZipError("\(m.path): cannot write: \(String(cString: strerror(errno)))")
                }
                done += n
            }
        }
        /// The next compressed bytes into `input`; how many.
        func refill() throws -> Int {
            let n = Int(min(left, UInt64(Self.chunk)))
            try readExactly(into: input, count: n, at: position, what: m.path)
            position += UInt64(n)
            left -= UInt64(n)
            return n
        }

        if m.method == 0 {
            while left > 0 {
                let n = try refill()
                try emit(input, n)
            }
        } else {
            var stream = z_stream()
            guard czlib_inflate_init_raw(&stream) == Z_OK else { throw ZipError("\(m.path): zlib could not start inflating") }
            defer { inflateEnd(&stream) }
            var ended = false
            while !ended {
                if stream.avail_in == 0 {
                    guard left > 0 else {
                        throw ZipError("\(m.path): the compressed data ends early (the archive is truncated or damaged)")
                    }
                    stream.avail_in = uInt(try refill())
                    stream.next_in = input
                }
                stream.next_out = output
                stream.avail_out = uInt(Self.chunk)
                let status = inflate(&stream, Z_NO_FLUSH)
                try emit(output, Self.chunk - Int(stream.avail_out))
                switch status {
                case Z_STREAM_END: ended = true
                case Z_OK: continue
                case Z_BUF_ERROR where stream.avail_in == 0: continue
                default:
                    throw ZipError("\(m.path): corrupt compressed data (zlib status \(status))")
                }
            }
        }
        guard produced == m.size else {
            throw ZipError("\(m.path): holds \(produced) bytes but the archive declares \(m.size) (damaged archive)")
        }
        guard UInt32(truncatingIfNeeded: crc) == m.crc32 else {
            throw ZipError("\(m.path): CRC-32 mismatch (the archive is damaged)")
        }
        guard fsync(out) == 0 else { throw ZipError("\(m.path): cannot sync: \(String(cString: strerror(errno)))") }
    }

    private func readExactly(into buffer: UnsafeMutablePointer<UInt8>, count: Int, at offset: UInt64, what: String) throws {
        try Self.readExactly(descriptor, into: buffer, count: count, at: offset, fileSize: fileSize, what: what)
    }

    /// `count` bytes at `offset`; the range is checked against the file's size before reading.
    private static func readExactly(_ fd: Int32, into buffer: UnsafeMutablePointer<UInt8>, count: Int, at offset: UInt64,
                                    fileSize: UInt64, what: String) throws
    {
        guard count >= 0, offset <= fileSize, UInt64(count) <= fileSize - offset else {
            throw ZipError("\(what) lies outside the archive (it is truncated or damaged)")
        }
        var done = 0
        while done < count {
            let n = pread(fd, buffer + done, count - done, off_t(offset) + off_t(done))
            if n > 0 {
                done += n
            } else if n < 0 && errno == EINTR {
                continue
            } else {
                throw ZipError(n == 0 ? "\(what) is truncated (the file shrank?)" : "cannot read \(what): \(String(cString: strerror(errno)))")
            }
        }
    }

    private static func read(_ fd: Int32, count: Int, at offset: UInt64, fileSize: UInt64, what: String) throws -> [UInt8] {
        guard count >= 0, offset <= fileSize, UInt64(count) <= fileSize - offset else {
            throw ZipError("\(what) lies outside the archive (it is truncated or damaged)")
        }
        var bytes = [UInt8](repeating: 0, count: count)
        try bytes.withUnsafeMutableBufferPointer { b in
            if let base = b.baseAddress { try readExactly(fd, into: base, count: count, at: offset, fileSize: fileSize, what: what) }
        }
        return bytes
    }

    // MARK: - Central directory

    /// Little-endian reads over bytes, each bounds-checked.
    struct Cursor {
        let bytes: [UInt8]
        var position: Int
        let what: String

        mutating func take(_ count: Int) throws -> ArraySlice<UInt8> {
            guard count >= 0, position <= bytes.count, count <= bytes.count - position else {
                throw ZipError("\(what) is truncated")
            }
            defer { position += count }
            return bytes[position..<(position + count)]
        }

        mutating func u16() throws -> UInt16 {
            let s = try take(2)
            return UInt16(s[s.startIndex]) | UInt16(s[s.startIndex + 1]) << 8
        }

        mutating func u32() throws -> UInt32 {
            try take(4).reversed().reduce(0) { $0 << 8 | UInt32($1) }
        }

        mutating func u64() throws -> UInt64 {
            try take(8).reversed().reduce(0) { $0 << 8 | UInt64($1) }
        }
    }

    struct RawEntry {
        var nameBytes: [UInt8]
        var versionMadeBy: UInt16
        var flags: UInt16
        var method: UInt16
        var crc: UInt32
        var compressed: UInt64
        var uncompressed: UInt64
        var externalAttributes: UInt32
        var offset: UInt64
    }

    private static func readMembers(fd: Int32, fileSize: UInt64, limits: ZipLimits) throws -> [ZipMember] {
        guard fileSize >= 22 else { throw ZipError("the file is \(fileSize) bytes, too short to be a zip archive") }
        // The end record lies in the last 22 bytes plus a comment of at most 65535 bytes.
        let tailLength = Int(min(fileSize, 22 + 65535))
        let tailStart = fileSize - UInt64(tailLength)
        let tail = try read(fd, count: tailLength, at: tailStart, fileSize: fileSize, what: "the end of the archive")
        var endPosition: Int?
        var p = tailLength - 22
        while p >= 0 {
            if tail[p] == 0x50, tail[p + 1] == 0x4B, tail[p + 2] == 0x05, tail[p + 3] == 0x06 {
                let commentLength = Int(tail[p + 20]) | Int(tail[p + 21]) << 8
                if p + 22 + commentLength == tailLength { endPosition = p; break }
            }
            p -= 1
        }
        guard let endPosition else {
            let head = try read(fd, count: 4, at: 0, fileSize: fileSize, what: "the file header")
            throw ZipError(head == [0x50, 0x4B, 0x03, 0x04]
                ? "the archive is truncated (no end-of-central-directory record)" : "not a zip archive")
        }
        var end = Cursor(bytes: tail, position: endPosition + 4, what: "the end-of-central-directory record")
        let disk = try end.u16()
        let directoryDisk = try end.u16()
        let entriesOnDisk = UInt64(try end.u16())
        var entryCount = UInt64(try end.u16())
        var directorySize = UInt64(try end.u32())
        var directoryOffset = UInt64(try end.u32())
        let endOffset = tailStart + UInt64(endPosition)
        var directoryLimit = endOffset
        guard disk == 0, directoryDisk == 0, entriesOnDisk == entryCount else {
            throw ZipError("multi-part (split) zip archives are not supported")
        }
        // A zip64 locator ("PK\6\7") sits right before the classic end record.
        if endPosition >= 20, tail[(endPosition - 20)..<(endPosition - 16)].elementsEqual([0x50, 0x4B, 0x06, 0x07]) {
            var locator = Cursor(bytes: tail, position: endPosition - 16, what: "the zip64 locator")
            _ = try locator.u32()
            let recordOffset = try locator.u64()
            guard recordOffset <= endOffset - 20, endOffset - 20 - recordOffset >= 56 else {
                throw ZipError("the zip64 end record lies outside the archive (it is truncated or damaged)")
            }
            var record = Cursor(bytes: try read(fd, count: 56, at: recordOffset, fileSize: fileSize, what: "the zip64 end record"),
                                position: 0, what: "the zip64 end record")
            guard try record.u32() == 0x0606_4B50 else { throw ZipError("bad zip64 end record signature (damaged archive)") }
            record.position = 24
            let onDisk = try record.u64()
            entryCount = try record.u64()
            directorySize = try record.u64()
            directoryOffset = try record.u64()
            guard onDisk == entryCount else { throw ZipError("multi-part (split) zip archives are not supported") }
            directoryLimit = recordOffset
        }
        guard entryCount <= UInt64(limits.maxEntries) else {
            throw ZipError("the archive has \(entryCount) entries, more than the \(limits.maxEntries) allowed")
        }
        guard directoryOffset <= directoryLimit, directorySize <= directoryLimit - directoryOffset else {
            throw ZipError("the central directory lies outside the archive (it is truncated or damaged)")
        }
        guard directorySize <= UInt64(limits.maxDirectoryBytes) else {
            throw ZipError("the central directory has \(directorySize) bytes, more than the \(limits.maxDirectoryBytes) allowed")
        }
        // A central header is at least 46 bytes: this bounds the count by what is really there.
        guard entryCount <= directorySize / 46 else {
            throw ZipError("the archive claims \(entryCount) entries in a \(directorySize)-byte central directory (damaged)")
        }
        let directory = try read(fd, count: Int(directorySize), at: directoryOffset, fileSize: fileSize, what: "the central directory")
        var cursor = Cursor(bytes: directory, position: 0, what: "the central directory")
        var raw: [RawEntry] = []
        raw.reserveCapacity(Int(entryCount))
        for i in 0..<entryCount {
            guard try cursor.u32() == 0x0201_4B50 else { throw ZipError("bad central directory header at entry \(i) (damaged archive)") }
            let madeBy = try cursor.u16()
            _ = try cursor.u16()
            let flags = try cursor.u16()
            let method = try cursor.u16()
            _ = try cursor.take(4)
            let crc = try cursor.u32()
            var compressed = UInt64(try cursor.u32())
            var uncompressed = UInt64(try cursor.u32())
            let nameLength = Int(try cursor.u16())
            let extraLength = Int(try cursor.u16())
            let commentLength = Int(try cursor.u16())
            let startDisk = try cursor.u16()
            _ = try cursor.u16()
            let external = try cursor.u32()
            var offset = UInt64(try cursor.u32())
            let name = Array(try cursor.take(nameLength))
            var extra = Cursor(bytes: Array(try cursor.take(extraLength)), position: 0, what: "an extra field of entry \(i)")
            _ = try cursor.take(commentLength)
            while extra.position + 4 <= extra.bytes.count {
                let id = try extra.u16()
                let size = Int(try extra.u16())
                let fieldEnd = extra.position + size
                guard fieldEnd <= extra.bytes.count else { throw ZipError("an extra field of entry \(i) is truncated") }
                if id == 0x0001 {
                    // Only the fields whose 32-bit slot is saturated appear, in this order.
                    if uncompressed == 0xFFFF_FFFF { uncompressed = try extra.u64() }
                    if compressed == 0xFFFF_FFFF { compressed = try extra.u64() }
                    if offset == 0xFFFF_FFFF { offset = try extra.u64() }
                    guard extra.position <= fieldEnd else { throw ZipError("the zip64 field of entry \(i) is truncated") }
                }
                extra.position = fieldEnd
            }
            guard startDisk == 0 || startDisk == 0xFFFF else { throw ZipError("multi-part (split) zip archives are not supported") }
            raw.append(RawEntry(nameBytes: name, versionMadeBy: madeBy, flags: flags, method: method, crc: crc,
                                compressed: compressed, uncompressed: uncompressed, externalAttributes: external, offset: offset))
        }
        return try check(raw, fd: fd, fileSize: fileSize, directoryOffset: directoryOffset, limits: limits)
    }

    /// The checks on names, kinds, sizes and placement that make extraction safe.
    private static func check(_ raw: [RawEntry], fd: Int32, fileSize: UInt64, directoryOffset: UInt64, limits: ZipLimits)
        throws -> [ZipMember]
    {
        var members: [ZipMember] = []
        members.reserveCapacity(raw.count)
        var seen = Set<String>()
        var files = Set<String>()
        var total: UInt64 = 0
        for e in raw {
            let (path, slash) = try safePath(e.nameBytes, limits: limits)
            // Unix- and macOS-made archives keep the file type in the high half of the external attributes.
            let type = [3, 19].contains(e.versionMadeBy >> 8) ? (e.externalAttributes >> 16) & 0o170000 : 0
            switch type {
            case 0, 0o100000, 0o040000: break
            case 0o120000: throw ZipError("\(path): symbolic links are not allowed in the archive")
            default: throw ZipError("\(path): special files (devices, pipes, sockets) are not allowed in the archive")
            }
            let isDirectory = slash || type == 0o040000
            guard e.flags & 0x41 == 0 else { throw ZipError("\(path): encrypted members are not supported") }
            guard e.method == 0 || e.method == 8 else {
                throw ZipError("\(path): compression method \(e.method) is not supported (stored and deflate are)")
            }
            if isDirectory {
                guard e.uncompressed == 0 else { throw ZipError("\(path): a folder entry with \(e.uncompressed) bytes of data") }
            }
            if e.method == 0, e.compressed != e.uncompressed {
                throw ZipError("\(path): a stored member whose compressed and uncompressed sizes differ (damaged archive)")
            }
            if e.method == 8, e.uncompressed > limits.ratioFloor,
               e.compressed == 0 || e.uncompressed / e.compressed > limits.maxRatio
            {
                throw ZipError("\(path): compression ratio \(e.compressed == 0 ? "unbounded" : "\(e.uncompressed / e.compressed):1") "
                    + "exceeds the \(limits.maxRatio):1 allowed (a zip bomb?)")
            }
            let (sum, overflow) = total.addingReportingOverflow(e.uncompressed)
            guard !overflow, sum <= limits.maxTotalBytes else {
                throw ZipError("the archive inflates to more than the \(limits.maxTotalBytes) bytes allowed")
            }
            total = sum
            guard seen.insert(path).inserted else { throw ZipError("\(path) is listed twice in the archive") }
            if !isDirectory { files.insert(path) }

            // The local header must agree on the name and lie, with the data after it, before the central directory.
            guard e.offset <= directoryOffset, directoryOffset - e.offset >= 30 else {
                throw ZipError("\(path): its local header lies outside the archive (it is truncated or damaged)")
            }
            var header = Cursor(bytes: try read(fd, count: 30, at: e.offset, fileSize: fileSize, what: "the local header of \(path)"),
                                position: 0, what: "the local header of \(path)")
            guard try header.u32() == 0x0403_4B50 else { throw ZipError("\(path): bad local header signature (damaged archive)") }
            header.position = 26
            let nameLength = UInt64(try header.u16())
            let extraLength = UInt64(try header.u16())
            let localName = try read(fd, count: Int(nameLength), at: e.offset + 30, fileSize: fileSize, what: "the local header of \(path)")
            guard localName == e.nameBytes else {
                throw ZipError("\(path): the local header names another file (ambiguous archive)")
            }
            let dataOffset = e.offset + 30 + nameLength + extraLength
            guard dataOffset <= directoryOffset, e.compressed <= directoryOffset - dataOffset else {
                throw ZipError("\(path): its data lies outside the archive (it is truncated or damaged)")
            }
            members.append(ZipMember(path: path, isDirectory: isDirectory, size: e.uncompressed, method: e.method, crc32: e.crc,
                                     compressedSize: e.compressed, localHeaderOffset: e.offset, dataOffset: dataOffset))
        }
        // A file may not also be a folder of another member.
        for m in members {
            var prefix = Substring(m.path)
            while let slash = prefix.lastIndex(of: "/") {
                prefix = prefix[..<slash]
                if files.contains(String(prefix)) { throw ZipError("\(m.path): \(prefix) is a file in the archive, not a folder") }
            }
        }
        // Members may not share bytes (overlapping members make small archives inflate many times over).
        let byOffset = members.sorted { $0.localHeaderOffset < $1.localHeaderOffset }
        for (a, b) in zip(byOffset, byOffset.dropFirst()) where a.dataOffset + a.compressedSize > b.localHeaderOffset {
            throw ZipError("\(a.path) and \(b.path) overlap in the archive (a zip bomb?)")
        }
        return members
    }

    /// A member's name as a relative path under the destination, or why it cannot be one.
    static func safePath(_ bytes: [UInt8], limits: ZipLimits) throws -> (path: String, directory: Bool) {
        guard let name = String(bytes: bytes, encoding: .utf8) else {
            throw ZipError("a member's name is not UTF-8 (\(bytes.prefix(64).map { String(format: "%02x", $0) }.joined()))")
        }
        let shown = String(name.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? "?" : Character($0) })
        guard !name.isEmpty else { throw ZipError("a member has an empty name") }
        guard bytes.count <= limits.maxPathBytes else {
            throw ZipError("\(shown.prefix(80))...: a name longer than \(limits.maxPathBytes) bytes")
        }
        guard !name.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
            throw ZipError("\(shown): control characters in a member's name")
        }
        guard !name.contains("\\") else { throw ZipError("\(shown): backslashes in a member's name (a Windows path?)") }
        guard !name.hasPrefix("/") else { throw ZipError("\(shown): an absolute path in the archive") }
        let directory = name.hasSuffix("/")
        let parts = (directory ? name.dropLast() : Substring(name)).split(separator: "/", omittingEmptySubsequences: false)
        if let first = parts.first, first.count == 2, first.last == ":" {
            throw ZipError("\(shown): a drive-letter path in the archive")
        }
        for p in parts {
            guard p != "..", p != "." else { throw ZipError("\(shown): a '\(p)' component (path traversal) in the archive") }
            guard !p.isEmpty else { throw ZipError("\(shown): an empty path component in the archive") }
            guard p.utf8.count <= 255 else { throw ZipError("\(shown.prefix(80))...: a path component longer than 255 bytes") }
        }
        guard parts.count <= limits.maxDepth else { throw ZipError("\(shown): nested deeper than \(limits.maxDepth) folders") }
        return (parts.joined(separator: "/"), directory)
    }
}
