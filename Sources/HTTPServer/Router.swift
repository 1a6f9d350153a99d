/// Cross-origin resource sharing, as Starlette's `CORSMiddleware` is configured by MONAI Label: every method
/// and header allowed, credentials allowed, and the request `Origin` echoed back when it is allowed.
public struct CORSPolicy: Sendable {
    /// Allowed origins; `["*"]` allows any.
    public var allowedOrigins: [String]
    public var allowCredentials: Bool
    /// How long a browser may cache a preflight answer.
    public var maxAgeSeconds: Int

    public init(allowedOrigins: [String] = ["*"], allowCredentials: Bool = true, maxAgeSeconds: Int = 600) {
        self.allowedOrigins = allowedOrigins
        self.allowCredentials = allowCredentials
        self.maxAgeSeconds = maxAgeSeconds
    }

    func allows(_ origin: String) -> Bool { allowedOrigins.contains("*") || allowedOrigins.contains(origin) }

    /// The answer to a preflight `OPTIONS` (Starlette's text: 200 `OK`, or 400 `Disallowed CORS origin`).
    func preflight(_ headers: HTTPHeaders) -> HTTPResponse {
        let origin = headers["Origin"] ?? ""
        guard allows(origin) else { return .text("Disallowed CORS origin", status: .badRequest) }
        var r = HTTPResponse.text("OK")
        r.headers.add("Access-Control-Allow-Origin", origin)
        r.headers.add("Access-Control-Allow-Methods", "DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT")
        r.headers.add("Access-Control-Max-Age", String(maxAgeSeconds))
        if let requested = headers["Access-Control-Request-Headers"] {
            r.headers.add("Access-Control-Allow-Headers", requested)
        }
        if allowCredentials { r.headers.add("Access-Control-Allow-Credentials", "true") }
        r.headers.add("Vary", "Origin")
        return r
    }

    /// Adds the simple-response headers.
    func decorate(_ response: inout HTTPResponse, requestHeaders: HTTPHeaders) {
        if let origin = requestHeaders["Origin"], allows(origin) {
            response.headers.add("Access-Control-Allow-Origin", origin)
            if allowCredentials { response.headers.add("Access-Control-Allow-Credentials", "true") }
        }
        response.headers.add("Vary", "Origin")
    }
}

/// A check of a request's head (its headers), run on the event loop when the head has been read and before any
/// of its body is: a response refuses the request at once (the body is never read, and the connection closes
/// after the response when one was declared, so a large upload costs nothing); nil lets the request through to its
/// handler. It must be cheap and never block (no I/O).
public typealias HTTPHeadCheck = @Sendable (_ headers: HTTPHeaders) -> HTTPResponse?

/// An answer the event loop can give by itself when a request's head has been read, without handing the
/// request to a worker: for a response already in memory, such as a cache hit. nil sends the request to the route's
/// handler as usual, and so does an answer whose body is not in memory (a file or a stream), which the loop does not
/// write by itself. It runs on the event loop after the route's head check, so it must be cheap and never block
/// (no I/O but a non-blocking system call). Sparing the hand-over to a worker thread and back is what makes such
/// an answer cost about what the router's own 404 costs.
public typealias HTTPLoopResponder = @Sendable (_ headers: HTTPHeaders) -> HTTPResponse?

/// Maps method + path templates to handlers.
///
/// Templates are literal paths with `{name}` segments (one non-empty segment) and optionally a final
/// `{name:path}` (the rest of the path, slashes included). A trailing slash is significant, as in Starlette:
/// when nothing matches, the other form is tried and, if some route has it, the client gets 307 to it.
/// Literal routes are tried before templated ones; among templates, registration order decides.
///
/// ```swift
/// var router = HTTPRouter()
/// router.get("/info/") { _ in try .json(object: ["name": "app"]) }
/// router.post("/infer/{model}") { req in
///     let model = req.pathParameters["model"] ?? ""       // always present for a matched `{model}`
///     let form = try req.form()                            // multipart or urlencoded
///     let params = form.value("params") ?? "{}"
///     if let upload = form.file("file") { _ = upload.path } // temp file, deleted after the response
///     return .detail("no such model \(model)", status: .notFound)
/// }
/// ```
public struct HTTPRouter: Sendable {
    /// Router behaviour switches.
    public struct Options: Sendable {
        /// Answer HEAD with the GET handler (body dropped). Off by default: FastAPI answers 405.
        public var automaticHead = false
        /// Redirect `/x` <-> `/x/` with 307 when only the other form is registered.
        public var redirectTrailingSlash = true
        /// CORS headers and preflight answers; nil disables CORS handling.
        public var cors: CORSPolicy? = CORSPolicy()
        public init() {}
    }

