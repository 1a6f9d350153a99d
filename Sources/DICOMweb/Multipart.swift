import Foundation

/// One body part of a `multipart/related` message.
public struct MultipartPart: Sendable {
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]

    public init(headers: [(name: String, value: String)], body: [UInt8]) {
        self.headers = headers
        self.body = body
    }

    public var contentType: String? { headers.first { $0.name.lowercased() == "content-type" }?.value }
}

/// `multipart/related` as WADO-RS answers and STOW-RS expects (RFC 2046 / 2387).
public enum MultipartRelated {
    /// The parameter `name` of a header value like `multipart/related; type="application/dicom"; boundary=x`.
    public static func parameter(_ name: String, in headerValue: String) -> String? {
        let rest = Substring(headerValue)
        // Split on ';' outside quotes.
        var params: [Substring] = []
        var inQuotes = false
        var cur = rest.startIndex
        var i = rest.startIndex
        while i < rest.endIndex {
            let c = rest[i]
            if c == "\"" { inQuotes.toggle() }
            if c == ";" && !inQuotes {
                params.append(rest[cur..<i])
                cur = rest.index(after: i)
            }
            i = rest.index(after: i)
        }
        params.append(rest[cur...])
        for p in params.dropFirst() {
            guard let eq = p.firstIndex(of: "=") else { continue }
            let key = p[..<eq].trimmingCharacters(in: .whitespaces)
            guard key.lowercased() == name.lowercased() else { continue }
            var v = p[p.index(after: eq)...].trimmingCharacters(in: .whitespaces)
            if v.hasPrefix("\"") && v.hasSuffix("\"") && v.count >= 2 { v = String(v.dropFirst().dropLast()) }
            return v
        }
        return nil
    }

    /// Splits `body` into its parts. Tolerates a preamble, LF-only line ends, transport padding after the
    /// delimiter and a missing close delimiter (a body cut at the end of its last part).
    public static func parse(_ body: [UInt8], boundary: String) throws -> [MultipartPart] {
        guard !boundary.isEmpty else { throw DICOMwebError(.malformedResponse, "multipart response without a boundary") }
        let delimiter = Array(("--" + boundary).utf8)
        var positions: [Int] = []
        body.withUnsafeBufferPointer { buf in
            var from = 0
            while let p = find(delimiter, in: buf, from: from) {
                // A delimiter starts a line: at offset 0 or after LF.
                if p == 0 || buf[p - 1] == 10 { positions.append(p) }
                from = p + delimiter.count
            }
        }
        guard !positions.isEmpty else {
            throw DICOMwebError(.malformedResponse, "multipart body has no boundary '\(boundary)'")
        }
        var parts: [MultipartPart] = []
        for (k, p) in positions.enumerated() {
            var s = p + delimiter.count
            // "--" after the delimiter closes the message.
            if s + 1 < body.count && body[s] == 45 && body[s + 1] == 45 { break }
            while s < body.count && (body[s] == 32 || body[s] == 9) { s += 1 }
            if s < body.count && body[s] == 13 { s += 1 }
            if s < body.count && body[s] == 10 { s += 1 }
            var end = k + 1 < positions.count ? positions[k + 1] : body.count
            if k + 1 < positions.count {
                // Drop the line break that belongs to the next delimiter.
                if end > s && body[end - 1] == 10 { end -= 1 }
                if end > s && body[end - 1] == 13 { end -= 1 }
            }
            guard s <= end else { continue }
            parts.append(try parsePart(body[s..<end]))
        }
        return parts
    }

    private static func parsePart(_ part: ArraySlice<UInt8>) throws -> MultipartPart {
        var headers: [(String, String)] = []
        var i = part.startIndex
        while i < part.endIndex {
            guard let nl = part[i...].firstIndex(of: 10) else {
                throw DICOMwebError(.malformedResponse, "multipart part headers are not terminated")
            }
            var lineEnd = nl
            if lineEnd > i && part[lineEnd - 1] == 13 { lineEnd -= 1 }
            let line = String(decoding: part[i..<lineEnd], as: UTF8.self)
            i = nl + 1
            if line.isEmpty { break }
            if let colon = line.firstIndex(of: ":") {
                headers.append((String(line[..<colon]).trimmingCharacters(in: .whitespaces),
                                String(line[line.index(after: colon)...]).trimmingCharacters(in: .whitespaces)))
            }
        }
        return MultipartPart(headers: headers, body: Array(part[i...]))
    }

    private static func find(_ needle: [UInt8], in hay: UnsafeBufferPointer<UInt8>, from: Int) -> Int? {
        guard let base = hay.baseAddress, needle.count > 0 else { return nil }
        var i = from
        let last = hay.count - needle.count
        let first = needle[0]
        while i <= last {
            guard let hit = memchr(base + i, Int32(first), last - i + 1) else { return nil }
            let p = base.distance(to: hit.assumingMemoryBound(to: UInt8.self))
            if memcmp(base + p, needle, needle.count) == 0 { return p }
            i = p + 1
        }
        return nil
    }

    /// A body of `application/dicom` parts with a fresh boundary; returns the Content-Type header value too.
    public static func build(dicomInstances: [[UInt8]]) -> (contentType: String, body: [UInt8]) {
        let boundary = "monailabel-" + UUID().uuidString.replacingOccurrences(of: "-", with: "")
        var body: [UInt8] = []
        body.reserveCapacity(dicomInstances.reduce(0) { $0 + $1.count + 128 })
        for inst in dicomInstances {
            body += Array("--\(boundary)\r\nContent-Type: application/dicom\r\n\r\n".utf8)
            body += inst
            body += [13, 10]
        }
        body += Array("--\(boundary)--\r\n".utf8)
        return ("multipart/related; type=\"application/dicom\"; boundary=\(boundary)", body)
    }
}
