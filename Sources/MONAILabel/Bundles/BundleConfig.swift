import Foundation

/// A MONAI bundle config file (`configs/inference.json`) read the way `monai.bundle.ConfigParser` reads the
/// subset segmentation bundles use: ids are `#`-separated paths (`preprocessing#transforms#2`, the older `::`
/// too), `@id` is the resolved value of another id, `%id` or `%file.json#id` copies another item's raw text,
/// `$` marks a Python expression, of which only literals (`$1e-4`, `$True`, `$[96, 96, 96]`, `$'RAS'`) and a bare
/// `$@id` are understood. Like MONAI's lazy parser, only the ids asked for (and what they refer to) are resolved,
/// so the expressions of items a labeling server never runs (`datalist`, `evaluator`, ...) do no harm. Anything
/// else is an error naming the id where it sits.
public struct BundleConfig: Sendable {
    /// The file's name for messages (`inference.json`).
    public let fileName: String
    public let root: JSONValue
    /// Where `%file.json#id` macros are looked up (the bundle folder, as MONAI runs from it).
    public let bundleRoot: URL

    /// More nesting than any bundle needs: a reference cycle or a hostile file.
    static let maxDepth = 64

    public init(fileName: String, root: JSONValue, bundleRoot: URL) {
        self.fileName = fileName
        self.root = root
        self.bundleRoot = bundleRoot
    }

    /// Reads a JSON config (YAML configs are refused with a message saying so).
    public static func read(_ url: URL, bundleRoot: URL) throws -> BundleConfig {
        let name = url.lastPathComponent
        guard url.pathExtension.lowercased() == "json" else {
            throw MONAILabelError.invalid("\(name): only JSON bundle configs are read (convert YAML to JSON)")
        }
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw MONAILabelError.notFound("bundle config \(name) not found")
        }
        do {
            return BundleConfig(fileName: name, root: try JSONValue.parse(Array(data)), bundleRoot: bundleRoot)
        } catch {
            throw MONAILabelError.invalid("\(name) is not valid JSON: \(error)")
        }
    }

    /// The id's path components (`a#b#0`, or MONAI's older `a::b::0`).
    static func components(_ id: String) -> [String] {
        id.replacingOccurrences(of: "::", with: "#").split(separator: "#", omittingEmptySubsequences: false).map(String.init)
    }

    /// The unresolved item at `id`, nil when there is none.
    public func raw(_ id: String) -> JSONValue? {
        var v = root
        for c in Self.components(id) where !c.isEmpty {
            switch v {
            case .object(let o):
                guard let next = o[c] else { return nil }
                v = next
            case .array(let a):
                guard let i = Int(c), a.indices.contains(i) else { return nil }
                v = a[i]
            default: return nil
            }
        }
        return v
    }

    /// Whether `id` exists.
    public func has(_ id: String) -> Bool { raw(id) != nil }

    /// The item at `id` with its references, macros and literal expressions replaced; an item whose
    /// `_disabled_` is true becomes null. `_target_` entries stay as written.
    public func resolve(_ id: String) throws -> JSONValue {
        try resolve(id, depth: 0)
    }

    private func resolve(_ id: String, depth: Int) throws -> JSONValue {
        guard let v = raw(id) else { throw MONAILabelError.invalid("\(fileName): no item '\(id)'") }
        return try resolveValue(v, at: id, depth: depth)
    }

    private func resolveValue(_ v: JSONValue, at id: String, depth: Int) throws -> JSONValue {
        guard depth < Self.maxDepth else {
            throw MONAILabelError.invalid("\(fileName): \(id): references nest deeper than \(Self.maxDepth) (a cycle?)")
        }
        switch v {
        case .string(let s):
            if s.hasPrefix("@") {
                let target = String(s.dropFirst())
                guard has(target) else {
                    throw MONAILabelError.invalid("\(fileName): \(id): '\(s)' refers to an item that does not exist")
                }
                return try resolve(target, depth: depth + 1)
            }
            if s.hasPrefix("%") { return try resolveValue(macro(String(s.dropFirst()), at: id), at: id, depth: depth + 1) }
            if s.hasPrefix("$") {
                let expression = String(s.dropFirst()).trimmingCharacters(in: .whitespaces)
                if expression.hasPrefix("@"), expression.dropFirst().allSatisfy({ $0.isLetter || $0.isNumber || "_#:".contains($0) }) {
                    return try resolveValue(.string(expression), at: id, depth: depth + 1)
                }
                var parser = PythonLiteral(expression)
                guard let literal = parser.parse() else {
                    throw MONAILabelError.invalid("\(fileName): \(id): the Python expression '\(s)' cannot be evaluated "
                        + "here (only literals and '$@id' are)")
                }
                return literal
            }
            return v
        case .array(let a):
            return .array(try a.enumerated().map { try resolveValue($1, at: "\(id)#\($0)", depth: depth + 1) })
        case .object(let o):
            if o["_disabled_"]?.boolValue == true || o["_disabled_"]?.stringValue?.lowercased() == "true" { return .null }
            if let mode = o["_mode_"]?.stringValue, mode != "default" {
                throw MONAILabelError.invalid("\(fileName): \(id)#_mode_: '\(mode)' is not supported (default only)")
            }
            var out = JSONObject()
            for (k, value) in o {
                switch k {
                case "_target_": out[k] = value
                case "_requires_", "_desc_", "_disabled_", "_mode_": continue
                default: out[k] = try resolveValue(value, at: "\(id)#\(k)", depth: depth + 1)
                }
            }
            return .object(out)
        default:
            return v
        }
    }

    /// `%id` (this file) or `%path.json#id` (relative to the bundle root), unresolved.
    private func macro(_ text: String, at id: String) throws -> JSONValue {
        let parts = text.components(separatedBy: "#")
        if let first = parts.first, first.lowercased().hasSuffix(".json") {
            let other = try BundleConfig.read(bundleRoot.appendingPathComponent(first), bundleRoot: bundleRoot)
            let inner = parts.dropFirst().joined(separator: "#")
            guard let v = other.raw(inner) else {
                throw MONAILabelError.invalid("\(fileName): \(id): macro '%\(text)' names no item of \(first)")
            }
            return v
        }
        guard let v = raw(text) else { throw MONAILabelError.invalid("\(fileName): \(id): macro '%\(text)' names no item") }
        return v
    }
}

