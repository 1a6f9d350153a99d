import Foundation

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

    public static let ok = HTTPStatus(200)
    public static let noContent = HTTPStatus(204)
    public static let temporaryRedirect = HTTPStatus(307)
    public static let badRequest = HTTPStatus(400)
    public static let unauthorized = HTTPStatus(401)
    public static let forbidden = HTTPStatus(403)
    public static let notFound = HTTPStatus(404)
    public static let methodNotAllowed = HTTPStatus(405)
    public static let notAcceptable = HTTPStatus(406)
    public static let requestTimeout = HTTPStatus(408)
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
    public static let serviceUnavailable = HTTPStatus(503)
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
        case 503: return "Service Unavailable"
        case 505: return "HTTP Version Not Supported"
        default: return "Status \(code)"
        }
    }
}

/// Header fields in arrival order with case-insensitive lookup.
public struct HTTPHeaders: Sendable, Sequence {
    public private(set) var fields: [(name: String, value: String)] = []

    public init() {}
    public init(_ fields: [(String, String)]) {
        self.fields = fields.map { (name: $0.0, value: $0.1) }
    }

    /// The first value of `name`, compared case-insensitively.
    public subscript(_ name: String) -> String? {
        fields.first { $0.name.caseInsensitiveCompare(name) == .orderedSame }?.value
    }

    /// Every value of `name`, in order.
    public func values(_ name: String) -> [String] {
        fields.filter { $0.name.caseInsensitiveCompare(name) == .orderedSame }.map(\.value)
    }

    public func contains(_ name: String) -> Bool { self[name] != nil }

    public mutating func add(_ name: String, _ value: String) { fields.append((name: name, value: value)) }

    /// Removes every field called `name` and appends one with `value`.
    public mutating func replace(_ name: String, _ value: String) {
        remove(name)
        add(name, value)
    }

    public mutating func remove(_ name: String) {
        fields.removeAll { $0.name.caseInsensitiveCompare(name) == .orderedSame }
    }

    public func makeIterator() -> IndexingIterator<[(name: String, value: String)]> { fields.makeIterator() }
}

/// A request body: small ones stay in memory, large ones are spooled to a temporary file owned by the request.
public enum HTTPBody: Sendable {
    case empty
    case bytes([UInt8])
    /// A spooled body; the server deletes the file after the response has been sent.
    case file(path: String, length: Int)

    public var count: Int {
        switch self {
        case .empty: return 0
        case .bytes(let b): return b.count
        case .file(_, let length): return length
        }
    }
}

/// A parsed request as handlers see it.
public struct HTTPRequest: Sendable {
    public var method: HTTPMethod
    /// The request target exactly as received (path and query, still percent-encoded).
    public var target: String
    /// The percent-decoded path without the query.
    public var path: String
    /// Query items in order, percent-decoded, `+` as space.
    public var query: [(name: String, value: String)]
    public var headers: HTTPHeaders
    public var body: HTTPBody
    /// Values captured by `{param}` segments of the matched route.
    public var pathParameters: [String: String]
    /// The peer address as text, e.g. `127.0.0.1:53122` or `[::1]:53122`.
    public var remoteAddress: String

    public init(
        method: HTTPMethod, target: String, path: String, query: [(name: String, value: String)] = [],
        headers: HTTPHeaders = HTTPHeaders(), body: HTTPBody = .empty,
        pathParameters: [String: String] = [:], remoteAddress: String = ""
    ) {
        self.method = method
        self.target = target
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.pathParameters = pathParameters
        self.remoteAddress = remoteAddress
    }

    /// The first query value called `name`.
    public func queryValue(_ name: String) -> String? { query.first { $0.name == name }?.value }
}

/// Something that produces the bytes of a streamed response body, chunk by chunk.
public protocol HTTPBodyStream: Sendable {
    /// Returns the next chunk, or nil at the end. Called from one thread at a time.
    func next() throws -> [UInt8]?
}

/// A response body.
public enum HTTPResponseBody: Sendable {
    case empty
    case bytes([UInt8])
    /// A file sent from disk in chunks, never loaded whole; deleted afterwards when `deleteAfter`.
    case file(path: String, deleteAfter: Bool)
    /// A body of unknown length sent with chunked transfer-encoding.
    case stream(any HTTPBodyStream)
}

/// A response as handlers produce it. The server adds Date, Content-Length or Transfer-Encoding and Connection.
public struct HTTPResponse: Sendable {
    public var status: HTTPStatus
    public var headers: HTTPHeaders
    public var body: HTTPResponseBody

    public init(status: HTTPStatus = .ok, headers: HTTPHeaders = HTTPHeaders(), body: HTTPResponseBody = .empty) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// A JSON response from already-serialised bytes.
    public static func json(_ bytes: [UInt8], status: HTTPStatus = .ok) -> HTTPResponse {
        var headers = HTTPHeaders()
        headers.add("Content-Type", "application/json")
        return HTTPResponse(status: status, headers: headers, body: .bytes(bytes))
    }

    /// `{"detail": message}` with the given status, as FastAPI's HTTPException answers.
    public static func detail(_ message: String, status: HTTPStatus) -> HTTPResponse {
        let data = (try? JSONSerialization.data(withJSONObject: ["detail": message])) ?? Data("{}".utf8)
        return .json(Array(data), status: status)
    }
}

/// An error that reaches the wire as `{"detail": ...}` with a status.
public protocol HTTPResponseError: Error {
    var status: HTTPStatus { get }
    var detail: String { get }
}

/// The plain error type for handlers that need nothing richer.
public struct HTTPError: HTTPResponseError, CustomStringConvertible {
    public let status: HTTPStatus
    public let detail: String
    public init(_ status: HTTPStatus, _ detail: String) {
        self.status = status
        self.detail = detail
    }
    public var description: String { "\(status.code) \(detail)" }
}

/// A synchronous request handler. It runs on a worker thread of the server's bounded pool, never on the
/// accept/read loop, so it may block on file or model work.
public typealias HTTPHandler = @Sendable (HTTPRequest) throws -> HTTPResponse
