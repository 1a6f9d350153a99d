import Foundation
import JSONEscaping

/// A JSON document that keeps object keys in insertion order and tells integers from floats, as Python's `json`
/// does. Upstream's datastore file and every info dict are insertion-ordered Python dicts; keeping the order
/// means a studies folder round-trips through us unchanged.
public enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object(JSONObject)

    public var objectValue: JSONObject? { if case .object(let o) = self { return o } else { return nil } }
    public var arrayValue: [JSONValue]? { if case .array(let a) = self { return a } else { return nil } }
    public var stringValue: String? { if case .string(let s) = self { return s } else { return nil } }
    public var boolValue: Bool? { if case .bool(let b) = self { return b } else { return nil } }
    public var isNull: Bool { self == .null }

    /// Integers, and floats with an integral value.
    public var intValue: Int? {
        switch self {
        case .int(let i): return i
        case .double(let d) where d.rounded() == d && abs(d) < 9.0e18: return Int(d)
        default: return nil
        }
    }

    /// Any number as Double.
    public var doubleValue: Double? {
        switch self {
        case .int(let i): return Double(i)
        case .double(let d): return d
        default: return nil
        }
    }

    /// Member lookup on objects; nil for other kinds.
    public subscript(key: String) -> JSONValue? { objectValue?[key] }

    /// How many arrays and objects nest at the deepest point (0 for a scalar, 1 for `{}` or `[1]`). Iterative, so
    /// any value can be measured.
    public var nestingDepth: Int {
        var deepest = 0
        var stack: [(JSONValue, Int)] = [(self, 0)]
        while let (value, depth) = stack.popLast() {
            switch value {
            case .array(let a):
                deepest = max(deepest, depth + 1)
                for v in a { stack.append((v, depth + 1)) }
            case .object(let o):
                deepest = max(deepest, depth + 1)
                for v in o.values { stack.append((v, depth + 1)) }
            default: continue
            }
        }
        return deepest
    }
}

/// An insertion-ordered JSON object.
public typealias JSONObject = OrderedMap<JSONValue>

/// An insertion-ordered map with Python `dict` semantics. Lookups go through a hash index so large datastores
/// stay fast; removal is linear, which is fine for how rarely images are deleted.
public struct OrderedMap<Value: Sendable>: Sendable, Sequence {
    public private(set) var keys: [String] = []
    private var storage: [String: Value] = [:]

    public init() {}
    public init(_ pairs: [(String, Value)]) {
        for (k, v) in pairs { self[k] = v }
    }

    public var count: Int { keys.count }
    public var isEmpty: Bool { keys.isEmpty }
    public var values: [Value] { keys.compactMap { storage[$0] } }

    /// Setting an existing key keeps its position (Python dict semantics); setting nil removes it.
    public subscript(key: String) -> Value? {
        get { storage[key] }
        set {
            if let v = newValue {
                if storage.updateValue(v, forKey: key) == nil { keys.append(key) }
            } else if storage.removeValue(forKey: key) != nil {
                keys.removeAll { $0 == key }
            }
        }
    }

    /// Python's `dict.update`: existing keys keep their place, new ones are appended.
    public mutating func merge(_ other: OrderedMap<Value>) {
        for (k, v) in other { self[k] = v }
    }

    public func makeIterator() -> Iterator { Iterator(keys: keys, storage: storage) }

    /// Walks keys in insertion order (a concrete iterator: `AnyIterator` costs a closure call per element).
    public struct Iterator: IteratorProtocol {
        let keys: [String]
        let storage: [String: Value]
        var i = 0

        public mutating func next() -> (key: String, value: Value)? {
            while i < keys.count {
                defer { i += 1 }
                if let v = storage[keys[i]] { return (key: keys[i], value: v) }
            }
            return nil
        }
    }
}

extension OrderedMap: Equatable where Value: Equatable {
    public static func == (a: OrderedMap, b: OrderedMap) -> Bool { a.keys == b.keys && a.storage == b.storage }
}

extension JSONValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByFloatLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral, ExpressibleByNilLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int) { self = .int(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(floatLiteral value: Double) { self = .double(value) }
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, JSONValue)...) { self = .object(JSONObject(elements)) }
    public init(nilLiteral: ()) { self = .null }
}

