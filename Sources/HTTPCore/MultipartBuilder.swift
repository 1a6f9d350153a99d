/// One piece of a body made of several pieces (e.g. multipart): bytes in memory or a file on disk.
public enum HTTPBodySegment: Sendable {
    case bytes([UInt8])
    /// A file sent from disk without loading it; with `deleteAfter` unlinked once opened for sending.
    case file(path: String, deleteAfter: Bool)
}

/// Lays out a multipart body (RFC 2046): each part is `--boundary CRLF headers CRLF body CRLF`, and the body
/// ends with `--boundary-- CRLF`. Parts may be files, so large bodies are sent from disk without loading them.
public struct MultipartBuilder: Sendable {
    public let boundary: String
    private var segments: [HTTPBodySegment] = []

    /// With `boundary`, or 32 random lowercase hex characters.
    public init(boundary: String? = nil) {
        if let b = boundary {
            self.boundary = b
        } else {
            let hex = Array("0123456789abcdef")
            self.boundary = String((0..<32).map { _ in hex[Int.random(in: 0..<16)] })
        }
    }

    /// Appends a part with `headers` (in order) and `body`.
    public mutating func addPart(headers: [(name: String, value: String)], body: HTTPBodySegment) {
        var h = "--\(boundary)\r\n"
        for f in headers { h += "\(f.name): \(f.value)\r\n" }
        h += "\r\n"
        switch body {
        case .bytes(let b):
            segments.append(.bytes(Array(h.utf8) + b + [13, 10]))
        case .file:
            segments.append(.bytes(Array(h.utf8)))
            segments.append(body)
            segments.append(.bytes([13, 10]))
        }
    }

    /// The parts and the close delimiter.
    public var bodySegments: [HTTPBodySegment] { segments + [.bytes(Array("--\(boundary)--\r\n".utf8))] }

    /// The whole body in memory; nil when a part is a file.
    public var bodyBytes: [UInt8]? {
        var out: [UInt8] = []
        for s in bodySegments {
            guard case .bytes(let b) = s else { return nil }
            out += b
        }
        return out
    }
}
