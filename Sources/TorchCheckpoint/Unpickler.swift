import Foundation

/// The Python callables and classes a weights-only checkpoint may name. Anything else is refused at the
/// GLOBAL/STACK_GLOBAL opcode itself, so no other name ever reaches the stack, let alone a call.
enum AllowedGlobal: Equatable {
    case orderedDict
    case rebuildTensorV2
    case rebuildParameter
    case rebuildParameterWithState
    case codecsEncode
    case storageType(StoredDType)

    init?(module: String, name: String) {
        switch (module, name) {
        case ("collections", "OrderedDict"): self = .orderedDict
        case ("torch._utils", "_rebuild_tensor_v2"): self = .rebuildTensorV2
        case ("torch._utils", "_rebuild_parameter"): self = .rebuildParameter
        case ("torch._utils", "_rebuild_parameter_with_state"): self = .rebuildParameterWithState
        case ("_codecs", "encode"): self = .codecsEncode
        // An untyped storage holds raw bytes; torch.load gives it dtype uint8 as well.
        case ("torch", "UntypedStorage"), ("torch.storage", "UntypedStorage"): self = .storageType(.uint8)
        case ("torch", _):
            guard let dtype = StoredDType(storageClassName: name) else { return nil }
            self = .storageType(dtype)
        default: return nil
        }
    }
}

extension StoredDType {
    /// PyTorch's legacy typed-storage class for this dtype (`torch.FloatStorage` ...), which `torch.save`
    /// still names in each storage's persistent id.
    var storageClassName: String {
        switch self {
        case .float32: return "FloatStorage"
        case .float64: return "DoubleStorage"
        case .float16: return "HalfStorage"
        case .bfloat16: return "BFloat16Storage"
        case .int64: return "LongStorage"
        case .int32: return "IntStorage"
        case .int16: return "ShortStorage"
        case .int8: return "CharStorage"
        case .uint8: return "ByteStorage"
        case .bool: return "BoolStorage"
        }
    }

    /// The dtype of a `torch.<name>` storage class, or nil for any other name.
    init?(storageClassName: String) {
        guard let dtype = StoredDType.allCases.first(where: { $0.storageClassName == storageClassName }) else { return nil }
        self = dtype
    }
}

/// A storage record loaded for a persistent id: `numel` elements of `dtype`, native little-endian order.
struct LoadedStorage {
    var key: String
    var dtype: StoredDType
    var bytes: [UInt8]
}

/// Restricted unpickler for `torch.save`'s `data.pkl`: a stack machine over plain data that can only build
/// `PickleValue`s. It never imports, looks up or calls anything; the few allowlisted globals are interpreted
/// here by hand. Every length and index is checked before use, so a hostile file yields an error, not a crash
/// or a huge allocation.
struct Unpickler {
    /// Loads the storage record `key`, declared as `numel` elements of `dtype`.
    typealias StorageLoader = (_ key: String, _ dtype: StoredDType, _ numel: Int) throws -> LoadedStorage

    /// Mutable containers are boxed because pickles memoize a list or dict before filling it and later
    /// GETs must see the filled object.
    private final class ListBox { var items: [Obj] = [] }
    private final class TupleBox {
        var items: [Obj]
        init(_ items: [Obj]) { self.items = items }
    }
    private final class DictBox {
        var ordered: Bool
        var entries: [(key: Obj, value: Obj)] = []
        var index: [HashKey: Int] = [:]
        var metadata: Obj?
        init(ordered: Bool) { self.ordered = ordered }
    }

    private enum Obj {
        case none, bool(Bool), int(Int), float(Double), string(String), bytes([UInt8])
        case list(ListBox), tuple(TupleBox), dict(DictBox)
        case tensor(StoredTensor)
        case global(AllowedGlobal, String)
        case storage(LoadedStorage)

        var typeName: String {
            switch self {
            case .none: return "None"
            case .bool: return "bool"
            case .int: return "int"
            case .float: return "float"
            case .string: return "str"
            case .bytes: return "bytes"
            case .list: return "list"
            case .tuple: return "tuple"
            case .dict(let d): return d.ordered ? "OrderedDict" : "dict"
            case .tensor: return "tensor"
            case .global(_, let name): return name
            case .storage: return "storage"
            }
        }
    }

