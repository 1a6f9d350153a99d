import Foundation
import Synchronization

/// A parsed request as handlers see it.
///
/// ```swift
/// router.put("/datastore/label") { req in
///     guard let image = req.queryValue("image") else { throw HTTPError(.unprocessableEntity, "image is required") }
///     let tag = req.queryValue("tag") ?? "final"
///     let form = try req.form()                         // multipart/form-data or urlencoded, parsed once
///     let params = form.value("params") ?? "{}"         // a text field
///     guard let label = form.file("label") else { throw HTTPError(.unprocessableEntity, "label is required") }
///     // label.filename is the client's name verbatim (maybe a full path); label.path is a temporary file that
///     // is deleted after the response unless moved away (rename(2) it into the datastore).
///     return try .json(object: ["image": image, "label": image, "tag": tag, "params": params])
/// }
/// router.post("/train/{model}") { req in
///     let overrides = try req.jsonObject() as? [String: Any] ?? [:]   // nil for an empty body
///     return try .json(object: ["model": req.pathParameters["model"] ?? "", "n": overrides.count])
/// }
/// router.get("/model/{model}") { req in
///     .file("/models/\(req.pathParameters["model"] ?? "").pt", downloadName: "model.pt")   // streamed from disk
/// }
/// router.post("/infer/{model}") { req in
///     var parts = MultipartResponseBuilder()                          // 32-hex boundary
///     parts.addField(name: "params", value: Array(#"{"label_names": {}}"#.utf8), contentType: "application/json")
///     parts.addFile(name: "image", filename: "tmp1.nii.gz", path: "/tmp/tmp1.nii.gz", deleteAfter: true)
///     return parts.response()
/// }
/// ```
public struct HTTPRequest: Sendable {
    public var method: HTTPMethod
    /// The request target exactly as received (path and query, still percent-encoded).
    public var target: String
    /// The percent-decoded path without the query.
    public var path: String
    /// Query items in order, percent-decoded, `+` as space.
    public var query: [(name: String, value: String)]
    public var version: HTTPVersion
    public var headers: HTTPHeaders
    public var body: HTTPBody
    /// Values captured by `{param}` segments of the matched route, percent-decoded.
    public var pathParameters: [String: String]
    /// The peer address as text, e.g. `127.0.0.1:53122` or `[::1]:53122`.
    public var remoteAddress: String
    /// True when the request arrived over TLS.
    public var isSecure: Bool
    /// Per-request scratch space: temporary files deleted after the response, the parsed form.
    public let context: HTTPRequestContext

    public init(
        method: HTTPMethod, target: String, path: String, query: [(name: String, value: String)] = [],
        version: HTTPVersion = .http1_1, headers: HTTPHeaders = HTTPHeaders(), body: HTTPBody = .empty,
        pathParameters: [String: String] = [:], remoteAddress: String = "", isSecure: Bool = false,
        context: HTTPRequestContext = HTTPRequestContext()
    ) {
        self.method = method
        self.target = target
        self.path = path
        self.query = query
        self.version = version
        self.headers = headers
        self.body = body
        self.pathParameters = pathParameters
        self.remoteAddress = remoteAddress
        self.isSecure = isSecure
        self.context = context
    }

    /// Builds a request from a target such as `/a%20b?x=1`, decoding path and query. Throws 400 on bad escapes.
    public init(
        method: HTTPMethod, target: String, version: HTTPVersion = .http1_1, headers: HTTPHeaders = HTTPHeaders(),
        body: HTTPBody = .empty, remoteAddress: String = "", isSecure: Bool = false,
        context: HTTPRequestContext = HTTPRequestContext()
    ) throws {
        let (rawPath, rawQuery) = HTTPRequest.split(target: target)
        guard let path = PercentEncoding.decode(rawPath, plusAsSpace: false) else {
            throw HTTPError(.badRequest, "Invalid percent-encoding in path")
        }
        guard let query = PercentEncoding.parseQuery(rawQuery ?? "") else {
            throw HTTPError(.badRequest, "Invalid percent-encoding in query")
        }
        self.init(
            method: method, target: target, path: path, query: query, version: version, headers: headers,
            body: body, remoteAddress: remoteAddress, isSecure: isSecure, context: context)
    }