    private struct Route: Sendable {
        let method: HTTPMethod
        let template: String
        let segments: [Segment]
        var handler: HTTPHandler
        var headCheck: HTTPHeadCheck?
        var loopResponder: HTTPLoopResponder?
    }

    private enum Segment: Sendable, Equatable {
        case literal(String)
        case parameter(String)
        case rest(String)
    }

    /// The outcome of routing a request head.
    public enum Resolution: Sendable {
        /// Run `handler` with these path parameters (it will read the body).
        case handler(HTTPHandler, parameters: [String: String])
        /// Answer with this response without running a handler or reading the body (404, 405, 307, preflight, a
        /// head check's refusal, a loop responder's answer).
        case response(HTTPResponse)
    }

    public var options: Options
    private var routes: [Route] = []
    /// Indices of parameter-free routes by path, for the common case.
    private var literal: [String: [Int]] = [:]
    /// Indices of routes with `{param}` segments, matched one by one.
    private var templated: [Int] = []

    public init(options: Options = Options()) { self.options = options }

    /// Every registered method and template, in registration order (for an API description kept in step).
    public var registeredRoutes: [(method: HTTPMethod, template: String)] { routes.map { ($0.method, $0.template) } }

    /// Registers `handler` for `method` on `template`. Later registrations of the same method and template lose.
    /// A `loopResponder` answers on the event loop when it can (see `HTTPLoopResponder`); `handler` must give the
    /// same answer, since it serves whenever the responder returns nil.
    public mutating func add(
        _ method: HTTPMethod, _ template: String, loopResponder: HTTPLoopResponder? = nil, _ handler: @escaping HTTPHandler
    ) {
        let segments = Self.compile(template)
        routes.append(Route(method: method, template: template, segments: segments, handler: handler, headCheck: nil,
                            loopResponder: loopResponder))
        if segments.allSatisfy({ if case .literal = $0 { return true } else { return false } }) {
            literal[template, default: []].append(routes.count - 1)
        } else {
            templated.append(routes.count - 1)
        }
    }

    /// Replaces each registered handler with `transform(method, template, handler)`: one place to apply a policy
    /// that concerns every route, such as access control. Loop responders are dropped: they would answer without
    /// the policy, which lives in the wrapped handler.
    public mutating func wrapHandlers(_ transform: (HTTPMethod, String, @escaping HTTPHandler) -> HTTPHandler) {
        for i in routes.indices {
            routes[i].handler = transform(routes[i].method, routes[i].template, routes[i].handler)
            routes[i].loopResponder = nil
        }
    }

    /// Gives each registered route the head check `make(method, template)` returns (nil: none), replacing any
    /// earlier one: a policy that can refuse requests before their bodies are read, such as access control.
    public mutating func setHeadChecks(_ make: (HTTPMethod, String) -> HTTPHeadCheck?) {
        for i in routes.indices {
            routes[i].headCheck = make(routes[i].method, routes[i].template)
        }
    }

    public mutating func get(_ t: String, _ h: @escaping HTTPHandler) { add(.get, t, h) }
    public mutating func post(_ t: String, _ h: @escaping HTTPHandler) { add(.post, t, h) }
    public mutating func put(_ t: String, _ h: @escaping HTTPHandler) { add(.put, t, h) }
    public mutating func delete(_ t: String, _ h: @escaping HTTPHandler) { add(.delete, t, h) }
    public mutating func head(_ t: String, _ h: @escaping HTTPHandler) { add(.head, t, h) }
    public mutating func patch(_ t: String, _ h: @escaping HTTPHandler) { add(.patch, t, h) }
    public mutating func options(_ t: String, _ h: @escaping HTTPHandler) { add(.options, t, h) }

    private static func compile(_ template: String) -> [Segment] {
        template.split(separator: "/", omittingEmptySubsequences: false).map { s -> Segment in
            if s.hasPrefix("{"), s.hasSuffix("}") {
                let inner = s.dropFirst().dropLast()
                if inner.hasSuffix(":path") { return .rest(String(inner.dropLast(5))) }
                return .parameter(String(inner))
            }
            return .literal(String(s))
        }
    }

    private static func match(_ segments: [Segment], _ parts: [Substring]) -> [String: String]? {
        var params: [String: String] = [:]
        var i = 0
        for (k, seg) in segments.enumerated() {
            switch seg {
            case .literal(let l):
                guard i < parts.count, parts[i] == l else { return nil }
            case .parameter(let name):
                guard i < parts.count, !parts[i].isEmpty else { return nil }
                params[name] = String(parts[i])
            case .rest(let name):
                guard k == segments.count - 1, i <= parts.count else { return nil }
                params[name] = parts[i...].joined(separator: "/")
                return params
            }
            i += 1
        }
        return i == parts.count ? params : nil
    }