    /// Python's dict identity for keys: equal numbers hash alike across bool/int/float, as in Python.
    private indirect enum HashKey: Hashable {
        case none, int(Int), float(UInt64), string(String), bytes([UInt8]), tuple([HashKey])
    }

    /// Nesting allowed in the result; deeper structures are not checkpoints and would risk the stack.
    static let maxDepth = 200
    /// Objects the result may expand to; memo GETs can share subtrees, which conversion copies.
    static let maxNodes = 2_000_000

    private let bytes: [UInt8]
    private var position = 0
    private var stack: [Obj] = []
    private var marks: [Int] = []
    private var memo: [UInt64: Obj] = [:]
    private var boxes: [AnyObject] = []
    private let loadStorage: StorageLoader
    private var storages: [String: LoadedStorage] = [:]
    private var nodeBudget = Unpickler.maxNodes
    private var copyBudget: Int

    init(_ bytes: [UInt8], copyBudget: Int, loadStorage: @escaping StorageLoader) {
        self.bytes = bytes
        self.copyBudget = copyBudget
        self.loadStorage = loadStorage
    }

    /// Runs the pickle to its STOP and returns the value it built. `copyBudget` bounds the bytes that
    /// non-trivial tensor views may materialise (see `TensorLayout.gather`).
    static func load(_ bytes: [UInt8], copyBudget: Int, loadStorage: @escaping StorageLoader) throws -> PickleValue {
        var unpickler = Unpickler(bytes, copyBudget: copyBudget, loadStorage: loadStorage)
        defer { unpickler.releaseBoxes() }
        let result = try unpickler.run()
        return try unpickler.convert(result, depth: 0)
    }

    /// Empties every container iteratively, so cyclic or deeply nested hostile graphs neither leak nor
    /// overflow the stack in recursive deinit.
    private mutating func releaseBoxes() {
        for box in boxes {
            if let l = box as? ListBox { l.items = [] }
            else if let t = box as? TupleBox { t.items = [] }
            else if let d = box as? DictBox { d.entries = []; d.metadata = nil }
        }
        boxes = []
        memo = [:]
        stack = []
    }

    // MARK: Reading the stream

    private func malformed(_ message: String) -> CheckpointError {
        CheckpointError(.malformedPickle, "data.pkl at byte \(position): \(message)")
    }

    private mutating func read(_ count: Int) throws -> ArraySlice<UInt8> {
        guard count >= 0, count <= bytes.count - position else {
            throw malformed("truncated: needs \(count) more bytes, \(bytes.count - position) left")
        }
        defer { position += count }
        return bytes[position..<(position + count)]
    }

    private mutating func readUInt(_ count: Int) throws -> UInt64 {
        try read(count).reversed().reduce(0) { $0 << 8 | UInt64($1) }
    }

    private mutating func readLength(_ width: Int) throws -> Int {
        let n = try readUInt(width)
        guard n <= UInt64(bytes.count - position) else {
            throw malformed("declared length \(n) exceeds the \(bytes.count - position) bytes left")
        }
        return Int(n)
    }

    private mutating func readLine() throws -> String {
        guard let end = bytes[position...].firstIndex(of: 0x0A) else { throw malformed("truncated: unterminated line") }
        let line = bytes[position..<end]
        position = end + 1
        guard let text = String(bytes: line, encoding: .utf8) else { throw malformed("line is not UTF-8") }
        return text
    }

    private mutating func utf8(_ count: Int) throws -> String {
        guard let text = String(bytes: try read(count), encoding: .utf8) else { throw malformed("string is not valid UTF-8") }
        return text
    }

    // MARK: Stack

    private mutating func pop() throws -> Obj {
        guard stack.count > (marks.last ?? 0), let top = stack.popLast() else { throw malformed("stack underflow") }
        return top
    }

    private func top() throws -> Obj {
        guard stack.count > (marks.last ?? 0), let top = stack.last else { throw malformed("stack underflow") }
        return top
    }

    private mutating func popMark() throws -> [Obj] {
        guard let mark = marks.popLast() else { throw malformed("no MARK on the stack") }
        let items = Array(stack[mark...])
        stack.removeSubrange(mark...)
        return items
    }

    private mutating func push(_ obj: Obj) { stack.append(obj) }

    private mutating func makeTuple(_ items: [Obj]) -> Obj {
        let box = TupleBox(items)
        boxes.append(box)
        return .tuple(box)
    }