    /// Splits a target into its raw path and raw query (nil when there is no `?`). A fragment is dropped.
    public static func split(target: String) -> (path: Substring, query: Substring?) {
        var t = Substring(target)
        if let hash = t.firstIndex(of: "#") { t = t[..<hash] }
        guard let q = t.firstIndex(of: "?") else { return (t, nil) }
        return (t[..<q], t[t.index(after: q)...])
    }

    /// The first query value called `name`.
    public func queryValue(_ name: String) -> String? { query.first { $0.name == name }?.value }

    /// Every query value called `name`, in order.
    public func queryValues(_ name: String) -> [String] { query.filter { $0.name == name }.map(\.value) }

    /// The media type of the body without parameters, lowercased (`multipart/form-data`), or nil.
    public var mediaType: String? {
        guard let ct = headers["Content-Type"] else { return nil }
        let main = ct.split(separator: ";", maxSplits: 1).first.map { $0.trimmingSpaces() } ?? ""
        return main.isEmpty ? nil : main.lowercased()
    }

    /// The whole body in memory. Throws 413 naming the limit when it is larger than `limit`, by default the
    /// server's `HTTPServerConfiguration.maxInMemoryBodyBytes` (spooled bodies are read from disk).
    public func bodyBytes(limit: Int? = nil) throws -> [UInt8] {
        let limit = limit ?? context.maxInMemoryBodyBytes
        guard body.count <= limit else {
            throw HTTPError(.payloadTooLarge, "Request body too large: the limit is \(limit) bytes")
        }
        switch body {
        case .empty: return []
        case .bytes(let b): return b
        case .file(let path, _):
            guard let data = FileManager.default.contents(atPath: path) else {
                throw HTTPError(.internalServerError, "Spooled request body is missing")
            }
            return Array(data)
        }
    }

    /// Decodes the body as JSON into `T`. Throws 400 with the decoder's reason on invalid JSON.
    public func decodeJSON<T: Decodable>(_ type: T.Type = T.self) throws -> T {
        let bytes = try bodyBytes()
        do {
            return try JSONDecoder().decode(T.self, from: Data(bytes))
        } catch {
            throw HTTPError(.badRequest, "Invalid JSON body: \(error)")
        }
    }

    /// The body parsed with `JSONSerialization` (fragments allowed); nil for an empty body. Throws 400 on bad JSON.
    public func jsonObject() throws -> Any? {
        let bytes = try bodyBytes()
        if bytes.allSatisfy({ $0 == 32 || $0 == 9 || $0 == 10 || $0 == 13 }) { return nil }
        do {
            return try JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed])
        } catch {
            throw HTTPError(.badRequest, "Invalid JSON body")
        }
    }

    /// The form in the body: `multipart/form-data` (parsed as a stream; file parts go to temporary files that
    /// are deleted after the response) or `application/x-www-form-urlencoded`. An empty body or another
    /// media type gives an empty form. Parsed once per request; later calls return the same form. `limits`
    /// default to the server's `HTTPServerConfiguration.formLimits`.
    public func form(limits: HTTPFormLimits? = nil) throws -> HTTPForm {
        let limits = limits ?? context.formLimits
        return try context.form {
            switch mediaType {
            case "multipart/form-data":
                guard let ct = headers["Content-Type"], let boundary = MultipartParser.boundary(fromContentType: ct) else {
                    throw HTTPError(.badRequest, "multipart/form-data without a boundary")
                }
                return try MultipartFormReader(boundary: boundary, limits: limits, context: context).read(body)
            case "application/x-www-form-urlencoded":
                let bytes = try bodyBytes(limit: min(limits.maxFieldBytes, limits.maxTotalFieldBytes))
                guard let fields = PercentEncoding.parseQuery(String(decoding: bytes, as: UTF8.self)) else {
                    throw HTTPError(.badRequest, "Invalid percent-encoding in form")
                }
                return HTTPForm(fields: fields, files: [])
            default:
                return HTTPForm(fields: [], files: [])
            }
        }
    }
}

