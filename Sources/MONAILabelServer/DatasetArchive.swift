import Foundation
import MONAILabel

#if canImport(Glibc)
import Glibc
#endif

/// `GET /datastore/dataset`: a zip of every image with a final label (`image/<name>`, `label/<name>`) plus
/// `metadata.json` (the datastore document), written to a temporary file and streamed. Entries are stored
/// uncompressed (the volumes are gzip already); ZIP64 records are added when the archive passes 4 GiB.
enum DatasetArchive {
    static func build(_ ds: Datastore, limitCases: Int?) throws -> URL {
        var items = ds.datalist()
        guard !items.isEmpty else {
            throw MONAILabelError.notFound("No labeled images in the datastore: nothing to put in a dataset")
        }
        if let n = limitCases, n >= 1, n < items.count { items = Array(items.prefix(n)) }
        // In the process's private folder, so a zip left by a killed server is swept at the next start.
        let url = try ProcessTemp.makeFolder().appendingPathComponent("dataset-\(UUID().uuidString).zip")
        var writer = try ZipWriter(url)
        do {
            for item in items {
                try writer.addFile(name: "image/" + (item.image as NSString).lastPathComponent, path: item.image)
                try writer.addFile(name: "label/" + (item.label as NSString).lastPathComponent, path: item.label)
            }
            try writer.addBytes(name: "metadata.json", ds.json().prettyBytes(indent: 2))
            try writer.finish()
        } catch {
            writer.abandon()
            throw error
        }
        return url
    }
}

/// A minimal streaming zip writer: stored entries, CRC-32 patched into each local header after the data.
struct ZipWriter {
    private struct Entry {
        var name: [UInt8]
        var crc: UInt32
        var size: UInt64
        var offset: UInt64
    }

    private let fd: Int32
    private let url: URL
    private var offset: UInt64 = 0
    private var entries: [Entry] = []

    init(_ url: URL) throws {
        self.url = url
        fd = open(url.path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw MONAILabelError.io("cannot create the dataset archive: \(String(cString: strerror(errno)))") }
    }

    func abandon() {
        close(fd)
        unlink(url.path)
    }

    private mutating func write(_ bytes: [UInt8]) throws {
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + off, bytes.count - off) }
            if n < 0 {
                if errno == EINTR { continue }
                throw MONAILabelError.io("writing the dataset archive failed")
            }
            off += n
        }
        offset += UInt64(bytes.count)
    }

    private static func le16(_ v: UInt16) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8)] }
    private static func le32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8((v >> (8 * $0)) & 0xFF) } }
    private static func le64(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8((v >> (8 * UInt64($0))) & 0xFF) } }

    private func localHeader(_ name: [UInt8], crc: UInt32, size: UInt32) -> [UInt8] {
        Self.le32(0x0403_4B50) + Self.le16(20) + Self.le16(0x0800) + Self.le16(0) + Self.le16(0) + Self.le16(0x21)
            + Self.le32(crc) + Self.le32(size) + Self.le32(size) + Self.le16(UInt16(name.count)) + Self.le16(0) + name
    }

    mutating func addBytes(name: String, _ bytes: [UInt8]) throws {
        let n = Array(name.utf8)
        let start = offset
        let crc = CRC32.update(0, bytes)
        try write(localHeader(n, crc: crc, size: UInt32(bytes.count)))
        try write(bytes)
        entries.append(Entry(name: n, crc: crc, size: UInt64(bytes.count), offset: start))
    }

    /// Adds the file at `path` as entry `name`; errors name the entry, never the server's path.
    mutating func addFile(name: String, path: String) throws {
        guard let size = FileOps.fileSize(path) else { throw MONAILabelError.io("cannot read \(name)") }
        guard size < 0xFFFF_FFFF else { throw MONAILabelError.io("\(name) is too large for a dataset archive entry") }
        let n = Array(name.utf8)
        let start = offset
        try write(localHeader(n, crc: 0, size: UInt32(size)))
        let input = open(path, O_RDONLY | O_CLOEXEC)
        guard input >= 0 else { throw MONAILabelError.io("cannot open \(name)") }
        defer { close(input) }
        var crc: UInt32 = 0
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var copied: Int64 = 0
        while true {
            let r = buffer.withUnsafeMutableBytes { read(input, $0.baseAddress, $0.count) }
            if r < 0 {
                if errno == EINTR { continue }
                throw MONAILabelError.io("reading \(name) failed")
            }
            if r == 0 { break }
            crc = CRC32.update(crc, buffer[0..<r])
            try write(Array(buffer[0..<r]))
            copied += Int64(r)
        }
        guard copied == size else { throw MONAILabelError.io("\(name) changed while archiving") }
        // Patch the CRC into the local header (offset 14).
        let crcBytes = Self.le32(crc)
        guard crcBytes.withUnsafeBytes({ pwrite(fd, $0.baseAddress, 4, off_t(start + 14)) }) == 4 else {
            throw MONAILabelError.io("writing the dataset archive failed")
        }
        entries.append(Entry(name: n, crc: crc, size: UInt64(size), offset: start))
    }

    mutating func finish() throws {
        let cdStart = offset
        for e in entries {
            let needs64 = e.offset >= 0xFFFF_FFFF
            let extra = needs64 ? Self.le16(0x0001) + Self.le16(8) + Self.le64(e.offset) : []
            let header = Self.le32(0x0201_4B50) + Self.le16(45) + Self.le16(needs64 ? 45 : 20) + Self.le16(0x0800)
                + Self.le16(0) + Self.le16(0) + Self.le16(0x21) + Self.le32(e.crc) + Self.le32(UInt32(e.size))
                + Self.le32(UInt32(e.size)) + Self.le16(UInt16(e.name.count)) + Self.le16(UInt16(extra.count))
                + Self.le16(0) + Self.le16(0) + Self.le16(0) + Self.le32(0)
                + Self.le32(needs64 ? 0xFFFF_FFFF : UInt32(e.offset))
            try write(header + e.name + extra)
        }
        let cdSize = offset - cdStart
        let count = UInt64(entries.count)
        if cdStart >= 0xFFFF_FFFF || count >= 0xFFFF {
            let eocd64At = offset
            try write(Self.le32(0x0606_4B50) + Self.le64(44) + Self.le16(45) + Self.le16(45) + Self.le32(0)
                + Self.le32(0) + Self.le64(count) + Self.le64(count) + Self.le64(cdSize) + Self.le64(cdStart))
            try write(Self.le32(0x0706_4B50) + Self.le32(0) + Self.le64(eocd64At) + Self.le32(1))
        }
        try write(Self.le32(0x0605_4B50) + Self.le16(0) + Self.le16(0) + Self.le16(UInt16(min(count, 0xFFFF)))
            + Self.le16(UInt16(min(count, 0xFFFF))) + Self.le32(UInt32(min(cdSize, 0xFFFF_FFFF)))
            + Self.le32(UInt32(min(cdStart, 0xFFFF_FFFF))) + Self.le16(0))
        guard fsync(fd) == 0 || errno == EINVAL else { throw MONAILabelError.io("writing the dataset archive failed") }
        close(fd)
    }
}

/// CRC-32 (IEEE 802.3), as zip uses it.
enum CRC32 {
    private static let table: [UInt32] = (0..<256).map { n -> UInt32 in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    static func update<C: Collection>(_ crc: UInt32, _ bytes: C) -> UInt32 where C.Element == UInt8 {
        var c = ~crc
        table.withUnsafeBufferPointer { t in
            for b in bytes { c = t[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
        }
        return ~c
    }
}