/// A JSON text that could not be parsed.
public struct JSONParseError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public let offset: Int
    public var description: String { "\(message) at byte \(offset)" }
}

// MARK: - Parsing

extension JSONValue {
    /// Parses a complete JSON text (RFC 8259; also Python's `NaN`/`Infinity`, which `json.dumps` can emit).
    public static func parse(_ bytes: some Collection<UInt8>) throws -> JSONValue {
        var parser = JSONParser(Array(bytes))
        return try parser.parseDocument()
    }

    public static func parse(_ text: String) throws -> JSONValue { try parse(Array(text.utf8)) }

    /// The deepest nesting `parse` accepts. What the datastore stores is held far shallower (`InfoLimits`), so a
    /// document it wrote always parses again.
    public static let maxParseDepth = 512
}

private struct JSONParser {
    let b: [UInt8]
    var i = 0
    var depth = 0
    static let maxDepth = JSONValue.maxParseDepth

    init(_ bytes: [UInt8]) { b = bytes }

    func fail(_ m: String) -> JSONParseError { JSONParseError(message: m, offset: i) }

    mutating func skipWS() {
        while i < b.count, b[i] == 0x20 || b[i] == 0x0A || b[i] == 0x0D || b[i] == 0x09 { i += 1 }
    }

    mutating func parseDocument() throws -> JSONValue {
        skipWS()
        let v = try parseValue()
        skipWS()
        guard i == b.count else { throw fail("unexpected trailing characters") }
        return v
    }

    mutating func literal(_ word: String, _ v: JSONValue) throws -> JSONValue {
        let w = Array(word.utf8)
        guard i + w.count <= b.count, Array(b[i..<i + w.count]) == w else { throw fail("invalid literal") }
        i += w.count
        return v
    }