/// A Python literal as `ast.literal_eval` reads the simple ones: numbers, `True`/`False`/`None`, quoted strings
/// without escapes, and lists or tuples of those. Anything else (names, calls, operators) is not a literal.
struct PythonLiteral {
    private let chars: [Character]
    private var i = 0

    init(_ text: String) { chars = Array(text) }

    mutating func parse() -> JSONValue? {
        guard let v = value(depth: 0) else { return nil }
        skipSpaces()
        // Not `i == chars.count ? v : nil`: JSONValue takes nil literals, which would make that `.null`.
        guard i == chars.count else { return nil }
        return v
    }

    private mutating func skipSpaces() { while i < chars.count, chars[i].isWhitespace { i += 1 } }

    private mutating func value(depth: Int) -> JSONValue? {
        skipSpaces()
        guard i < chars.count, depth < 16 else { return nil }
        let c = chars[i]
        if c == "[" || c == "(" { return sequence(close: c == "[" ? "]" : ")", depth: depth) }
        if c == "'" || c == "\"" {
            guard let end = chars[(i + 1)...].firstIndex(of: c) else { return nil }
            let s = String(chars[(i + 1)..<end])
            guard !s.contains("\\") else { return nil }
            i = end + 1
            return .string(s)
        }
        var j = i
        while j < chars.count, chars[j].isLetter || chars[j].isNumber || "+-._".contains(chars[j]) { j += 1 }
        let word = String(chars[i..<j])
        guard !word.isEmpty else { return nil }
        i = j
        switch word {
        case "True": return .bool(true)
        case "False": return .bool(false)
        case "None": return .null
        default:
            let plain = word.replacingOccurrences(of: "_", with: "")
            if let n = Int(plain) { return .int(n) }
            if let d = Double(plain), d.isFinite, plain.first.map({ $0.isNumber || "+-.".contains($0) }) == true {
                return .double(d)
            }
            return nil
        }
    }

    private mutating func sequence(close: Character, depth: Int) -> JSONValue? {
        i += 1
        var items: [JSONValue] = []
        while true {
            skipSpaces()
            guard i < chars.count else { return nil }
            if chars[i] == close {
                i += 1
                return .array(items)
            }
            guard let v = value(depth: depth + 1) else { return nil }
            items.append(v)
            skipSpaces()
            guard i < chars.count else { return nil }
            if chars[i] == "," { i += 1 } else if chars[i] != close { return nil }
        }
    }
}
