/// Writes a `PickleValue` as the protocol-2 pickle `torch.save` produces, collecting tensor bytes as
/// separate storage records. Only opcodes and globals that `torch.load(weights_only=True)` accepts are used:
/// `collections.OrderedDict`, `torch._utils._rebuild_tensor_v2`, the `torch.*Storage` classes and
/// `_codecs.encode` (for bytes). No memo is written: nothing is shared, so nothing needs one.
struct Pickler {
    /// A tensor's bytes, to be written as `data/<key>`.
    struct StorageRecord {
        var key: String
        var bytes: [UInt8]
    }

    private(set) var output: [UInt8] = []
    private(set) var storages: [StorageRecord] = []

    /// Items per MARK ... APPENDS/SETITEMS batch, as CPython's pickler does.
    private static let batchSize = 1000

    static func pickle(_ value: PickleValue) throws -> (pickle: [UInt8], storages: [StorageRecord]) {
        var pickler = Pickler()
        pickler.output = [0x80, 2]
        try pickler.write(value, depth: 0)
        pickler.output.append(0x2E)
        return (pickler.output, pickler.storages)
    }

    private mutating func write(_ value: PickleValue, depth: Int) throws {
        guard depth < Unpickler.maxDepth else {
            throw CheckpointError(.unwritableValue, "value nests deeper than \(Unpickler.maxDepth) levels")
        }
        switch value {
        case .none: output.append(0x4E)
        case .bool(let b): output.append(b ? 0x88 : 0x89)
        case .int(let i): writeInt(i)
        case .float(let f):
            output.append(0x47)
            appendBigEndian(f.bitPattern)
        case .string(let s): writeString(s)
        case .bytes(let b):
            // As CPython's protocol-2 pickler spells bytes; torch's weights-only loader has no BINBYTES
            // opcode but allowlists `_codecs.encode` for exactly this.
            writeGlobal("_codecs", "encode")
            var latin1 = String.UnicodeScalarView()
            latin1.append(contentsOf: b.map { Unicode.Scalar($0) })
            writeString(String(latin1))
            writeString("latin1")
            output.append(contentsOf: [0x86, 0x52])
        case .list(let items):
            output.append(0x5D)
            try writeBatches(items.map { [$0] }, end: 0x65, depth: depth)
        case .tuple(let items):
            try writeTuple(items, depth: depth)
        case .dict(let dict):
            if dict.ordered {
                writeGlobal("collections", "OrderedDict")
                output.append(contentsOf: [0x29, 0x52])
            } else {
                output.append(0x7D)
            }
            try writeBatches(dict.entries.map { [$0.key, $0.value] }, end: 0x75, depth: depth)
            if let metadata = dict.metadata {
                guard dict.ordered else { throw CheckpointError(.unwritableValue, "a plain dict cannot carry _metadata") }
                output.append(0x7D)
                writeString("_metadata")
                try write(metadata, depth: depth + 1)
                output.append(contentsOf: [0x73, 0x62])
            }
        case .tensor(let tensor):
            try writeTensor(tensor)
        }
    }

    private mutating func writeTuple(_ items: [PickleValue], depth: Int) throws {
        if items.isEmpty {
            output.append(0x29)
            return
        }
        if items.count > 3 { output.append(0x28) }
        for item in items { try write(item, depth: depth + 1) }
        output.append(items.count > 3 ? 0x74 : [0x85, 0x86, 0x87][items.count - 1])
    }

    private mutating func writeBatches(_ groups: [[PickleValue]], end: UInt8, depth: Int) throws {
        var start = 0
        while start < groups.count {
            output.append(0x28)
            for group in groups[start..<min(start + Pickler.batchSize, groups.count)] {
                for item in group { try write(item, depth: depth + 1) }
            }
            output.append(end)
            start += Pickler.batchSize
        }
    }

    private mutating func writeTensor(_ tensor: StoredTensor) throws {
        let count = tensor.shape.reduce(Optional(1)) { acc, n in
            guard let acc, n >= 0 else { return nil }
            let (product, overflow) = acc.multipliedReportingOverflow(by: n)
            return overflow ? nil : product
        }
        guard let count, count.multipliedReportingOverflow(by: tensor.dtype.size) == (count * tensor.dtype.size, false),
              count * tensor.dtype.size == tensor.bytes.count else {
            throw CheckpointError(.unwritableValue, "tensor of shape \(tensor.shape) does not match its \(tensor.bytes.count) bytes")
        }
        let key = String(storages.count)
        storages.append(StorageRecord(key: key, bytes: tensor.bytes))
        writeGlobal("torch._utils", "_rebuild_tensor_v2")
        output.append(0x28)
        // The persistent id ('storage', torch.<Type>Storage, key, location, numel).
        output.append(0x28)
        writeString("storage")
        writeGlobal("torch", tensor.dtype.storageClassName)
        writeString(key)
        writeString("cpu")
        writeInt(count)
        output.append(contentsOf: [0x74, 0x51])
        writeInt(0)
        try writeTuple(tensor.shape.map { .int($0) }, depth: 0)
        try writeTuple(TensorLayout.contiguousStrides(tensor.shape).map { .int($0) }, depth: 0)
        output.append(0x89)
        writeGlobal("collections", "OrderedDict")
        output.append(contentsOf: [0x29, 0x52])
        output.append(contentsOf: [0x74, 0x52])
    }

    private mutating func writeGlobal(_ module: String, _ name: String) {
        output.append(0x63)
        output.append(contentsOf: Array(module.utf8))
        output.append(0x0A)
        output.append(contentsOf: Array(name.utf8))
        output.append(0x0A)
    }

    private mutating func writeString(_ s: String) {
        let utf8 = Array(s.utf8)
        output.append(0x58)
        appendLittleEndian(UInt64(utf8.count), width: 4)
        output.append(contentsOf: utf8)
    }

    private mutating func writeInt(_ i: Int) {
        switch i {
        case 0...0xFF:
            output.append(0x4B)
            output.append(UInt8(i))
        case 0...0xFFFF:
            output.append(0x4D)
            appendLittleEndian(UInt64(i), width: 2)
        case Int(Int32.min)...Int(Int32.max):
            output.append(0x4A)
            appendLittleEndian(UInt64(UInt32(bitPattern: Int32(i))), width: 4)
        default:
            // LONG1: minimal little-endian two's complement.
            var bytes: [UInt8] = []
            var v = i
            repeat {
                bytes.append(UInt8(truncatingIfNeeded: v))
                v >>= 8
            } while !(v == 0 && bytes.last.map { $0 & 0x80 == 0 } == true) && !(v == -1 && bytes.last.map { $0 & 0x80 != 0 } == true)
            output.append(0x8A)
            output.append(UInt8(bytes.count))
            output.append(contentsOf: bytes)
        }
    }

    private mutating func appendLittleEndian(_ v: UInt64, width: Int) {
        for i in 0..<width { output.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) }
    }

    private mutating func appendBigEndian(_ v: UInt64) {
        for i in (0..<8).reversed() { output.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) }
    }
}