    mutating func parseValue() throws -> JSONValue {
        guard i < b.count else { throw fail("unexpected end of input") }
        switch b[i] {
        case UInt8(ascii: "{"): return try parseObject()
        case UInt8(ascii: "["): return try parseArray()
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): return try literal("true", .bool(true))
        case UInt8(ascii: "f"): return try literal("false", .bool(false))
        case UInt8(ascii: "n"): return try literal("null", .null)
        case UInt8(ascii: "N"): return try literal("NaN", .double(.nan))
        case UInt8(ascii: "I"): return try literal("Infinity", .double(.infinity))
        default: return try parseNumber()
        }
    }

    mutating func enter() throws {
        depth += 1
        if depth > JSONParser.maxDepth { throw fail("nesting too deep") }
    }

    mutating func parseObject() throws -> JSONValue {
        try enter()
        defer { depth -= 1 }
        i += 1
        var obj = JSONObject()
        skipWS()
        if i < b.count, b[i] == UInt8(ascii: "}") {
            i += 1
            return .object(obj)
        }
        while true {
            skipWS()
            guard i < b.count, b[i] == UInt8(ascii: "\"") else { throw fail("expected a string key") }
            let key = try parseString()
            skipWS()
            guard i < b.count, b[i] == UInt8(ascii: ":") else { throw fail("expected ':'") }
            i += 1
            skipWS()
            obj[key] = try parseValue()
            skipWS()
            guard i < b.count else { throw fail("unterminated object") }
            if b[i] == UInt8(ascii: ",") {
                i += 1
                continue
            }
            guard b[i] == UInt8(ascii: "}") else { throw fail("expected ',' or '}'") }
            i += 1
            return .object(obj)
        }
    }

    mutating func parseArray() throws -> JSONValue {
        try enter()
        defer { depth -= 1 }
        i += 1
        var arr: [JSONValue] = []
        skipWS()
        if i < b.count, b[i] == UInt8(ascii: "]") {
            i += 1
            return .array(arr)
        }
        while true {
            skipWS()
            arr.append(try parseValue())
            skipWS()
            guard i < b.count else { throw fail("unterminated array") }
            if b[i] == UInt8(ascii: ",") {
                i += 1
                continue
            }
            guard b[i] == UInt8(ascii: "]") else { throw fail("expected ',' or ']'") }
            i += 1
            return .array(arr)
        }
    }

    mutating func hex4() throws -> UInt32 {
        guard i + 4 <= b.count else { throw fail("truncated \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = b[i]
            let d: UInt32
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt32(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt32(c - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt32(c - UInt8(ascii: "A") + 10)
            default: throw fail("bad \\u escape")
            }
            v = v << 4 | d
            i += 1
        }
        return v
    }

    mutating func parseString() throws -> String {
        i += 1
        var out: [UInt8] = []
        while true {
            guard i < b.count else { throw fail("unterminated string") }
            let c = b[i]
            if c == UInt8(ascii: "\"") {
                i += 1
                break
            }
            if c < 0x20 { throw fail("control character in string") }
            if c != UInt8(ascii: "\\") {
                out.append(c)
                i += 1
                continue
            }
            i += 1
            guard i < b.count else { throw fail("unterminated escape") }
            let e = b[i]
            i += 1
            switch e {
            case UInt8(ascii: "\""): out.append(0x22)
            case UInt8(ascii: "\\"): out.append(0x5C)
            case UInt8(ascii: "/"): out.append(0x2F)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = try hex4()
                if (0xD800..<0xDC00).contains(scalar), i + 1 < b.count, b[i] == UInt8(ascii: "\\"),
                    b[i + 1] == UInt8(ascii: "u")
                {
                    let save = i
                    i += 2
                    let low = try hex4()
                    if (0xDC00..<0xE000).contains(low) {
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    } else {
                        i = save
                    }
                }
                let u = Unicode.Scalar(scalar) ?? "\u{FFFD}"
                out.append(contentsOf: Array(String(u).utf8))
            default: throw fail("invalid escape")
            }
        }
        guard let s = String(validating: out, as: UTF8.self) else { throw fail("string is not UTF-8") }
        return s
    }

    mutating func parseNumber() throws -> JSONValue {
        let start = i
        var isFloat = false
        if i < b.count, b[i] == UInt8(ascii: "-") {
            i += 1
            if i < b.count, b[i] == UInt8(ascii: "I") {
                _ = try literal("Infinity", .null)
                return .double(-.infinity)
            }
        }
        let digitsStart = i
        while i < b.count, (0x30...0x39).contains(b[i]) { i += 1 }
        guard i > digitsStart else { throw fail("invalid value") }
        if b[digitsStart] == 0x30, i - digitsStart > 1 { throw fail("leading zero in number") }
        if i < b.count, b[i] == UInt8(ascii: ".") {
            isFloat = true
            i += 1
            let f = i
            while i < b.count, (0x30...0x39).contains(b[i]) { i += 1 }
            guard i > f else { throw fail("invalid fraction") }
        }
        if i < b.count, b[i] == UInt8(ascii: "e") || b[i] == UInt8(ascii: "E") {
            isFloat = true
            i += 1
            if i < b.count, b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-") { i += 1 }
            let e = i
            while i < b.count, (0x30...0x39).contains(b[i]) { i += 1 }
            guard i > e else { throw fail("invalid exponent") }
        }
        let text = String(decoding: b[start..<i], as: UTF8.self)
        if !isFloat, let v = Int(text) { return .int(v) }
        guard let d = Double(text) else { throw fail("invalid number") }
        return .double(d)
    }
}

// MARK: - Serialising

extension JSONValue {
    /// Compact JSON (`{"a":1,"b":[1,2]}`), as Starlette's JSONResponse writes it.
    public func compactBytes() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(256)
        write(into: &out, indent: nil, level: 0, pythonSeparators: false)
        return out
    }

    public func compactString() -> String { String(decoding: compactBytes(), as: UTF8.self) }

    /// Python `json.dumps(v)` default formatting (`{"a": 1, "b": [1, 2]}`), used in MONAI Label's multipart
    /// `params` part.
    public func pythonDumpsBytes() -> [UInt8] {
        var out: [UInt8] = []
        write(into: &out, indent: nil, level: 0, pythonSeparators: true)
        return out
    }

    /// Pretty JSON with `indent` spaces, as pydantic/`json.dump(indent=2)` writes the datastore file.
    public func prettyBytes(indent: Int = 2) -> [UInt8] {
        var out: [UInt8] = []
        write(into: &out, indent: indent, level: 0, pythonSeparators: true)
        return out
    }

    private func write(into out: inout [UInt8], indent: Int?, level: Int, pythonSeparators: Bool) {
        func newline(_ lvl: Int) {
            guard let n = indent else { return }
            out.append(0x0A)
            out.append(contentsOf: repeatElement(0x20, count: n * lvl))
        }
        switch self {
        case .null: out.append(contentsOf: Array("null".utf8))
        case .bool(let v): out.append(contentsOf: Array((v ? "true" : "false").utf8))
        case .int(let v): out.append(contentsOf: Array(String(v).utf8))
        case .double(let v): out.append(contentsOf: Array(JSONValue.formatDouble(v).utf8))
        case .string(let s): JSONText.appendString(s, to: &out)
        case .array(let a):
            out.append(UInt8(ascii: "["))
            if a.isEmpty {
                out.append(UInt8(ascii: "]"))
                return
            }
            for (n, v) in a.enumerated() {
                if n > 0 {
                    out.append(UInt8(ascii: ","))
                    if indent == nil && pythonSeparators { out.append(0x20) }
                }
                newline(level + 1)
                v.write(into: &out, indent: indent, level: level + 1, pythonSeparators: pythonSeparators)
            }
            newline(level)
            out.append(UInt8(ascii: "]"))
        case .object(let o):
            out.append(UInt8(ascii: "{"))
            if o.isEmpty {
                out.append(UInt8(ascii: "}"))
                return
            }
            var first = true
            for (k, v) in o {
                if !first {
                    out.append(UInt8(ascii: ","))
                    if indent == nil && pythonSeparators { out.append(0x20) }
                }
                first = false
                newline(level + 1)
                JSONText.appendString(k, to: &out)
                out.append(UInt8(ascii: ":"))
                if pythonSeparators { out.append(0x20) }
                v.write(into: &out, indent: indent, level: level + 1, pythonSeparators: pythonSeparators)
            }
            newline(level)
            out.append(UInt8(ascii: "}"))
        }
    }

    /// Python's `repr(float)`: shortest round-trip digits, fixed notation for decimal exponents in [-4, 16),
    /// scientific (`1e-05`, `1.5e+16`) outside. Non-finite values, which strict JSON cannot carry, become `null`.
    static func formatDouble(_ v: Double) -> String {
        guard v.isFinite else { return "null" }
        if v == 0 { return v.sign == .minus ? "-0.0" : "0.0" }
        // Swift's description also yields the shortest round-trip digits; only the layout differs from Python.
        var text = abs(v).description
        var exp10 = 0
        if let e = text.firstIndex(where: { $0 == "e" || $0 == "E" }) {
            exp10 = Int(text[text.index(after: e)...]) ?? 0
            text = String(text[..<e])
        }
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        let intPart = String(parts[0])
        let fracPart = parts.count > 1 ? String(parts[1]) : ""
        var digits = intPart + fracPart
        var point = intPart.count + exp10  // position of the decimal point within `digits`
        while digits.count > 1, digits.first == "0" {
            digits.removeFirst()
            point -= 1
        }
        while digits.count > 1, digits.last == "0" { digits.removeLast() }
        let decExp = point - 1
        let sign = v < 0 ? "-" : ""
        if decExp >= -4 && decExp < 16 {
            if point <= 0 {
                return sign + "0." + String(repeating: "0", count: -point) + digits
            } else if point >= digits.count {
                return sign + digits + String(repeating: "0", count: point - digits.count) + ".0"
            } else {
                let idx = digits.index(digits.startIndex, offsetBy: point)
                return sign + digits[..<idx] + "." + digits[idx...]
            }
        }
        let mantissa = digits.count == 1 ? digits : digits.prefix(1) + "." + digits.dropFirst()
        let e = abs(decExp) < 10 ? "0\(abs(decExp))" : "\(abs(decExp))"
        return sign + mantissa + "e" + (decExp < 0 ? "-" : "+") + e
    }
}

extension OrderedMap: ExpressibleByDictionaryLiteral {
    public init(dictionaryLiteral elements: (String, Value)...) { self.init(elements) }
}
