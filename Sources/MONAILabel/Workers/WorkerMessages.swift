import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// One inference as the server hands it to a model worker: every path is resolved by the server (the worker
/// never looks up ids), params are already merged with the model's config.
public struct WorkerJob: Sendable, Equatable {
    public var model: String
    public var imagePath: String
    public var params: JSONObject
    /// The uploaded label (scribbles); a `.bin` is converted in the worker, which reads the image anyway.
    public var labelPath: String?

    public init(model: String, imagePath: String, params: JSONObject, labelPath: String? = nil) {
        self.model = model
        self.imagePath = imagePath
        self.params = params
        self.labelPath = labelPath
    }

    var json: JSONValue {
        var o: JSONObject = ["model": .string(model), "image": .string(imagePath), "params": .object(params)]
        if let labelPath { o["label"] = .string(labelPath) }
        return .object(o)
    }

    init(json: JSONValue) throws {
        guard let model = json["model"]?.stringValue, let image = json["image"]?.stringValue,
            let params = json["params"]?.objectValue
        else { throw MONAILabelError.io("malformed model worker request") }
        self.init(model: model, imagePath: image, params: params, labelPath: json["label"]?.stringValue)
    }
}

/// The wire format between the server and its model workers: each message is a 4-byte big-endian length and
/// that many bytes of compact JSON. Messages are small (paths and params; volumes travel as files), so a frame
/// over `maxFrame` means a broken peer.
enum WorkerWire {
    static let maxFrame = 16 << 20

    /// A worker's answer to a job: the result file and JSON, or the domain error it raised (same kind and
    /// message, so a 422 raised in the worker stays a 422).
    static func reply(_ result: Result<InferResult, MONAILabelError>) -> JSONValue {
        switch result {
        case .success(let r):
            var o: JSONObject = ["json": .object(r.json)]
            if let f = r.file { o["file"] = .string(f.path) }
            return .object(o)
        case .failure(let e):
            return ["error": ["kind": .string(kindName(e.kind)), "message": .string(e.message)]]
        }
    }

    static func decodeReply(_ v: JSONValue) throws -> Result<InferResult, MONAILabelError> {
        if let e = v["error"] {
            let kind = kind(named: e["kind"]?.stringValue ?? "") ?? .internalError
            return .failure(MONAILabelError(kind, e["message"]?.stringValue ?? "the model worker failed"))
        }
        guard let json = v["json"]?.objectValue else { throw MONAILabelError.io("malformed model worker reply") }
        return .success(InferResult(file: v["file"]?.stringValue.map { URL(fileURLWithPath: $0) }, json: json))
    }

    static func kindName(_ k: MONAILabelError.Kind) -> String {
        switch k {
        case .notFound: return "notFound"
        case .invalidInput: return "invalidInput"
        case .notEnabled: return "notEnabled"
        case .busy: return "busy"
        case .unavailable: return "unavailable"
        case .timedOut: return "timedOut"
        case .internalError: return "internalError"
        case .badUpstream: return "badUpstream"
        case .unusableImage: return "unusableImage"
        }
    }

    static func kind(named name: String) -> MONAILabelError.Kind? {
        let all: [MONAILabelError.Kind] = [.notFound, .invalidInput, .notEnabled, .busy, .unavailable, .timedOut, .internalError, .badUpstream, .unusableImage]
        return all.first { kindName($0) == name }
    }

    static func frame(_ v: JSONValue) -> [UInt8] {
        let body = v.compactBytes()
        let n = UInt32(body.count)
        return [UInt8(n >> 24), UInt8((n >> 16) & 0xff), UInt8((n >> 8) & 0xff), UInt8(n & 0xff)] + body
    }

    /// Writes all of `bytes` (blocking); false when the peer is gone.
    static func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var off = 0
        while off < bytes.count {
            let w = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + off, bytes.count - off, Int32(MSG_NOSIGNAL)) }
            if w < 0 && errno == EINTR { continue }
            if w <= 0 { return false }
            off += w
        }
        return true
    }

    /// Takes one complete frame off the front of `buffer`, if there is one.
    static func takeFrame(_ buffer: inout [UInt8]) throws -> JSONValue? {
        guard buffer.count >= 4 else { return nil }
        let n = Int(buffer[0]) << 24 | Int(buffer[1]) << 16 | Int(buffer[2]) << 8 | Int(buffer[3])
        guard n <= maxFrame else { throw MONAILabelError.io("model worker message too large (\(n) bytes)") }
        guard buffer.count >= 4 + n else { return nil }
        let body = buffer[4..<(4 + n)]
        let v = try JSONValue.parse(body)
        buffer.removeSubrange(0..<(4 + n))
        return v
    }

    /// Reads one frame, blocking; nil at end of stream.
    static func readFrame(_ fd: Int32, _ buffer: inout [UInt8]) throws -> JSONValue? {
        var chunk = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            if let v = try takeFrame(&buffer) { return v }
            let r = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
            if r < 0 && errno == EINTR { continue }
            if r <= 0 { return nil }
            buffer += chunk[0..<r]
        }
    }
}