    private mutating func makeDict(ordered: Bool) -> DictBox {
        let box = DictBox(ordered: ordered)
        boxes.append(box)
        return box
    }

    /// The dict identity of `obj`. Keys can be tuples nested as deep as the file likes (TUPLE1 builds them
    /// iteratively), and `HashKey`'s synthesized hashing, equality and deinit recurse, so nesting is bounded here
    /// by `maxDepth` before any of those run.
    private func hashKey(_ obj: Obj, depth: Int = 0) throws -> HashKey {
        guard depth < Unpickler.maxDepth else {
            throw malformed("dict key nests deeper than \(Unpickler.maxDepth) levels")
        }
        switch obj {
        case .none: return .none
        case .bool(let b): return .int(b ? 1 : 0)
        case .int(let i): return .int(i)
        case .float(let f):
            if f.rounded() == f, let i = Int(exactly: f) { return .int(i) }
            return .float(f.bitPattern)
        case .string(let s): return .string(s)
        case .bytes(let b): return .bytes(b)
        case .tuple(let t): return .tuple(try t.items.map { try hashKey($0, depth: depth + 1) })
        default: throw malformed("unhashable dict key of type \(obj.typeName)")
        }
    }

    private func setItem(_ dict: DictBox, _ key: Obj, _ value: Obj) throws {
        let hk = try hashKey(key)
        if let i = dict.index[hk] {
            dict.entries[i].value = value
        } else {
            dict.index[hk] = dict.entries.count
            dict.entries.append((key, value))
        }
    }

    // MARK: The machine

