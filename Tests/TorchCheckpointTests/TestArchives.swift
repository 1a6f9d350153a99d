import Foundation
import Testing
import TestSupport
@testable import TorchCheckpoint
#if canImport(Glibc)
import Glibc
#endif

/// Builds pickles opcode by opcode, so tests can say exactly which bytes a hostile file holds.
struct PickleBytes {
    var bytes: [UInt8] = []

    init(protocol version: UInt8 = 2) { bytes = [0x80, version] }

    mutating func op(_ code: UInt8, _ payload: [UInt8] = []) {
        bytes.append(code)
        bytes.append(contentsOf: payload)
    }

    mutating func global(_ module: String, _ name: String) {
        op(0x63, Array("\(module)\n\(name)\n".utf8))
    }

    mutating func string(_ s: String) {
        let utf8 = Array(s.utf8)
        op(0x58, le(UInt64(utf8.count), 4) + utf8)
    }

    mutating func shortString(_ s: String) {
        let utf8 = Array(s.utf8)
        op(0x8C, [UInt8(utf8.count)] + utf8)
    }

    mutating func int(_ v: Int) {
        if (0...255).contains(v) {
            op(0x4B, [UInt8(v)])
        } else if let small = Int32(exactly: v) {
            op(0x4A, le(UInt64(UInt32(bitPattern: small)), 4))
        } else {
            op(0x8A, [8] + le(UInt64(bitPattern: Int64(v)), 8))
        }
    }

    mutating func mark() { op(0x28) }
    mutating func tuple() { op(0x74) }
    mutating func reduce() { op(0x52) }
    mutating func stop() { op(0x2E) }

    /// `('storage', torch.<type>, key, 'cpu', numel)` followed by BINPERSID.
    mutating func storage(_ type: String, key: String, numel: Int) {
        mark()
        string("storage")
        global("torch", type)
        string(key)
        string("cpu")
        int(numel)
        tuple()
        op(0x51)
    }

    mutating func intTuple(_ values: [Int]) {
        mark()
        for v in values { int(v) }
        tuple()
    }

    /// `_rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())`.
    mutating func tensor(_ type: String, key: String, numel: Int, offset: Int = 0, size: [Int], stride: [Int]) {
        global("torch._utils", "_rebuild_tensor_v2")
        mark()
        storage(type, key: key, numel: numel)
        int(offset)
        intTuple(size)
        intTuple(stride)
        op(0x89)
        global("collections", "OrderedDict")
        op(0x29)
        reduce()
        tuple()
        reduce()
    }
}

func le(_ v: UInt64, _ width: Int) -> [UInt8] {
    (0..<width).map { UInt8(truncatingIfNeeded: v >> (8 * UInt64($0))) }
}

func floatBytes(_ values: [Float]) -> [UInt8] {
    values.flatMap { le(UInt64($0.bitPattern), 4) }
}

/// Writes `records` as a stored zip under `archive/`, the way torch.save lays one out.
func writeArchive(_ records: [(String, [UInt8])], to url: URL, prefix: String = "archive/", forceZip64: Bool = false) throws {
    let fd = open(url.path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    #expect(fd >= 0)
    defer { close(fd) }
    var zip = ZipWriter(sink: .file(descriptor: fd, path: url.path), forceZip64: forceZip64)
    for (name, bytes) in records { try zip.add(name: prefix + name, bytes: bytes) }
    try zip.finish()
}

/// The same layout built in memory.
func archiveBytes(_ records: [(String, [UInt8])], prefix: String = "archive/") throws -> [UInt8] {
    var zip = ZipWriter(sink: .memory)
    for (name, bytes) in records { try zip.add(name: prefix + name, bytes: bytes) }
    try zip.finish()
    return zip.bytes
}

/// Applies one random structural mutation: overwrite, bit flip, delete, insert or truncate.
func mutate(_ input: [UInt8], _ rng: inout SplitMix) -> [UInt8] {
    var bytes = input
    guard !bytes.isEmpty else { return [UInt8(truncatingIfNeeded: rng.next())] }
    let index = Int(rng.next() % UInt64(bytes.count))
    switch rng.next() % 5 {
    case 0: bytes[index] = UInt8(truncatingIfNeeded: rng.next())
    case 1: bytes[index] ^= 1 << UInt8(rng.next() % 8)
    case 2: bytes.remove(at: index)
    case 3: bytes.insert(UInt8(truncatingIfNeeded: rng.next()), at: index)
    default: bytes.removeLast(bytes.count - index)
    }
    return bytes
}

/// A torch-style checkpoint whose data.pkl is `pickle` and whose storages are `storages`.
func writeCheckpoint(pickle: PickleBytes, storages: [(String, [UInt8])] = [], byteorder: String? = "little", to url: URL) throws {
    var records = [("data.pkl", pickle.bytes)]
    if let byteorder { records.append(("byteorder", Array(byteorder.utf8))) }
    records += storages.map { ("data/" + $0.0, $0.1) }
    records.append(("version", Array("3\n".utf8)))
    try writeArchive(records, to: url)
}

/// Reads `url` expecting a `CheckpointError` of `kind`; returns its message.
@discardableResult
func expectFailure(_ kind: CheckpointError.Kind, reading url: URL, sourceLocation: SourceLocation = #_sourceLocation) -> String {
    do {
        let value = try Checkpoint.read(contentsOf: url)
        Issue.record("expected \(kind) but read \(value.kindName)", sourceLocation: sourceLocation)
    } catch let error as CheckpointError {
        #expect(error.kind == kind, "\(error)", sourceLocation: sourceLocation)
        return error.message
    } catch {
        Issue.record("unexpected error type \(error)", sourceLocation: sourceLocation)
    }
    return ""
}

/// Replaces `url` with `bytes`. Plain POSIX writes: Foundation's `Data.write` syncs to disk, which makes the
/// fuzz loop slow.
func writeBytes(_ bytes: [UInt8], to url: URL) throws {
    let fd = open(url.path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    guard fd >= 0 else { throw FixtureMissing(path: url.path) }
    defer { close(fd) }
    let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    #expect(written == bytes.count)
}
