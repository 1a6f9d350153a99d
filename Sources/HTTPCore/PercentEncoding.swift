/// Percent-encoding helpers shared by request-target parsing and form bodies.
public enum PercentEncoding {
    /// Decodes `%XX` escapes (and `+` as space when `plusAsSpace`). Returns nil for a malformed escape or
    /// bytes that are not UTF-8.
    public static func decode<S: StringProtocol>(_ s: S, plusAsSpace: Bool) -> String? {
        var out: [UInt8] = []
        out.reserveCapacity(s.utf8.count)
        var it = s.utf8.makeIterator()
        while let c = it.next() {
            switch c {
            case UInt8(ascii: "%"):
                guard let h = it.next(), let l = it.next(), let hv = hexValue(h), let lv = hexValue(l) else {
                    return nil
                }
                out.append(hv << 4 | lv)
            case UInt8(ascii: "+") where plusAsSpace:
                out.append(UInt8(ascii: " "))
            default:
                out.append(c)
            }
        }
        return String(validating: out, as: UTF8.self)
    }

    /// Parses `a=1&b=two+words&c` into ordered, decoded pairs (`+` as space). Items that fail to decode are
    /// returned as nil so the caller can answer 400.
    public static func parseQuery<S: StringProtocol>(_ s: S) -> [(name: String, value: String)]? {
        var items: [(name: String, value: String)] = []
        for part in s.split(separator: "&", omittingEmptySubsequences: true) {
            let pieces = part.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let name = decode(pieces[0], plusAsSpace: true) else { return nil }
            let rawValue = pieces.count > 1 ? pieces[1] : ""
            guard let value = decode(rawValue, plusAsSpace: true) else { return nil }
            items.append((name: name, value: value))
        }
        return items
    }

    /// Encodes every byte outside RFC 3986's unreserved set and `keeping`.
    public static func encode(_ s: String, keeping: String = "") -> String {
        var out = ""
        let keep = Set(keeping.utf8)
        for b in s.utf8 {
            switch b {
            case _ where keep.contains(b):
                out.unicodeScalars.append(Unicode.Scalar(b))
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."),
                UInt8(ascii: "_"), UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(b))
            default:
                let hex = Array("0123456789ABCDEF".utf8)
                out += "%" + String(decoding: [hex[Int(b >> 4)], hex[Int(b & 15)]], as: UTF8.self)
            }
        }
        return out
    }
}