    private mutating func run() throws -> Obj {
        while true {
            let opcode = try read(1).first ?? 0
            switch opcode {
            case 0x80: // PROTO
                let version = try readUInt(1)
                guard version <= 5 else { throw malformed("unsupported pickle protocol \(version)") }
            case 0x95: // FRAME: framing is only a buffering hint
                _ = try readUInt(8)
            case 0x2E: // STOP
                return try pop()
            case 0x28: // MARK
                marks.append(stack.count)
            case 0x30: // POP
                if stack.count == (marks.last ?? -1) { _ = try popMark() } else { _ = try pop() }
            case 0x31: // POP_MARK
                _ = try popMark()
            case 0x32: // DUP
                push(try top())
            case 0x4E: push(.none) // NONE
            case 0x88: push(.bool(true)) // NEWTRUE
            case 0x89: push(.bool(false)) // NEWFALSE
            case 0x4A: // BININT
                push(.int(Int(Int32(truncatingIfNeeded: UInt32(try readUInt(4))))))
            case 0x4B: push(.int(Int(try readUInt(1)))) // BININT1
            case 0x4D: push(.int(Int(try readUInt(2)))) // BININT2
            case 0x8A: // LONG1
                push(.int(try decodeLong(try read(Int(try readUInt(1))))))
            case 0x8B: // LONG4
                push(.int(try decodeLong(try read(try readLength(4)))))
            case 0x47: // BINFLOAT (big-endian)
                push(.float(Double(bitPattern: try read(8).reduce(0) { $0 << 8 | UInt64($1) })))
            case 0x58: push(.string(try utf8(try readLength(4)))) // BINUNICODE
            case 0x8C: push(.string(try utf8(try readLength(1)))) // SHORT_BINUNICODE
            case 0x8D: push(.string(try utf8(try readLength(8)))) // BINUNICODE8
            case 0x42: push(.bytes(Array(try read(try readLength(4))))) // BINBYTES
            case 0x43: push(.bytes(Array(try read(try readLength(1))))) // SHORT_BINBYTES
            case 0x8E: push(.bytes(Array(try read(try readLength(8))))) // BINBYTES8
            case 0x55: // SHORT_BINSTRING (Python 2 str; torch.load decodes it as ASCII)
                let raw = try read(try readLength(1))
                guard raw.allSatisfy({ $0 < 0x80 }), let s = String(bytes: raw, encoding: .ascii) else {
                    throw malformed("SHORT_BINSTRING is not ASCII")
                }
                push(.string(s))
            case 0x29: push(makeTuple([])) // EMPTY_TUPLE
            case 0x85: push(makeTuple([try pop()])) // TUPLE1
            case 0x86: // TUPLE2
                let b = try pop(), a = try pop()
                push(makeTuple([a, b]))
            case 0x87: // TUPLE3
                let c = try pop(), b = try pop(), a = try pop()
                push(makeTuple([a, b, c]))
            case 0x74: push(makeTuple(try popMark())) // TUPLE
            case 0x5D: // EMPTY_LIST
                let box = ListBox()
                boxes.append(box)
                push(.list(box))
            case 0x6C: // LIST
                let box = ListBox()
                box.items = try popMark()
                boxes.append(box)
                push(.list(box))
            case 0x61: // APPEND
                let item = try pop()
                guard case .list(let box) = try top() else { throw malformed("APPEND to a \(try top().typeName)") }
                box.items.append(item)
            case 0x65: // APPENDS
                let items = try popMark()
                guard case .list(let box) = try top() else { throw malformed("APPENDS to a \(try top().typeName)") }
                box.items.append(contentsOf: items)
            case 0x7D: push(.dict(makeDict(ordered: false))) // EMPTY_DICT
            case 0x64: // DICT
                let items = try popMark()
                let box = makeDict(ordered: false)
                try fill(box, items)
                push(.dict(box))
            case 0x73: // SETITEM
                let value = try pop(), key = try pop()
                guard case .dict(let box) = try top() else { throw malformed("SETITEM on a \(try top().typeName)") }
                try setItem(box, key, value)
            case 0x75: // SETITEMS
                let items = try popMark()
                guard case .dict(let box) = try top() else { throw malformed("SETITEMS on a \(try top().typeName)") }
                try fill(box, items)
            case 0x71: try put(try readUInt(1)) // BINPUT
            case 0x72: try put(try readUInt(4)) // LONG_BINPUT
            case 0x94: try put(UInt64(memo.count)) // MEMOIZE
            case 0x68: try get(try readUInt(1)) // BINGET
            case 0x6A: try get(try readUInt(4)) // LONG_BINGET
            case 0x63: // GLOBAL
                let module = try readLine()
                let name = try readLine()
                push(try resolveGlobal(module: module, name: name))
            case 0x93: // STACK_GLOBAL
                let name = try pop(), module = try pop()
                guard case .string(let n) = name, case .string(let m) = module else {
                    throw malformed("STACK_GLOBAL needs two strings, got \(module.typeName) and \(name.typeName)")
                }
                push(try resolveGlobal(module: m, name: n))
            case 0x52: // REDUCE
                let args = try pop()
                let callable = try pop()
                push(try reduce(callable, args))
            case 0x81: // NEWOBJ
                let args = try pop()
                let cls = try pop()
                guard case .global(.orderedDict, _) = cls else {
                    throw CheckpointError(.forbiddenGlobal, "refusing to instantiate \(cls.typeName) (NEWOBJ); only collections.OrderedDict is allowed")
                }
                push(try reduce(cls, args))
            case 0x62: // BUILD
                let state = try pop()
                try build(try top(), state)
            case 0x51: // BINPERSID
                push(try persistentLoad(try pop()))
            default:
                throw CheckpointError(.unsupportedOpcode, "data.pkl at byte \(position - 1): \(Unpickler.describe(opcode)) is not accepted in a weights-only checkpoint")
            }
        }
    }

    private static func describe(_ opcode: UInt8) -> String {
        let names: [UInt8: String] = [
            0x69: "INST", 0x6F: "OBJ", 0x92: "NEWOBJ_EX", 0x82: "EXT1", 0x83: "EXT2", 0x84: "EXT4",
            0x50: "PERSID", 0x97: "NEXT_BUFFER", 0x98: "READONLY_BUFFER", 0x8F: "EMPTY_SET", 0x90: "ADDITEMS",
            0x91: "FROZENSET", 0x49: "INT", 0x4C: "LONG", 0x46: "FLOAT", 0x53: "STRING", 0x54: "BINSTRING",
            0x56: "UNICODE", 0x67: "GET", 0x70: "PUT", 0x96: "BYTEARRAY8",
        ]
        let hex = "0x" + String(opcode, radix: 16, uppercase: true)
        return names[opcode].map { "opcode \($0) (\(hex))" } ?? "unknown opcode \(hex)"
    }

    private mutating func fill(_ box: DictBox, _ items: [Obj]) throws {
        guard items.count % 2 == 0 else { throw malformed("odd number of items for a dict") }
        var i = 0
        while i < items.count {
            try setItem(box, items[i], items[i + 1])
            i += 2
        }
    }

    private mutating func put(_ index: UInt64) throws {
        memo[index] = try top()
    }

