import Foundation
import Testing
import TestSupport
@testable import TorchCheckpoint

@Suite(.tags(.unit)) struct RoundTripTests {
    private func sampleTensors() -> [(name: String, tensor: StoredTensor)] {
        var rng = SplitMix(seed: 42)
        func random(_ count: Int) -> [UInt8] { (0..<count).map { _ in UInt8(truncatingIfNeeded: rng.next()) } }
        return StoredDType.allCases.map { dtype in
            let shape = [2, 3, 1]
            var bytes = random(6 * dtype.size)
            if dtype == .bool { bytes = bytes.map { $0 & 1 } }
            return ("layer.\(dtype.rawValue)", StoredTensor(dtype: dtype, shape: shape, bytes: bytes))
        } + [
            ("scalar", StoredTensor(dtype: .float32, shape: [], bytes: floatBytes([3.5]))),
            ("empty", StoredTensor(dtype: .float32, shape: [0, 4], bytes: [])),
            ("big", StoredTensor(dtype: .float32, shape: [70, 3, 3, 3], bytes: random(70 * 27 * 4))),
        ]
    }

    @Test func writeCheckpoint_thenRead_isBitExact() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let tensors = sampleTensors()
        let value = PickleValue.dict(PickleDict([
            .init(key: .string("model"), value: .stateDict(tensors)),
            .init(key: .string("epoch"), value: .int(7)),
            .init(key: .string("ints"), value: .list([0, 255, 256, 65535, 65536, -1, -129, 1 << 31, -(1 << 31) - 1, Int.max, Int.min].map { .int($0) })),
            .init(key: .string("lr"), value: .float(-1.25e-4)),
            .init(key: .string("name"), value: .string("spleen ✓")),
            .init(key: .string("blob"), value: .bytes([0, 1, 2, 255])),
            .init(key: .string("flags"), value: .tuple([.bool(true), .bool(false), .none])),
            .init(key: .string("shape"), value: .tuple((1...5).map { .int($0) })),
            .init(key: .int(3), value: .list([])),
            .init(key: .string("nested"), value: .dict(PickleDict(ordered: true, [.init(key: .string("x"), value: .tuple([]))]))),
        ]))
        let file = dir.file("roundtrip.pt")
        try Checkpoint.write(value, to: file)
        #expect(try Checkpoint.read(contentsOf: file) == value)
        let sd = try Checkpoint.stateDict(from: file)
        #expect(sd.map(\.name) == tensors.map(\.name))
        #expect(sd.map(\.tensor) == tensors.map(\.tensor))
    }

    @Test func writeCheckpoint_monaiFixture_readsBackIdenticalIncludingMetadata() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        for url in try Fixtures.monaiCheckpoints().prefix(4) {
            let original = try Checkpoint.read(contentsOf: url)
            let copy = dir.file(url.lastPathComponent)
            try Checkpoint.write(original, to: copy)
            #expect(try Checkpoint.read(contentsOf: copy) == original, "\(url.lastPathComponent)")
            #expect(try Checkpoint.read(bytes: Array(Data(contentsOf: copy))) == original, "\(url.lastPathComponent) from memory")
        }
    }

    @Test func writeCheckpoint_storagesAre64ByteAligned_andRecordsAreTorchStyle() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let file = dir.file("aligned.pt")
        try Checkpoint.write(stateDict: sampleTensors(), to: file)
        let zip = try ZipReader(url: file)
        #expect(zip.entries.map(\.name).first == "aligned/data.pkl")
        #expect(zip.entries.map(\.name).last == "aligned/version")
        #expect(try zip.entry(named: "aligned/version").map(zip.contents) == Array("3\n".utf8))
        #expect(try zip.entry(named: "aligned/byteorder").map(zip.contents) == Array("little".utf8))
        for entry in zip.entries {
            #expect(entry.method == 0)
            #expect(try zip.dataOffset(of: entry) % 64 == 0, "\(entry.name)")
        }
    }

    @Test func writeCheckpoint_forcedZip64_readsBack() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let file = dir.file("zip64.pt")
        let value = PickleValue.stateDict(sampleTensors())
        try Checkpoint.write(value, to: file, forceZip64: true)
        let bytes = Array(try Data(contentsOf: file))
        // The zip64 end-of-central-directory record and locator are present.
        #expect(bytes.indices.dropLast(4).contains { bytes[$0..<($0 + 4)].elementsEqual([0x50, 0x4B, 0x06, 0x06]) })
        #expect(bytes.indices.dropLast(4).contains { bytes[$0..<($0 + 4)].elementsEqual([0x50, 0x4B, 0x06, 0x07]) })
        #expect(try Checkpoint.read(contentsOf: file) == value)
    }

    @Test func writeCheckpoint_replacesExistingFileAtomically_leavingNoTemporaries() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let file = dir.file("model.pt")
        try Data("old contents".utf8).write(to: file)
        let value = PickleValue.stateDict(Array(sampleTensors().prefix(2)))
        try Checkpoint.write(value, to: file)
        #expect(try Checkpoint.read(contentsOf: file) == value)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.url.path) == ["model.pt"])
    }

    @Test func writeCheckpoint_missingDirectory_throwsIOError() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        #expect(throws: CheckpointError.self) {
            try Checkpoint.write(.none, to: dir.file("no/such/dir/model.pt"))
        }
    }

    @Test func writeCheckpoint_tensorWhoseBytesDoNotMatchShape_isRefused() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        var tensor = StoredTensor(dtype: .float32, shape: [2], bytes: floatBytes([1, 2]))
        tensor.shape = [3]
        do {
            try Checkpoint.write(.tensor(tensor), to: dir.file("bad.pt"))
            Issue.record("expected a refusal")
        } catch let error as CheckpointError {
            #expect(error.kind == .unwritableValue)
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.url.path).isEmpty)
    }

    @Test func stateDict_unwrapsModelKey_acceptsBareDicts_andRejectsOthers() throws {
        let tensors = Array(sampleTensors().prefix(3))
        let bare = PickleValue.stateDict(tensors)
        let wrapped = PickleValue.dict(PickleDict([
            .init(key: .string("model"), value: bare), .init(key: .string("epoch"), value: .int(7)),
        ]))
        #expect(try Checkpoint.stateDict(in: bare).map(\.name) == tensors.map(\.name))
        #expect(try Checkpoint.stateDict(in: wrapped).map(\.name) == tensors.map(\.name))
        #expect(try Checkpoint.stateDict(in: bare, key: nil).map(\.name) == tensors.map(\.name))
        #expect(throws: CheckpointError.self) { try Checkpoint.stateDict(in: wrapped, key: nil) }
        #expect(throws: CheckpointError.self) { try Checkpoint.stateDict(in: wrapped, key: "state_dict") }
        #expect(throws: CheckpointError.self) { try Checkpoint.stateDict(in: .list([])) }
        let namedModel = PickleValue.stateDict([("model", tensors[0].tensor), ("head", tensors[1].tensor)])
        #expect(try Checkpoint.stateDict(in: namedModel).map(\.name) == ["model", "head"])
        let notDict = PickleValue.dict(PickleDict([.init(key: .string("model"), value: .int(1))]))
        #expect(throws: CheckpointError.self) { try Checkpoint.stateDict(in: notDict) }
    }
}
