import Foundation
import HTTPServer
import MONAILabel

/// What every route group gets: the app, the log and who the caller is.
struct RouteContext: Sendable {
    let app: MONAILabelApp
    let log: Logger
    /// The signed-in user's name; with auth disabled every request runs as upstream's `admin` user, and that
    /// name is what upstream records in image and label info.
    var user: String { CurrentUser.user?.username ?? "admin" }
}

/// Wraps a handler so FastAPI-style validation failures become their 422 body; domain errors pass through
/// to the router, which answers `{"detail": ...}` with their status, their detail first scrubbed of the
/// server's folders (`WirePaths`).
func route(_ body: @escaping @Sendable (HTTPRequest) throws -> HTTPResponse) -> HTTPHandler {
    { request in
        do {
            return try body(request)
        } catch let v as ValidationFailure {
            return v.response
        } catch let e as any HTTPResponseError {
            throw e.scrubbed
        }
    }
}

/// Builds the router for an app: every REST route of MONAI Label 0.8.5 this build implements. With an
/// `authenticator` (`Authenticator.make`), the `/auth` routes are added and every route gets the role check of
/// `RouteRoles`; without, no route asks who the caller is.
public func makeRouter(app: MONAILabelApp, log: Logger, corsOrigins: [String] = [], authenticator: Authenticator? = nil) -> HTTPRouter {
    var options = HTTPRouter.Options()
    options.cors = CORSPolicy(allowedOrigins: corsOrigins.isEmpty ? ["*"] : corsOrigins)
    var router = HTTPRouter(options: options)
    let ctx = RouteContext(app: app, log: log)
    WirePaths.register(app: app)
    InfoRoutes.register(&router, ctx)
    DatastoreRoutes.register(&router, ctx)
    ActiveLearningRoutes.register(&router, ctx)
    InferRoutes.register(&router, ctx)
    SessionRoutes.register(&router, ctx)
    ModelRoutes.register(&router, ctx)
    LogsRoutes.register(&router, ctx)
    TrainRoutes.register(&router, ctx)
    ScoringRoutes.register(&router, ctx)
    BatchInferRoutes.register(&router, ctx)
    OHIFRoutes.register(&router, directory: app.settings.ohifDirectory.path)
    DicomProxyRoutes.register(&router, ctx)
    PreviewRoutes.register(&router, ctx)
    OpenAPI.register(&router, ctx)
    if let authenticator {
        AuthRoutes.register(&router, ctx, authenticator)
        router.wrapHandlers(authenticator.guarded)
        router.setHeadChecks(authenticator.headCheck)
    }
    return router
}

/// `GET /info/`; `GET /` is the dashboard (the Slicer Reviewer probes it for a 200).
enum InfoRoutes {
    static func register(_ r: inout HTTPRouter, _ ctx: RouteContext) {
        // Served from pre-serialised bytes, rebuilt only when something the document shows has changed. While
        // they are current the event loop answers by itself (no worker hand-over); a rebuild runs on a worker.
        let cache = InfoCache(app: ctx.app)
        r.add(.get, "/info/", loopResponder: { _ in cache.cachedBytes().map { .json($0) } },
              route { _ in .json(cache.bytes()) })
        Dashboard.register(&r)
    }
}

/// `POST /activelearning/{strategy}`.
enum ActiveLearningRoutes {
    static func register(_ r: inout HTTPRouter, _ ctx: RouteContext) {
        r.post("/activelearning/{strategy}", route { req in
            let strategy = req.pathParameters["strategy"] ?? ""
            let params = try req.jsonObjectBody()
            return .json(.object(try ctx.app.nextSample(strategy: strategy, request: params, user: ctx.user)))
        })
    }
}
