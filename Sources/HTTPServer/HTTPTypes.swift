import Foundation
import JSONEscaping

/// An HTTP request method. Unknown tokens are kept verbatim so the router can answer 405/501.
public struct HTTPMethod: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public var description: String { rawValue }

    public static let get = HTTPMethod(rawValue: "GET")
    public static let head = HTTPMethod(rawValue: "HEAD")
    public static let post = HTTPMethod(rawValue: "POST")
    public static let put = HTTPMethod(rawValue: "PUT")
    public static let delete = HTTPMethod(rawValue: "DELETE")
    public static let options = HTTPMethod(rawValue: "OPTIONS")
    public static let patch = HTTPMethod(rawValue: "PATCH")
}

/// A status code with its reason phrase.
public struct HTTPStatus: Hashable, Sendable {
    public let code: Int
    public let reason: String
    public init(_ code: Int, _ reason: String? = nil) {
        self.code = code
        self.reason = reason ?? HTTPStatus.standardReason(code)
    }

    public static let `continue` = HTTPStatus(100)
    public static let ok = HTTPStatus(200)
    public static let created = HTTPStatus(201)
    public static let noContent = HTTPStatus(204)
    public static let temporaryRedirect = HTTPStatus(307)
    public static let badRequest = HTTPStatus(400)
    public static let unauthorized = HTTPStatus(401)
    public static let forbidden = HTTPStatus(403)
    public static let notFound = HTTPStatus(404)
    public static let methodNotAllowed = HTTPStatus(405)
    public static let notAcceptable = HTTPStatus(406)
    public static let requestTimeout = HTTPStatus(408)
    public static let conflict = HTTPStatus(409)
    public static let lengthRequired = HTTPStatus(411)
    public static let payloadTooLarge = HTTPStatus(413)
    public static let uriTooLong = HTTPStatus(414)
    public static let unsupportedMediaType = HTTPStatus(415)
    public static let expectationFailed = HTTPStatus(417)
    public static let unprocessableEntity = HTTPStatus(422)
    public static let tooManyRequests = HTTPStatus(429)
    public static let requestHeaderFieldsTooLarge = HTTPStatus(431)
    public static let internalServerError = HTTPStatus(500)
    public static let notImplemented = HTTPStatus(501)
    public static let badGateway = HTTPStatus(502)
    public static let serviceUnavailable = HTTPStatus(503)
    public static let gatewayTimeout = HTTPStatus(504)
    public static let httpVersionNotSupported = HTTPStatus(505)

    static func standardReason(_ code: Int) -> String {
        switch code {
        case 100: return "Continue"
        case 200: return "OK"
        case 201: return "Created"
        case 204: return "No Content"
        case 206: return "Partial Content"
        case 301: return "Moved Permanently"
        case 302: return "Found"
        case 304: return "Not Modified"
        case 307: return "Temporary Redirect"
        case 400: return "Bad Request"
        case 401: return "Unauthorized"
        case 403: return "Forbidden"
        case 404: return "Not Found"
        case 405: return "Method Not Allowed"
        case 406: return "Not Acceptable"
        case 408: return "Request Timeout"
        case 409: return "Conflict"
        case 411: return "Length Required"
        case 413: return "Content Too Large"
        case 414: return "URI Too Long"
        case 415: return "Unsupported Media Type"
        case 417: return "Expectation Failed"
        case 422: return "Unprocessable Content"
        case 429: return "Too Many Requests"
        case 431: return "Request Header Fields Too Large"
        case 500: return "Internal Server Error"
        case 501: return "Not Implemented"
        case 502: return "Bad Gateway"
        case 503: return "Service Unavailable"
        case 504: return "Gateway Timeout"
        case 505: return "HTTP Version Not Supported"
        default: return "Status \(code)"
        }
    }
}

/// A request body as the server received it: small ones stay in memory, large ones were spooled to a temporary
/// file while reading (see `HTTPServerConfiguration.spoolThreshold`). The server deletes the file after the
/// response has been sent; a handler that wants to keep it must move it away first.
public enum HTTPBody: Sendable {
    case empty
    case bytes([UInt8])
    case file(path: String, length: Int)

    public var count: Int {
        switch self {
        case .empty: return 0
        case .bytes(let b): return b.count
        case .file(_, let length): return length
        }
    }
}

/// Produces the bytes of a streamed response body, chunk by chunk. The event loop pulls the next chunk whenever
/// the client's socket has room, so no worker waits on a slow client; `next()` must therefore return promptly
/// (hand over bytes already made or read a file piece, never compute for long or wait).
public protocol HTTPBodyStream: Sendable {
    /// Returns the next chunk (may be empty), or nil at the end. Called from one thread at a time.
    func next() throws -> [UInt8]?
}

/// A response body.
public enum HTTPResponseBody: Sendable {
    case empty
    case bytes([UInt8])
    /// A file sent from disk (`sendfile` on plain sockets), never loaded whole. With `deleteAfter` it is unlinked
    /// once opened for sending (the open descriptor still serves the bytes), so it never outlives the response.
    case file(path: String, deleteAfter: Bool)
    /// Bytes and files sent one after another with a `Content-Length` of their sum.
    case segments([HTTPBodySegment])
    /// A body of unknown length, sent with chunked transfer-encoding (or until close to an HTTP/1.0 client).
    case stream(any HTTPBodyStream)
}