    /// The first route matching `method` and `path`, and, when there is none, the methods registered for routes
    /// matching `path` (when there is one, `allowed` may be incomplete).
    private func lookup(method: HTTPMethod, path: String) -> (route: Route?, params: [String: String], allowed: [HTTPMethod]) {
        var allowed: [HTTPMethod] = []
        var found: (Route, [String: String])?
        func consider(_ r: Route, _ params: [String: String]) {
            if !allowed.contains(r.method) { allowed.append(r.method) }
            if found == nil, r.method == method || (options.automaticHead && method == .head && r.method == .get) {
                found = (r, params)
            }
        }
        if let idx = literal[path] {
            for i in idx { consider(routes[i], [:]) }
        }
        // A literal route wins over every template, and `allowed` only matters when nothing matched: the
        // templates need not be tried (most requests name a literal route, and there can be dozens of templates).
        if let found { return (found.0, found.1, allowed) }
        if !templated.isEmpty {
            let parts = path.split(separator: "/", omittingEmptySubsequences: false)
            for i in templated {
                if let params = Self.match(routes[i].segments, parts) { consider(routes[i], params) }
            }
        }
        if options.automaticHead, allowed.contains(.get), !allowed.contains(.head) { allowed.append(.head) }
        return (found?.0, found?.1 ?? [:], allowed)
    }

    /// Routes a request head. Runs on the event loop: it must stay cheap and never block.
    public func resolve(method: HTTPMethod, path: String, rawQuery: Substring?, headers: HTTPHeaders, isSecure: Bool) -> Resolution {
        if let cors = options.cors, method == .options, headers.contains("Origin"),
            headers.contains("Access-Control-Request-Method")
        {
            return .response(cors.preflight(headers))
        }
        let (route, params, allowed) = lookup(method: method, path: path)
        if let r = route {
            if let refusal = r.headCheck?(headers) { return .response(refusal) }
            if let answer = r.loopResponder?(headers), answer.body.isInMemory { return .response(answer) }
            return .handler(r.handler, parameters: params)
        }
        if !allowed.isEmpty {
            var resp = HTTPResponse.detail("Method Not Allowed", status: .methodNotAllowed)
            resp.headers.add("Allow", allowed.map(\.rawValue).joined(separator: ", "))
            return .response(resp)
        }
        if options.redirectTrailingSlash, path != "/" {
            let other = path.hasSuffix("/") ? String(path.dropLast()) : path + "/"
            if !lookup(method: method, path: other).allowed.isEmpty {
                let scheme = isSecure ? "https" : "http"
                let host = headers["Host"] ?? "localhost"
                var location = "\(scheme)://\(host)\(PercentEncoding.encode(other, keeping: "/!$&'()*+,;=:@"))"
                if let q = rawQuery { location += "?" + q }
                return .response(.redirect(to: location))
            }
        }
        return .response(.detail("Not Found", status: .notFound))
    }

    /// Adds CORS headers to a response about to be sent.
    public func finish(_ response: inout HTTPResponse, requestHeaders: HTTPHeaders) {
        options.cors?.decorate(&response, requestHeaders: requestHeaders)
    }

    /// Runs a request through routing and its handler in-process (no sockets), as the server would.
    /// For router tests; the caller owns `request.context` cleanup.
    public func respond(to request: HTTPRequest) -> HTTPResponse {
        let rawQuery = HTTPRequest.split(target: request.target).query
        var response: HTTPResponse
        switch resolve(method: request.method, path: request.path, rawQuery: rawQuery, headers: request.headers, isSecure: request.isSecure) {
        case .response(let r):
            response = r
        case .handler(let handler, let params):
            var req = request
            req.pathParameters = params
            response = Self.run(handler, req, onError: { _ in })
        }
        finish(&response, requestHeaders: request.headers)
        return response
    }

    /// Runs `handler`, mapping thrown errors to responses (`HTTPResponseError` to `{"detail"}`, anything else to
    /// 500 text/plain, reported to `onError`).
    static func run(_ handler: HTTPHandler, _ request: HTTPRequest, onError: (any Error) -> Void) -> HTTPResponse {
        do {
            return try handler(request)
        } catch let e as any HTTPResponseError {
            return e.response()
        } catch {
            onError(error)
            return .text("Internal Server Error", status: .internalServerError)
        }
    }
}

extension HTTPResponseBody {
    /// Whether the loop can write it from memory at once (bytes or nothing).
    var isInMemory: Bool {
        switch self {
        case .empty, .bytes: return true
        case .file, .segments, .stream: return false
        }
    }
}
