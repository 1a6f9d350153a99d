/// One `name: value` line of a header section (RFC 9110 section 5), as requests, trailers and multipart parts
/// carry them.
package enum HeaderFieldLine {
    /// The name and the value without surrounding whitespace; fails with a reason for obsolete line folding, a
    /// name that is not a token and control bytes in the value.
    package static func parse(_ line: UnsafeRawBufferPointer) -> Result<(String, String), HeaderFieldError> {
        guard let first = line.first else { return .failure(HeaderFieldError(reason: "Empty header line")) }
        if first == 32 || first == 9 { return .failure(HeaderFieldError(reason: "Obsolete line folding is not accepted")) }
        guard let colon = line.firstIndex(of: UInt8(ascii: ":")), colon > 0 else {
            return .failure(HeaderFieldError(reason: "Invalid header line"))
        }
        for k in 0..<colon where !isTokenChar(line[k]) { return .failure(HeaderFieldError(reason: "Invalid header name")) }
        var vs = colon + 1
        var ve = line.count
        while vs < ve, line[vs] == 32 || line[vs] == 9 { vs += 1 }
        while ve > vs, line[ve - 1] == 32 || line[ve - 1] == 9 { ve -= 1 }
        for k in vs..<ve {
            let c = line[k]
            if c < 0x20 && c != 9 || c == 0x7F { return .failure(HeaderFieldError(reason: "Invalid character in header value")) }
        }
        let name = String(decoding: UnsafeRawBufferPointer(rebasing: line[0..<colon]), as: UTF8.self)
        let value = String(decoding: UnsafeRawBufferPointer(rebasing: line[vs..<ve]), as: UTF8.self)
        return .success((name, value))
    }
}

/// Why a header line was refused.
package struct HeaderFieldError: Error, Equatable {
    package let reason: String
}

/// `value; a=b; c="quoted"` parsing for Content-Type and Content-Disposition, of requests and of responses.
public enum HeaderParameters {
    /// The leading value and its parameters in order. Quoted values may hold `;` and are unquoted with only `\"`
    /// and `\\` taken as escapes (python-multipart's rule), so a Windows path such as `C:\dir\f.nii` survives
    /// verbatim.
    public static func parse(_ s: String) -> (value: String, params: [(name: String, value: String)]) {
        let bytes = Array(s.utf8)
        var i = 0
        func skipSpaces() { while i < bytes.count, bytes[i] == 32 || bytes[i] == 9 { i += 1 } }
        var start = i
        while i < bytes.count, bytes[i] != UInt8(ascii: ";") { i += 1 }
        let value = String(decoding: bytes[start..<i], as: UTF8.self).trimmingSpaces()
        var params: [(name: String, value: String)] = []
        while i < bytes.count {
            i += 1  // the ';'
            skipSpaces()
            start = i
            while i < bytes.count, bytes[i] != UInt8(ascii: "="), bytes[i] != UInt8(ascii: ";") { i += 1 }
            let name = String(decoding: bytes[start..<i], as: UTF8.self).trimmingSpaces()
            var v: [UInt8] = []
            if i < bytes.count, bytes[i] == UInt8(ascii: "=") {
                i += 1
                skipSpaces()
                if i < bytes.count, bytes[i] == UInt8(ascii: "\"") {
                    i += 1
                    while i < bytes.count, bytes[i] != UInt8(ascii: "\"") {
                        if bytes[i] == 92, i + 1 < bytes.count, bytes[i + 1] == 34 || bytes[i + 1] == 92 { i += 1 }
                        v.append(bytes[i])
                        i += 1
                    }
                    i += 1
                    while i < bytes.count, bytes[i] != UInt8(ascii: ";") { i += 1 }
                } else {
                    start = i
                    while i < bytes.count, bytes[i] != UInt8(ascii: ";") { i += 1 }
                    v = Array(String(decoding: bytes[start..<i], as: UTF8.self).trimmingSpaces().utf8)
                }
            }
            if !name.isEmpty { params.append((name: String(name), value: String(decoding: v, as: UTF8.self))) }
        }
        return (String(value), params)
    }

    /// The first parameter called `name` (ASCII case-insensitive), unquoted; nil when absent.
    public static func parameter(_ name: String, in headerValue: String) -> String? {
        parse(headerValue).params.first { $0.name.equalsIgnoringASCIICase(name) }?.value
    }

    /// RFC 8187 `charset'lang'pct-encoded`; nil when it does not decode.
    public static func decodeExtended(_ v: String) -> String? {
        let pieces = v.split(separator: "'", maxSplits: 2, omittingEmptySubsequences: false)
        guard pieces.count == 3 else { return nil }
        return PercentEncoding.decode(pieces[2], plusAsSpace: false)
    }
}
