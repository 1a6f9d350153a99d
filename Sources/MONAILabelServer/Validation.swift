import Foundation
import HTTPServer
import MONAILabel

/// Domain errors reach the wire as `{"detail": ...}`. Where upstream answers a bare 500 (unknown model, image,
/// strategy; malformed params) we answer the 4xx that says what is wrong.
extension MONAILabelError: HTTPResponseError {
    public var status: HTTPStatus {
        switch kind {
        case .notFound: return .notFound
        case .invalidInput: return .unprocessableEntity
        case .notEnabled: return .notAcceptable
        case .busy: return .tooManyRequests
        case .unavailable: return .serviceUnavailable
        case .timedOut: return .gatewayTimeout
        case .internalError: return .internalServerError
        case .badUpstream: return .badGateway
        case .unusableImage: return .unprocessableEntity
        }
    }
    public var detail: String { message }
}

/// A FastAPI-style request validation failure: 422 with `{"detail": [{"type", "loc", "msg", "input"}]}`, the
/// body upstream's clients have always seen for a missing or malformed parameter.
struct ValidationFailure: Error {
    var type: String
    var loc: [JSONValue]
    var msg: String
    var input: JSONValue
    var ctx: JSONObject?

    var response: HTTPResponse {
        var item: JSONObject = ["type": .string(type), "loc": .array(loc), "msg": .string(msg), "input": input]
        if let c = ctx { item["ctx"] = .object(c) }
        return .json(JSONValue.object(["detail": .array([.object(item)])]).compactBytes(), status: .unprocessableEntity)
    }

    static func missing(_ where_: String, _ name: String) -> ValidationFailure {
        ValidationFailure(type: "missing", loc: [.string(where_), .string(name)], msg: "Field required", input: .null)
    }
}

/// Typed access to query parameters with FastAPI's parsing rules.
extension HTTPRequest {
    func requiredQuery(_ name: String) throws -> String {
        guard let v = queryValue(name) else { throw ValidationFailure.missing("query", name) }
        return v
    }

    /// FastAPI's bool: true/false, 1/0, yes/no, on/off (case-insensitive).
    func boolQuery(_ name: String, default d: Bool) throws -> Bool {
        guard let v = queryValue(name) else { return d }
        switch v.lowercased() {
        case "true", "1", "yes", "on", "t", "y": return true
        case "false", "0", "no", "off", "f", "n": return false
        default:
            throw ValidationFailure(
                type: "bool_parsing", loc: ["query", .string(name)],
                msg: "Input should be a valid boolean, unable to interpret input", input: .string(v))
        }
    }

    func intQuery(_ name: String) throws -> Int? {
        guard let v = queryValue(name) else { return nil }
        guard let i = Int(v) else {
            throw ValidationFailure(
                type: "int_parsing", loc: ["query", .string(name)],
                msg: "Input should be a valid integer, unable to parse string as an integer", input: .string(v))
        }
        return i
    }

    func enumQuery(_ name: String, _ allowed: [String]) throws -> String? {
        guard let v = queryValue(name) else { return nil }
        guard allowed.contains(v) else {
            let expected = allowed.dropLast().map { "'\($0)'" }.joined(separator: ", ")
                + (allowed.count > 1 ? " or " : "") + "'\(allowed.last ?? "")'"
            throw ValidationFailure(
                type: "enum", loc: ["query", .string(name)], msg: "Input should be \(expected)", input: .string(v),
                ctx: ["expected": .string(expected)])
        }
        return v
    }

    /// A JSON object body (`params: dict = {}` in upstream's signatures); no body means `{}`.
    func jsonObjectBody() throws -> JSONObject {
        let bytes = try bodyBytes()
        if bytes.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }) { return JSONObject() }
        let value: JSONValue
        do {
            value = try JSONValue.parse(bytes)
        } catch {
            throw ValidationFailure(
                type: "json_invalid", loc: ["body", .int((error as? JSONParseError)?.offset ?? 0)],
                msg: "JSON decode error", input: .object(JSONObject()), ctx: ["error": .string("\(error)")])
        }
        guard case .object(let o) = value else {
            throw ValidationFailure(
                type: "dict_type", loc: ["body"], msg: "Input should be a valid dictionary", input: value)
        }
        return o
    }
}

/// Parses a form field that carries a JSON object (`params`, `info`), `{}` when absent. Upstream answers 500
/// for malformed JSON here; we answer 422 saying which field is wrong.
func jsonObjectField(_ form: HTTPForm, _ name: String) throws -> JSONObject {
    guard let text = form.value(name), !text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
        return JSONObject()
    }
    let value: JSONValue
    do {
        value = try JSONValue.parse(text)
    } catch {
        throw MONAILabelError.invalid("form field '\(name)' is not valid JSON: \(error)")
    }
    guard case .object(let o) = value else {
        throw MONAILabelError.invalid("form field '\(name)' must be a JSON object")
    }
    return o
}

extension HTTPResponse {
    /// Compact JSON, as Starlette's JSONResponse writes it.
    static func json(_ value: JSONValue, status: HTTPStatus = .ok) -> HTTPResponse {
        .json(value.compactBytes(), status: status)
    }

    /// A download like Starlette's FileResponse, with Python `mimetypes`' type for the name.
    static func download(_ path: String, name: String, deleteAfter: Bool = false) -> HTTPResponse {
        .file(path, contentType: MimeTypes.guess(name), downloadName: name, deleteAfter: deleteAfter)
    }
}

/// Python's `mimetypes.guess_type(strict=False)` for the names this server sends; a compressed name
/// (`.nii.gz`) has no type, so it is `application/octet-stream` like upstream's.
enum MimeTypes {
    static func guess(_ name: String) -> String {
        let lower = name.lowercased()
        if lower.hasSuffix(".gz") || lower.hasSuffix(".bz2") || lower.hasSuffix(".xz") { return "application/octet-stream" }
        let ext = lower.split(separator: ".").last.map(String.init) ?? ""
        switch ext {
        case "json": return "application/json"
        case "png": return "image/png"
        case "jpg", "jpeg": return "image/jpeg"
        case "tif", "tiff": return "image/tiff"
        case "dcm": return "application/dicom"
        case "xml": return "text/xml"
        case "txt", "log": return "text/plain"
        case "html": return "text/html"
        case "zip": return "application/zip"
        default: return "application/octet-stream"
        }
    }
}
