#if canImport(Glibc)
import Glibc
#endif

// Byte-level helpers of the HTTP grammar (RFC 9110), shared by the parsers of this package without Foundation.

@inline(__always) package func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }

@inline(__always) package func hexValue(_ c: UInt8) -> UInt8? {
    switch c {
    case 0x30...0x39: return c - 0x30
    case 0x41...0x46: return c - 0x41 + 10
    case 0x61...0x66: return c - 0x61 + 10
    default: return nil
    }
}

/// RFC 9110 `tchar`.
@inline(__always) package func isTokenChar(_ c: UInt8) -> Bool {
    switch c {
    case 0x30...0x39, 0x41...0x5A, 0x61...0x7A: return true
    case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"),
        UInt8(ascii: "'"), UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."),
        UInt8(ascii: "^"), UInt8(ascii: "_"), UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"):
        return true
    default: return false
    }
}

extension StringProtocol {
    /// Drops leading and trailing spaces and tabs.
    package func trimmingSpaces() -> Substring {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" { s.removeLast() }
        return s
    }

    /// ASCII case-insensitive equality, without Foundation.
    package func equalsIgnoringASCIICase<T: StringProtocol>(_ other: T) -> Bool {
        let a = utf8, b = other.utf8
        guard a.count == b.count else { return false }
        return zip(a, b).allSatisfy { x, y in x == y || (x | 0x20 == y | 0x20 && (x | 0x20) >= 0x61 && (x | 0x20) <= 0x7A) }
    }
}

/// The first index of `pattern` in `buf` (memchr for its first byte, then memcmp), or nil.
package func firstIndex(of pattern: [UInt8], in buf: UnsafeRawBufferPointer, from start: Int = 0) -> Int? {
    guard !pattern.isEmpty, start >= 0, pattern.count <= buf.count - start, let base = buf.baseAddress else { return nil }
    let first = Int32(pattern[0])
    var i = start
    let last = buf.count - pattern.count
    while i <= last {
        guard let hit = memchr(base + i, first, last - i + 1) else { return nil }
        let j = base.distance(to: UnsafeRawPointer(hit))
        if pattern.withUnsafeBytes({ memcmp(base + j, $0.baseAddress!, pattern.count) }) == 0 { return j }
        i = j + 1
    }
    return nil
}
