import Foundation
import Testing
import TestSupport
@testable import TorchCheckpoint

/// Damaged pickles and zips must give typed errors: never a crash, a hang or an allocation sized by the file's
/// claims rather than its contents.
@Suite(.tags(.unit)) struct MalformedInputTests {
    private func pickle(_ body: (inout PickleBytes) -> Void) -> PickleBytes {
        var p = PickleBytes()
        body(&p)
        return p
    }

    private func expectPickleFailure(_ kind: CheckpointError.Kind, _ p: PickleBytes, storages: [(String, [UInt8])] = [],
                                     sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let file = dir.file("bad.pt")
        try writeCheckpoint(pickle: p, storages: storages, to: file)
        return expectFailure(kind, reading: file, sourceLocation: sourceLocation)
    }

    @Test func readCheckpoint_malformedPickles_giveClearErrors() throws {
        #expect(try expectPickleFailure(.malformedPickle, pickle { $0.reduce() }).contains("underflow"))
        #expect(try expectPickleFailure(.malformedPickle, pickle { $0.op(0x75) }).contains("MARK"))
        #expect(try expectPickleFailure(.unsupportedOpcode, pickle { $0.op(0xFF) }).contains("0xFF"))
        #expect(try expectPickleFailure(.malformedPickle, pickle { $0.op(0x68, [5]); $0.stop() }).contains("memo"))
        #expect(try expectPickleFailure(.malformedPickle, pickle { $0.op(0x58, le(1000, 4) + [0x41, 0x42]) }).contains("length"))
        #expect(try expectPickleFailure(.malformedPickle, pickle { $0.op(0x4E) }).contains("truncated"))
        // A length near 2^60 must be refused before any allocation.
        #expect(try expectPickleFailure(.malformedPickle, pickle { $0.op(0x8D, le(1 << 60, 8)) }).contains("length"))
        #expect(try expectPickleFailure(.malformedPickle, pickle { $0.op(0x58, le(2, 4) + [0xC3, 0x28]); $0.stop() }).contains("UTF-8"))
        #expect(try expectPickleFailure(.unexpectedContent, pickle { $0.op(0x8A, [9] + [UInt8](repeating: 0x11, count: 9)); $0.stop() })
            .contains("64 bits"))
        #expect(try expectPickleFailure(.malformedPickle, pickle { $0.op(0x5D); $0.op(0x4E); $0.op(0x4E); $0.op(0x73); $0.stop() }).contains("SETITEM"))
        #expect(try expectPickleFailure(.malformedPickle, pickle { $0.op(0x7D); $0.op(0x5D); $0.op(0x4E); $0.op(0x73); $0.stop() })
            .contains("unhashable"))
        #expect(try expectPickleFailure(.malformedPickle, pickle { $0.op(0x80, [9]); $0.stop() }).contains("protocol"))
    }

    @Test func readCheckpoint_deepOrCyclicOrExplodingStructures_areRefused() throws {
        // 100k nested lists: iterative machine, bounded conversion.
        let deep = pickle { p in
            for _ in 0..<100_000 { p.op(0x5D) }
            for _ in 0..<99_999 { p.op(0x61) }
            p.stop()
        }
        #expect(try expectPickleFailure(.unexpectedContent, deep).contains("deeper"))

        // A list that contains itself.
        let cyclic = pickle { p in
            p.op(0x5D)
            p.op(0x71, [0])
            p.op(0x68, [0])
            p.op(0x61)
            p.stop()
        }
        #expect(try expectPickleFailure(.unexpectedContent, cyclic).contains("deeper"))

        // 2^40 references through memo doubling: a few hundred bytes that would expand without bound.
        let exploding = pickle { p in
            p.op(0x5D)
            p.op(0x71, [0])
            for i in 0..<40 {
                p.op(0x68, [UInt8(i)])
                p.op(0x68, [UInt8(i)])
                p.op(0x86)
                p.op(0x71, [UInt8(i + 1)])
            }
            p.stop()
        }
        #expect(try expectPickleFailure(.unexpectedContent, exploding).contains("objects"))
    }

    @Test func readCheckpoint_dictKeyTupleNested20000Deep_isRefusedWithoutRecursing() throws {
        // Hashing the key used to recurse once per level and overflow the stack (issue 14).
        let deepKey = pickle { p in
            p.op(0x7D)
            p.op(0x4E)
            for _ in 0..<20_000 { p.op(0x85) }
            p.op(0x4E)
            p.op(0x73)
            p.stop()
        }
        let message = try expectPickleFailure(.malformedPickle, deepKey)
        #expect(message.contains("dict key nests deeper than \(Unpickler.maxDepth)"), "\(message)")

        // Just under the limit is an ordinary (if odd) key.
        let shallow = pickle { p in
            p.op(0x7D)
            p.op(0x4E)
            for _ in 0..<(Unpickler.maxDepth - 10) { p.op(0x85) }
            p.op(0x4E)
            p.op(0x73)
            p.stop()
        }
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let file = dir.file("shallow.pt")
        try writeCheckpoint(pickle: shallow, storages: [], to: file)
        guard case .dict(let d) = try Checkpoint.read(contentsOf: file) else {
            Issue.record("expected a dict")
            return
        }
        #expect(d.entries.count == 1)
    }

    @Test func readCheckpoint_storageProblems_giveClearErrors() throws {
        let missing = pickle { $0.tensor("FloatStorage", key: "7", numel: 2, size: [2], stride: [1]); $0.stop() }
        #expect(try expectPickleFailure(.missingRecord, missing).contains("data/7"))

        let tooSmallRecord = pickle { $0.tensor("FloatStorage", key: "0", numel: 1_000_000_000, size: [2], stride: [1]); $0.stop() }
        #expect(try expectPickleFailure(.invalidTensor, tooSmallRecord, storages: [("0", floatBytes([1, 2]))]).contains("1000000000"))

        let overreach = pickle { $0.tensor("FloatStorage", key: "0", numel: 2, offset: 1, size: [2], stride: [1]); $0.stop() }
        #expect(try expectPickleFailure(.invalidTensor, overreach, storages: [("0", floatBytes([1, 2]))]).contains("reaches element 2"))

        let stridedOverreach = pickle { $0.tensor("FloatStorage", key: "0", numel: 4, size: [2, 2], stride: [3, 1]); $0.stop() }
        #expect(try expectPickleFailure(.invalidTensor, stridedOverreach, storages: [("0", floatBytes([1, 2, 3, 4]))]).contains("reaches"))

        let overflowing = pickle { $0.tensor("FloatStorage", key: "0", numel: 2, size: [1 << 31, 1 << 31, 1 << 31], stride: [0, 0, 0]); $0.stop() }
        #expect(try expectPickleFailure(.invalidTensor, overflowing, storages: [("0", floatBytes([1, 2]))]).contains("overflow"))

        // A 4 TiB broadcast of one element: refused before allocating, as are many small views adding up.
        let broadcast = pickle { $0.tensor("FloatStorage", key: "0", numel: 1, size: [1 << 20, 1 << 20], stride: [0, 0]); $0.stop() }
        #expect(try expectPickleFailure(.invalidTensor, broadcast, storages: [("0", floatBytes([1]))]).contains("materialise"))
        let manyViews = pickle { p in
            p.mark()
            for _ in 0..<40 { p.tensor("FloatStorage", key: "0", numel: 1, size: [1 << 20], stride: [0]) }
            p.tuple()
            p.stop()
        }
        #expect(try expectPickleFailure(.invalidTensor, manyViews, storages: [("0", floatBytes([1]))]).contains("materialise"))

        let rankMismatch = pickle { $0.tensor("FloatStorage", key: "0", numel: 2, size: [2], stride: [1, 1]); $0.stop() }
        #expect(try expectPickleFailure(.invalidTensor, rankMismatch, storages: [("0", floatBytes([1, 2]))]).contains("ranks"))

        let unknownStorage = pickle { $0.tensor("ComplexFloatStorage", key: "0", numel: 1, size: [1], stride: [1]); $0.stop() }
        #expect(try expectPickleFailure(.forbiddenGlobal, unknownStorage, storages: [("0", floatBytes([1, 2]))])
            .contains("torch.ComplexFloatStorage"))
    }

    private func validCheckpoint(in dir: TemporaryDirectory) throws -> (URL, [UInt8]) {
        let file = dir.file("good.pt")
        try Checkpoint.write(stateDict: [
            ("a", StoredTensor(dtype: .float32, shape: [2, 3], bytes: floatBytes([1, 2, 3, 4, 5, 6]))),
            ("b", StoredTensor(dtype: .int64, shape: [], bytes: le(42, 8))),
        ], key: "model", extra: [("epoch", .int(7))], to: file)
        return (file, Array(try Data(contentsOf: file)))
    }

    @Test func readCheckpoint_corruptZips_giveClearErrors() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let (_, good) = try validCheckpoint(in: dir)
        let bad = dir.file("bad.pt")

        try writeBytes(Array(good.prefix(good.count / 2)), to: bad)
        #expect(expectFailure(.corruptZip, reading: bad).contains("truncated"))

        try writeBytes(Array(good.dropLast(1)), to: bad)
        expectFailure(.corruptZip, reading: bad)

        try writeBytes([], to: bad)
        expectFailure(.notZip, reading: bad)

        try writeBytes(Array("definitely not a checkpoint, just some text that is long enough".utf8), to: bad)
        expectFailure(.notZip, reading: bad)

        // Central directory offset pointing past the end.
        var pastEnd = good
        pastEnd[pastEnd.count - 6] = 0xFF
        pastEnd[pastEnd.count - 5] = 0xFF
        try writeBytes(pastEnd, to: bad)
        #expect(expectFailure(.corruptZip, reading: bad).contains("central directory"))

        // Central directory header signature damaged.
        let directoryOffset = Int(good[good.count - 6]) | Int(good[good.count - 5]) << 8 | Int(good[good.count - 4]) << 16
        var badSignature = good
        badSignature[directoryOffset] = 0x00
        try writeBytes(badSignature, to: bad)
        #expect(expectFailure(.corruptZip, reading: bad).contains("signature"))

        // A flipped bit inside a storage's data.
        let values = floatBytes([1, 2, 3, 4, 5, 6])
        guard let start = (0...(good.count - values.count)).first(where: { good[$0..<($0 + values.count)].elementsEqual(values) }) else {
            Issue.record("storage bytes not found in the written file")
            return
        }
        var flipped = good
        flipped[start + 5] ^= 0x01
        try writeBytes(flipped, to: bad)
        #expect(expectFailure(.corruptZip, reading: bad).contains("CRC"))
    }

    @Test func readCheckpoint_missingDataPkl_isMissingRecord() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let file = dir.file("nopkl.pt")
        try writeArchive([("version", Array("3\n".utf8)), ("data/0", floatBytes([1]))], to: file)
        #expect(expectFailure(.missingRecord, reading: file).contains("data.pkl"))
    }

    @Test func readCheckpoint_compressedEntry_isRefusedClearly() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let file = dir.file("deflated.pt")
        var p = PickleBytes()
        p.op(0x4E)
        p.stop()
        try writeCheckpoint(pickle: p, to: file)
        var bytes = Array(try Data(contentsOf: file))
        let directoryOffset = Int(bytes[bytes.count - 6]) | Int(bytes[bytes.count - 5]) << 8 | Int(bytes[bytes.count - 4]) << 16
        bytes[directoryOffset + 10] = 8 // method: deflate, in the first (data.pkl) central header
        try writeBytes(bytes, to: file)
        #expect(expectFailure(.unsupportedZip, reading: file).contains("compressed"))
    }

    @Test func readCheckpoint_unknownByteorder_isRefused() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let file = dir.file("middle.pt")
        var p = PickleBytes()
        p.op(0x4E)
        p.stop()
        try writeCheckpoint(pickle: p, byteorder: "middle", to: file)
        #expect(expectFailure(.corruptZip, reading: file).contains("middle"))
    }

    /// Every truncation and a few thousand single-byte corruptions of a small checkpoint: each read either
    /// succeeds or throws a `CheckpointError`. A crash fails the whole run.
    @Test func readCheckpoint_everyTruncationAndRandomByteFlips_neverCrash() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let (_, good) = try validCheckpoint(in: dir)
        var failures = 0
        func attempt(_ bytes: [UInt8]) {
            do {
                _ = try Checkpoint.read(bytes: bytes)
            } catch is CheckpointError {
                failures += 1
            } catch {
                Issue.record("unexpected error type \(error)")
            }
        }
        for length in 0..<good.count { attempt(Array(good.prefix(length))) }
        var rng = SplitMix(seed: 0x5EED)
        for _ in 0..<5000 {
            var bytes = good
            let index = Int(rng.next() % UInt64(bytes.count))
            bytes[index] = UInt8(truncatingIfNeeded: rng.next())
            attempt(bytes)
        }
        #expect(failures > 100)
    }
}