    private mutating func get(_ index: UInt64) throws {
        guard let obj = memo[index] else { throw malformed("memo has no entry \(index)") }
        push(obj)
    }

    private func decodeLong(_ raw: ArraySlice<UInt8>) throws -> Int {
        guard let last = raw.last else { return 0 }
        let negative = last & 0x80 != 0
        // Bytes beyond the eighth may only be sign extension.
        if raw.count > 8 {
            let fill: UInt8 = negative ? 0xFF : 0x00
            guard raw.dropFirst(8).allSatisfy({ $0 == fill }), (raw[raw.startIndex + 7] & 0x80 != 0) == negative else {
                throw CheckpointError(.unexpectedContent, "data.pkl at byte \(position): integer wider than 64 bits")
            }
        }
        var value: UInt64 = negative ? ~0 : 0
        for (i, byte) in raw.prefix(8).enumerated() {
            value &= ~(UInt64(0xFF) << (8 * UInt64(i)))
            value |= UInt64(byte) << (8 * UInt64(i))
        }
        return Int(Int64(bitPattern: value))
    }

    private func resolveGlobal(module: String, name: String) throws -> Obj {
        guard let global = AllowedGlobal(module: module, name: name) else {
            var message = "refusing global \(module).\(name): only collections.OrderedDict, torch._utils tensor rebuilders and torch storage types are allowed in a weights-only checkpoint; nothing was executed"
            if module.hasPrefix("__torch__") { message += " (this looks like a TorchScript archive)" }
            throw CheckpointError(.forbiddenGlobal, message)
        }
        return .global(global, "\(module).\(name)")
    }

    // MARK: Allowlisted calls

    private func tupleItems(_ obj: Obj, _ what: String) throws -> [Obj] {
        guard case .tuple(let t) = obj else { throw malformed("\(what) expects a tuple, got \(obj.typeName)") }
        return t.items
    }

    private mutating func reduce(_ callable: Obj, _ argsObj: Obj) throws -> Obj {
        guard case .global(let global, let name) = callable else {
            throw CheckpointError(.forbiddenGlobal, "refusing to call a \(callable.typeName) (REDUCE); only allowlisted globals can be called")
        }
        let args = try tupleItems(argsObj, name)
        switch global {
        case .orderedDict:
            let box = makeDict(ordered: true)
            switch args.count {
            case 0: break
            case 1:
                guard case .list(let pairs) = args[0] else { throw malformed("OrderedDict(...) expects a list of pairs") }
                for pair in pairs.items {
                    let kv = try tupleItems(pair, "OrderedDict item")
                    guard kv.count == 2 else { throw malformed("OrderedDict item is not a pair") }
                    try setItem(box, kv[0], kv[1])
                }
            default: throw malformed("OrderedDict takes at most one argument, got \(args.count)")
            }
            return .dict(box)
        case .rebuildTensorV2:
            guard (6...7).contains(args.count) else { throw malformed("\(name) takes 6 or 7 arguments, got \(args.count)") }
            guard case .bool = args[4] else { throw malformed("\(name): requires_grad is a \(args[4].typeName)") }
            guard case .dict = args[5] else { throw malformed("\(name): backward_hooks is a \(args[5].typeName)") }
            return .tensor(try rebuildTensor(storage: args[0], offset: args[1], size: args[2], stride: args[3]))
        case .rebuildParameter, .rebuildParameterWithState:
            let expected = global == .rebuildParameter ? 3 : 4
            guard args.count == expected else { throw malformed("\(name) takes \(expected) arguments, got \(args.count)") }
            guard case .tensor = args[0] else { throw malformed("\(name): data is a \(args[0].typeName)") }
            return args[0]
        case .codecsEncode:
            // Protocol 2 spells Python 3 bytes as _codecs.encode(latin-1 text, "latin1").
            guard args.count == 2, case .string(let text) = args[0], case .string(let codec) = args[1],
                  ["latin1", "latin-1", "iso-8859-1"].contains(codec.lowercased()) else {
                throw malformed("_codecs.encode is only accepted as encode(str, 'latin1')")
            }
            var out: [UInt8] = []
            out.reserveCapacity(text.unicodeScalars.count)
            for scalar in text.unicodeScalars {
                guard scalar.value < 256 else { throw malformed("_codecs.encode text is not latin-1") }
                out.append(UInt8(scalar.value))
            }
            return .bytes(out)
        case .storageType:
            throw CheckpointError(.forbiddenGlobal, "refusing to call storage class \(name)")
        }
    }