/// A response as handlers produce it. The server adds `Date`, `Server`, `Content-Length` (or
/// `Transfer-Encoding: chunked`) and `Connection`; a handler sets `Content-Type` and anything else.
public struct HTTPResponse: Sendable {
    public var status: HTTPStatus
    public var headers: HTTPHeaders
    public var body: HTTPResponseBody

    public init(status: HTTPStatus = .ok, headers: HTTPHeaders = HTTPHeaders(), body: HTTPResponseBody = .empty) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// A response with `Content-Type: contentType` and the given bytes.
    public static func bytes(_ bytes: [UInt8], contentType: String, status: HTTPStatus = .ok) -> HTTPResponse {
        var headers = HTTPHeaders()
        headers.add("Content-Type", contentType)
        return HTTPResponse(status: status, headers: headers, body: .bytes(bytes))
    }

    /// A JSON response from already-serialised bytes.
    public static func json(_ bytes: [UInt8], status: HTTPStatus = .ok) -> HTTPResponse {
        .bytes(bytes, contentType: "application/json", status: status)
    }

    /// A JSON response encoding `value` compactly with `JSONEncoder` (keys unsorted, slashes unescaped).
    public static func json<T: Encodable>(encoding value: T, status: HTTPStatus = .ok) throws -> HTTPResponse {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        return .json(Array(try encoder.encode(value)), status: status)
    }

    /// A JSON response from a `JSONSerialization` object (dictionaries, arrays, strings, numbers, NSNull).
    public static func json(object: Any, status: HTTPStatus = .ok) throws -> HTTPResponse {
        guard JSONSerialization.isValidJSONObject(object) || object is String || object is NSNumber || object is NSNull
        else { throw HTTPError(.internalServerError, "Response is not valid JSON") }
        let data = try JSONSerialization.data(withJSONObject: object, options: [.fragmentsAllowed, .withoutEscapingSlashes])
        return .json(Array(data), status: status)
    }

    /// A `text/plain; charset=utf-8` response.
    public static func text(_ text: String, status: HTTPStatus = .ok) -> HTTPResponse {
        .bytes(Array(text.utf8), contentType: "text/plain; charset=utf-8", status: status)
    }

    /// `{"detail": message}` with the given status, as FastAPI's HTTPException answers.
    public static func detail(_ message: String, status: HTTPStatus) -> HTTPResponse {
        var out: [UInt8] = Array(#"{"detail":"#.utf8)
        JSONText.appendString(message, to: &out)
        out.append(UInt8(ascii: "}"))
        return .json(out, status: status)
    }

    /// A file download streamed from disk, like Starlette's `FileResponse`: `Content-Disposition: attachment`
    /// with `downloadName` when given.
    public static func file(
        _ path: String, contentType: String = "application/octet-stream", downloadName: String? = nil,
        deleteAfter: Bool = false, status: HTTPStatus = .ok
    ) -> HTTPResponse {
        var headers = HTTPHeaders()
        headers.add("Content-Type", contentType)
        if let name = downloadName { headers.add("Content-Disposition", contentDisposition(attachment: name)) }
        return HTTPResponse(status: status, headers: headers, body: .file(path: path, deleteAfter: deleteAfter))
    }

    /// A redirect with an empty body.
    public static func redirect(to location: String, status: HTTPStatus = .temporaryRedirect) -> HTTPResponse {
        var headers = HTTPHeaders()
        headers.add("Location", location)
        return HTTPResponse(status: status, headers: headers, body: .empty)
    }

    /// `attachment; filename="name"`, or `attachment; filename*=utf-8''<pct>` when the name needs quoting
    /// (Starlette's rule: the name changes under URL quoting).
    public static func contentDisposition(attachment name: String) -> String {
        let quoted = PercentEncoding.encode(name, keeping: "/")
        if quoted != name { return "attachment; filename*=utf-8''\(quoted)" }
        return "attachment; filename=\"\(name)\""
    }
}

/// An error that reaches the wire as `{"detail": ...}` with a status.
public protocol HTTPResponseError: Error {
    var status: HTTPStatus { get }
    var detail: String { get }
    /// Extra headers for the error response (e.g. `Allow`, `WWW-Authenticate`). Empty by default.
    var headers: HTTPHeaders { get }
    /// The response sent for this error. By default `{"detail": detail}` with `status` and `headers`; override it
    /// for other shapes (FastAPI's 422 sends `{"detail": [ {...} ]}`).
    func response() -> HTTPResponse
}

extension HTTPResponseError {
    public var headers: HTTPHeaders { HTTPHeaders() }

    public func response() -> HTTPResponse {
        var r = HTTPResponse.detail(detail, status: status)
        for h in headers { r.headers.add(h.name, h.value) }
        return r
    }
}

/// The plain error type for handlers that need nothing richer.
public struct HTTPError: HTTPResponseError, CustomStringConvertible {
    public let status: HTTPStatus
    public let detail: String
    public let headers: HTTPHeaders
    public init(_ status: HTTPStatus, _ detail: String, headers: HTTPHeaders = HTTPHeaders()) {
        self.status = status
        self.detail = detail
        self.headers = headers
    }
    public var description: String { "\(status.code) \(detail)" }
}

/// A synchronous request handler. It runs on a worker thread of the server's bounded pool, never on the
/// accept/read loop, so it may block on file or model work. A thrown `HTTPResponseError` becomes
/// `{"detail": ...}` with its status; any other error becomes 500 `text/plain` `Internal Server Error`
/// (upstream's behaviour for unhandled exceptions) and is reported to the error logger.
public typealias HTTPHandler = @Sendable (HTTPRequest) throws -> HTTPResponse