/// Per-request state shared by the server and the handler: the temporary files to delete once the response
/// has gone out, and the parsed form.
public final class HTTPRequestContext: Sendable {
    private struct State {
        var cleanup: [String] = []
        var form: HTTPForm?
    }
    private let state = Mutex(State())
    /// Where this request's temporary files go.
    public let temporaryDirectory: String
    /// What `HTTPRequest.form()` accepts unless told otherwise.
    public let formLimits: HTTPFormLimits
    /// What `HTTPRequest.bodyBytes()` (and so every JSON body) reads into memory unless told otherwise.
    public let maxInMemoryBodyBytes: Int
    /// The connection's socket while the handler runs (-1 for requests built in code).
    private let peerFD: Int32

    public init(
        temporaryDirectory: String = HTTPRequestContext.defaultTemporaryDirectory,
        formLimits: HTTPFormLimits = HTTPFormLimits(), maxInMemoryBodyBytes: Int = HTTPRequestContext.defaultMaxInMemoryBodyBytes,
        peerFD: Int32 = -1
    ) {
        self.temporaryDirectory = temporaryDirectory
        self.formLimits = formLimits
        self.maxInMemoryBodyBytes = maxInMemoryBodyBytes
        self.peerFD = peerFD
    }

    /// Whether the client has closed or reset the connection: a long handler polls this to stop work nobody
    /// will receive. Safe from any thread (a zero-timeout poll(2) of the socket, which stays open until the
    /// handler has returned); always false for requests built in code.
    public var isPeerGone: Bool {
        guard peerFD >= 0 else { return false }
        // POLLRDHUP (the peer closed its side), which Glibc's module exports only under _GNU_SOURCE.
        let rdhup: Int16 = 0x2000
        var p = pollfd(fd: peerFD, events: rdhup, revents: 0)
        guard poll(&p, 1, 0) > 0 else { return false }
        return p.revents & (rdhup | Int16(POLLHUP) | Int16(POLLERR)) != 0
    }

    /// 8 MiB: far above any JSON a client posts, and a parsed JSON tree costs about 14 times its text.
    public static let defaultMaxInMemoryBodyBytes = 8 << 20

    /// `$TMPDIR` or `/tmp`.
    public static var defaultTemporaryDirectory: String {
        ProcessInfo.processInfo.environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
    }

    /// Deletes `path` after the response has been sent (or when the request is dropped).
    public func deleteAfterResponse(_ path: String) {
        state.withLock { $0.cleanup.append(path) }
    }

    /// Creates an empty temporary file (mode 0600) that is deleted after the response; returns its path and an
    /// open descriptor the caller must close.
    public func makeTemporaryFile(suffix: String = "") throws -> (path: String, fd: Int32) {
        let (path, fd) = try TemporaryFile.create(in: temporaryDirectory, suffix: suffix)
        deleteAfterResponse(path)
        return (path, fd)
    }

    func form(_ parse: () throws -> HTTPForm) throws -> HTTPForm {
        if let f = state.withLock({ $0.form }) { return f }
        let f = try parse()
        state.withLock { $0.form = f }
        return f
    }

    /// Deletes every registered temporary file. Called by the server after the response.
    public func cleanUp() {
        let paths = state.withLock { s -> [String] in
            defer { s.cleanup.removeAll() }
            return s.cleanup
        }
        for p in paths { unlink(p) }
    }
}

/// Creates uniquely named temporary files without Foundation's slower paths.
enum TemporaryFile {
    static func create(in directory: String, suffix: String) throws -> (path: String, fd: Int32) {
        for _ in 0..<16 {
            var name = "http-"
            for _ in 0..<16 { name.append(Character(Unicode.Scalar(UInt8.random(in: 0..<26) + 97))) }
            let path = directory + "/" + name + suffix
            let fd = open(path, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0o600)
            if fd >= 0 { return (path, fd) }
            if errno != EEXIST { break }
        }
        throw HTTPError(.internalServerError, "Cannot create a temporary file in \(directory): \(String(cString: strerror(errno)))")
    }
}
