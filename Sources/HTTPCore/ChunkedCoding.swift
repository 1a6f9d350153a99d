/// `Transfer-Encoding: chunked` (RFC 9112 section 7.1): the chunk-size line both parsers read (requests on the
/// server, responses in the client) and the framing the server writes. Data, CRLF and trailer steps stay in
/// each parser's state machine; the size line is where the grammar and its limits live.
public enum ChunkedCoding {
    /// The outcome of reading a chunk-size line at the start of a buffer.
    public enum SizeLine: Equatable, Sendable {
        /// No complete line yet.
        case needMore
        /// The chunk's size and the line's length including its CRLF; a size of 0 is the last chunk.
        case size(Int, lineLength: Int)
        /// The line breaks the grammar or a limit; the reason is for the peer or the log.
        case invalid(String)
    }

    /// Reads `hex-size [ws] [; extensions] CRLF` at the start of `buf`. Extensions are ignored but must not
    /// smuggle control bytes; a size of more than 15 hex digits or a line longer than `maxLineLength` is invalid.
    public static func parseSizeLine(_ buf: UnsafeRawBufferPointer, maxLineLength: Int) -> SizeLine {
        guard let lf = buf.firstIndex(of: 10) else {
            return buf.count > maxLineLength ? .invalid("Chunk size line too long") : .needMore
        }
        if lf > maxLineLength { return .invalid("Chunk size line too long") }
        guard lf > 0, buf[lf - 1] == 13 else { return .invalid("Bare LF in chunk size line") }
        var size = 0
        var k = 0
        while k < lf - 1, let d = hexValue(buf[k]) {
            if k >= 15 { return .invalid("Chunk size too large") }
            size = size << 4 | Int(d)
            k += 1
        }
        if k == 0 { return .invalid("Invalid chunk size") }
        while k < lf - 1, buf[k] == 32 || buf[k] == 9 { k += 1 }
        if k < lf - 1 {
            guard buf[k] == UInt8(ascii: ";") else { return .invalid("Invalid chunk size") }
            for j in k..<(lf - 1) where buf[j] < 0x20 && buf[j] != 9 || buf[j] == 0x7F {
                return .invalid("Invalid chunk extension")
            }
        }
        return .size(size, lineLength: lf + 1)
    }

    /// `data` framed as one chunk: its size line, the bytes and CRLF. Empty data would end the body, so it
    /// yields nothing.
    public static func chunk(_ data: [UInt8]) -> [UInt8] {
        guard !data.isEmpty else { return [] }
        return Array((String(data.count, radix: 16) + "\r\n").utf8) + data + [13, 10]
    }

    /// The last chunk with an empty trailer section.
    public static let lastChunk: [UInt8] = Array("0\r\n\r\n".utf8)
}