extension MalformedInputTests {
    /// Mutations of the pickle itself, re-wrapped in a valid zip so they get past the CRC checks and reach
    /// the unpickler: each read succeeds or throws a `CheckpointError`.
    @Test func readCheckpoint_mutatedPickles_neverCrash() throws {
        let value = PickleValue.dict(PickleDict([
            .init(key: .string("model"), value: .dict(PickleDict(ordered: true, [
                .init(key: .string("conv.weight"), value: .tensor(StoredTensor(dtype: .float32, shape: [2, 3], bytes: floatBytes([1, 2, 3, 4, 5, 6])))),
                .init(key: .string("norm.num_batches_tracked"), value: .tensor(StoredTensor(dtype: .int64, shape: [], bytes: le(42, 8)))),
            ], metadata: .dict(PickleDict(ordered: true, [.init(key: .string(""), value: .dict(PickleDict([.init(key: .string("version"), value: .int(1))])))]))))),
            .init(key: .string("epoch"), value: .int(7)),
            .init(key: .string("history"), value: .list([.float(0.5), .tuple([.none, .bool(true)]), .bytes([1, 2]), .int(-1 << 40)])),
        ]))
        let (pickle, storages) = try Pickler.pickle(value)
        let storageRecords = storages.map { ("data/" + $0.key, $0.bytes) }
        #expect(try Checkpoint.read(bytes: archiveBytes([("data.pkl", pickle)] + storageRecords)) == value)

        var rng = SplitMix(seed: 0xF022)
        var outcomes: [String: Int] = [:]
        for _ in 0..<4000 {
            var mutated = mutate(pickle, &rng)
            if rng.next() % 4 == 0 { mutated = mutate(mutated, &rng) }
            do {
                _ = try Checkpoint.read(bytes: archiveBytes([("data.pkl", mutated)] + storageRecords))
                outcomes["read", default: 0] += 1
            } catch let error as CheckpointError {
                outcomes[error.kind.rawValue, default: 0] += 1
            }
        }
        // Mutations land everywhere: some still parse, most hit each class of pickle error.
        #expect(outcomes["malformedPickle", default: 0] > 100, "\(outcomes)")
        #expect(outcomes["forbiddenGlobal", default: 0] + outcomes["unsupportedOpcode", default: 0] > 10, "\(outcomes)")
    }
}