    private func build(_ target: Obj, _ state: Obj) throws {
        guard case .dict(let box) = target, box.ordered else {
            throw CheckpointError(.forbiddenGlobal, "refusing BUILD on a \(target.typeName); only OrderedDict state is accepted")
        }
        guard case .dict(let attributes) = state else { throw malformed("OrderedDict state is a \(state.typeName), not a dict") }
        // Only `_metadata` means anything for a state dict; other attributes are dropped, never applied.
        for (key, value) in attributes.entries {
            if case .string("_metadata") = key { box.metadata = value }
        }
    }

    private mutating func persistentLoad(_ pid: Obj) throws -> Obj {
        let fields = try tupleItems(pid, "persistent id")
        guard fields.count == 5, case .string("storage") = fields[0] else {
            throw CheckpointError(.forbiddenGlobal, "refusing persistent id that is not ('storage', type, key, location, numel)")
        }
        guard case .global(.storageType(let dtype), _) = fields[1] else {
            throw malformed("persistent id names \(fields[1].typeName), not a torch storage type")
        }
        guard case .string(let key) = fields[2] else { throw malformed("storage key is a \(fields[2].typeName)") }
        guard case .string = fields[3] else { throw malformed("storage location is a \(fields[3].typeName)") }
        guard case .int(let numel) = fields[4], numel >= 0 else { throw malformed("storage size is not a non-negative int") }
        if let cached = storages[key] { return .storage(cached) }
        let storage = try loadStorage(key, dtype, numel)
        storages[key] = storage
        return .storage(storage)
    }

    private func ints(_ obj: Obj, _ what: String) throws -> [Int] {
        try tupleItems(obj, what).map {
            guard case .int(let v) = $0, v >= 0 else { throw CheckpointError(.invalidTensor, "\(what) holds \($0.typeName) that is not a non-negative int") }
            return v
        }
    }

    private mutating func rebuildTensor(storage storageObj: Obj, offset offsetObj: Obj, size sizeObj: Obj, stride strideObj: Obj) throws -> StoredTensor {
        guard case .storage(let storage) = storageObj else { throw malformed("tensor storage is a \(storageObj.typeName)") }
        guard case .int(let offset) = offsetObj, offset >= 0 else { throw CheckpointError(.invalidTensor, "storage offset is not a non-negative int") }
        let shape = try ints(sizeObj, "tensor size")
        let stride = try ints(strideObj, "tensor stride")
        return try TensorLayout.gather(storage: storage, offset: offset, shape: shape, stride: stride, copyBudget: &copyBudget)
    }

    // MARK: Result

    private mutating func convert(_ obj: Obj, depth: Int) throws -> PickleValue {
        guard depth < Unpickler.maxDepth else {
            throw CheckpointError(.unexpectedContent, "data.pkl nests deeper than \(Unpickler.maxDepth) levels (or is cyclic)")
        }
        nodeBudget -= 1
        guard nodeBudget >= 0 else {
            throw CheckpointError(.unexpectedContent, "data.pkl expands to more than \(Unpickler.maxNodes) objects")
        }
        switch obj {
        case .none: return .none
        case .bool(let b): return .bool(b)
        case .int(let i): return .int(i)
        case .float(let f): return .float(f)
        case .string(let s): return .string(s)
        case .bytes(let b): return .bytes(b)
        case .tensor(let t): return .tensor(t)
        case .list(let box): return .list(try box.items.map { try convert($0, depth: depth + 1) })
        case .tuple(let box): return .tuple(try box.items.map { try convert($0, depth: depth + 1) })
        case .dict(let box):
            let entries = try box.entries.map {
                PickleDict.Entry(key: try convert($0.key, depth: depth + 1), value: try convert($0.value, depth: depth + 1))
            }
            let metadata = try box.metadata.map { try convert($0, depth: depth + 1) }
            return .dict(PickleDict(ordered: box.ordered, entries, metadata: metadata))
        case .global(_, let name):
            throw CheckpointError(.unexpectedContent, "data.pkl leaves the bare global \(name) in its result")
        case .storage(let s):
            throw CheckpointError(.unexpectedContent, "data.pkl leaves untyped storage \"\(s.key)\" in its result; only tensors are supported")
        }
    }
}
