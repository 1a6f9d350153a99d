import Foundation
import Testing
@testable import TorchCheckpoint

@Suite(.tags(.unit)) struct TensorLayoutTests {
    private func read(_ p: PickleBytes, storages: [(String, [UInt8])], byteorder: String? = "little") throws -> PickleValue {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let file = dir.file("t.pt")
        try writeCheckpoint(pickle: p, storages: storages, byteorder: byteorder, to: file)
        return try Checkpoint.read(contentsOf: file)
    }

    @Test func readCheckpoint_transposedViewWithOffset_isMadeContiguous() throws {
        // Storage 0...7; the view starts at element 1 and is the transpose of a 2x3 block: shape (3, 2),
        // stride (1, 3) -> [[1, 4], [2, 5], [3, 6]].
        var p = PickleBytes()
        p.tensor("FloatStorage", key: "0", numel: 8, offset: 1, size: [3, 2], stride: [1, 3])
        p.stop()
        let value = try read(p, storages: [("0", floatBytes((0..<8).map(Float.init)))])
        #expect(value == .tensor(StoredTensor(dtype: .float32, shape: [3, 2], bytes: floatBytes([1, 4, 2, 5, 3, 6]))))
    }

    @Test func readCheckpoint_broadcastStrideAndSharedStorage_areMaterialised() throws {
        var p = PickleBytes()
        p.mark()
        p.tensor("IntStorage", key: "0", numel: 3, size: [2, 3], stride: [0, 1])
        p.tensor("IntStorage", key: "0", numel: 3, offset: 2, size: [1], stride: [1])
        p.tuple()
        p.stop()
        let ints: [UInt8] = [5, 6, 7].flatMap { le(UInt64($0), 4) }
        let value = try read(p, storages: [("0", ints)])
        #expect(value == .tuple([
            .tensor(StoredTensor(dtype: .int32, shape: [2, 3], bytes: ints + ints)),
            .tensor(StoredTensor(dtype: .int32, shape: [1], bytes: le(7, 4))),
        ]))
    }

    @Test func readCheckpoint_bigEndianByteorder_isSwappedToLittle() throws {
        var p = PickleBytes()
        p.mark()
        p.tensor("IntStorage", key: "0", numel: 2, size: [2], stride: [1])
        p.tensor("ShortStorage", key: "1", numel: 1, size: [], stride: [])
        p.tensor("ByteStorage", key: "2", numel: 2, size: [2], stride: [1])
        p.tuple()
        p.stop()
        let value = try read(p, storages: [("0", [0, 0, 1, 2, 0xFF, 0xFF, 0xFF, 0xFE]), ("1", [0x12, 0x34]), ("2", [1, 2])],
                             byteorder: "big")
        #expect(value == .tuple([
            .tensor(StoredTensor(dtype: .int32, shape: [2], bytes: [2, 1, 0, 0, 0xFE, 0xFF, 0xFF, 0xFF])),
            .tensor(StoredTensor(dtype: .int16, shape: [], bytes: [0x34, 0x12])),
            .tensor(StoredTensor(dtype: .uint8, shape: [2], bytes: [1, 2])),
        ]))
    }

    @Test func readCheckpoint_parameterUntypedStorageAndProtocol4Framing_areAccepted() throws {
        var p = PickleBytes(protocol: 4)
        p.op(0x95, le(0, 8))
        p.shortString("torch._utils")
        p.shortString("_rebuild_parameter")
        p.op(0x93)
        p.op(0x94)
        p.tensor("UntypedStorage", key: "0", numel: 3, size: [3], stride: [1])
        p.op(0x88)
        p.global("collections", "OrderedDict")
        p.op(0x29)
        p.reduce()
        p.op(0x87)
        p.reduce()
        p.stop()
        let value = try read(p, storages: [("0", [7, 8, 9])])
        #expect(value == .tensor(StoredTensor(dtype: .uint8, shape: [3], bytes: [7, 8, 9])))
    }

    @Test func readCheckpoint_bytesViaCodecsEncode_andDuplicateKeys_followPython() throws {
        var p = PickleBytes()
        p.op(0x7D)
        p.mark()
        p.string("blob")
        p.global("_codecs", "encode")
        p.string("\u{00}\u{FF}A")
        p.string("latin1")
        p.op(0x86)
        p.reduce()
        p.string("k")
        p.int(1)
        p.string("k")
        p.int(2)
        p.op(0x75)
        p.stop()
        let value = try read(p, storages: [])
        #expect(value == .dict(PickleDict([
            .init(key: .string("blob"), value: .bytes([0, 255, 65])),
            .init(key: .string("k"), value: .int(2)),
        ])))
    }
}
