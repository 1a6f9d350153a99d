import Foundation

/// Typed, range-checked reads of request parameters (`/infer` params, train requests, scoring requests).
///
/// A value a client sends decides sizes, counts and loop bounds further down, so every numeric parameter is read
/// through one of these: the wrong type, NaN, infinity or a value outside the range is an `invalidInput` error
/// (422 on the wire) whose message names the parameter, instead of a silent default or a trap later. An absent
/// key or JSON `null` reads as nil, so the caller's default applies.
extension JSONObject {
    /// An integer in `range`. Floats with an integral value (`10.0`) are accepted as JSON does not distinguish
    /// them; `2.5`, `"10"` and `true` are not.
    public func intParam(_ key: String, in range: ClosedRange<Int>) throws -> Int? {
        guard let v = self[key], !v.isNull else { return nil }
        return try Self.int(v, key, range)
    }

    /// A finite number in `range`.
    public func doubleParam(_ key: String, in range: ClosedRange<Double>) throws -> Double? {
        guard let v = self[key], !v.isNull else { return nil }
        return try Self.double(v, key, range)
    }

    /// A finite number at least `lower` and below `upper` (`sw_overlap` in [0, 1)).
    public func doubleParam(_ key: String, in range: Range<Double>) throws -> Double? {
        guard let v = self[key], !v.isNull else { return nil }
        guard let d = v.doubleValue, d.isFinite, range.contains(d) else {
            throw MONAILabelError.invalid(
                "\(key) must be a number >= \(range.lowerBound) and < \(range.upperBound), got \(Self.shown(v))")
        }
        return d
    }

    /// `count` integers in `range`, given as a list or as one integer meaning the same value on every axis.
    public func intListParam(_ key: String, count: Int, in range: ClosedRange<Int>) throws -> [Int]? {
        guard let v = self[key], !v.isNull else { return nil }
        return try Self.intList(v, key, count: count, range)
    }

    /// `count` finite numbers in `range`, given as a list or as one number for every axis.
    public func doubleListParam(_ key: String, count: Int, in range: ClosedRange<Double>) throws -> [Double]? {
        guard let v = self[key], !v.isNull else { return nil }
        if v.arrayValue == nil { return Array(repeating: try Self.double(v, key, range), count: count) }
        guard let a = v.arrayValue, a.count == count else {
            throw MONAILabelError.invalid("\(key) must be a number or a list of \(count) numbers, got \(Self.shown(v))")
        }
        return try a.map { try Self.double($0, key, range) }
    }

    /// A boolean; nil when absent.
    public func boolParam(_ key: String) throws -> Bool? {
        guard let v = self[key], !v.isNull else { return nil }
        guard let b = v.boolValue else { throw MONAILabelError.invalid("\(key) must be true or false, got \(Self.shown(v))") }
        return b
    }

    /// A string; nil when absent.
    public func stringParam(_ key: String) throws -> String? {
        guard let v = self[key], !v.isNull else { return nil }
        guard let s = v.stringValue else { throw MONAILabelError.invalid("\(key) must be a string, got \(Self.shown(v))") }
        return s
    }

    static func int(_ v: JSONValue, _ key: String, _ range: ClosedRange<Int>) throws -> Int {
        guard let i = v.intValue, range.contains(i) else {
            throw MONAILabelError.invalid(
                "\(key) must be an integer from \(range.lowerBound) to \(range.upperBound), got \(shown(v))")
        }
        return i
    }

    static func double(_ v: JSONValue, _ key: String, _ range: ClosedRange<Double>) throws -> Double {
        guard let d = v.doubleValue, d.isFinite, range.contains(d) else {
            throw MONAILabelError.invalid(
                "\(key) must be a number from \(range.lowerBound) to \(range.upperBound), got \(shown(v))")
        }
        return d
    }

    static func intList(_ v: JSONValue, _ key: String, count: Int, _ range: ClosedRange<Int>) throws -> [Int] {
        guard let a = v.arrayValue else { return Array(repeating: try int(v, key, range), count: count) }
        guard a.count == count else {
            throw MONAILabelError.invalid("\(key) must be an integer or a list of \(count) integers, got \(shown(v))")
        }
        return try a.map { try int($0, key, range) }
    }

    /// The offending value as the client wrote it, shortened: it is echoed into an error detail.
    static func shown(_ v: JSONValue) -> String {
        let text = v.compactString()
        return text.count > 60 ? String(text.prefix(57)) + "..." : text
    }
}
