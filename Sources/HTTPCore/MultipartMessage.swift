#if canImport(Glibc)
import Glibc
#endif

/// One body part of a multipart message held in memory.
public struct MultipartPart: Sendable {
    public var headers: HTTPHeaders
    public var body: [UInt8]

    public init(headers: HTTPHeaders, body: [UInt8]) {
        self.headers = headers
        self.body = body
    }

    public var contentType: String? { headers["Content-Type"] }
}

/// Why a multipart message could not be split.
public struct MultipartError: Error, CustomStringConvertible, Sendable {
    public let description: String
}

/// Whole multipart messages in memory, as a client receives them (WADO-RS `multipart/related`). Unlike the
/// incremental `MultipartParser` (strict, for request bodies of any size), this tolerates what servers in the
/// field send: a preamble, LF-only line ends, transport padding after the delimiter and a missing close delimiter
/// (a body cut at the end of its last part).
public enum MultipartMessage {
    /// Splits `body` into its parts.
    public static func parse(_ body: [UInt8], boundary: String) throws(MultipartError) -> [MultipartPart] {
        guard !boundary.isEmpty else { throw MultipartError(description: "multipart response without a boundary") }
        let delimiter = Array(("--" + boundary).utf8)
        var positions: [Int] = []
        body.withUnsafeBytes { buf in
            var from = 0
            while let p = firstIndex(of: delimiter, in: buf, from: from) {
                // A delimiter starts a line: at offset 0 or after LF.
                if p == 0 || buf[p - 1] == 10 { positions.append(p) }
                from = p + delimiter.count
            }
        }
        guard !positions.isEmpty else {
            throw MultipartError(description: "multipart body has no boundary '\(boundary)'")
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

    private static func parsePart(_ part: ArraySlice<UInt8>) throws(MultipartError) -> MultipartPart {
        var headers = HTTPHeaders()
        var i = part.startIndex
        while i < part.endIndex {
            guard let nl = part[i...].firstIndex(of: 10) else {
                throw MultipartError(description: "multipart part headers are not terminated")
            }
            var lineEnd = nl
            if lineEnd > i && part[lineEnd - 1] == 13 { lineEnd -= 1 }
            let line = String(decoding: part[i..<lineEnd], as: UTF8.self)
            i = nl + 1
            if line.isEmpty { break }
            if let colon = line.firstIndex(of: ":") {
                headers.add(String(line[..<colon].trimmingSpaces()), String(line[line.index(after: colon)...].trimmingSpaces()))
            }
        }
        return MultipartPart(headers: headers, body: Array(part[i...]))
    }
}
