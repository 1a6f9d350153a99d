import Foundation
import HTTPServer
import MONAILabel

/// `/scoring/` (spec section 1.8): one scoring job at a time in a child process; the server applies the
/// datastore updates it reports.
enum ScoringRoutes {
    static func register(_ r: inout HTTPRouter, _ ctx: RouteContext) {
        let app = ctx.app
        JobRoutes.register(&r, ctx, .init(
            kind: .scoring, path: "/scoring/", parameter: "method", logName: "Scoring job",
            decode: { req in
                var json: JSONObject = ["method": .string(req.pathParameters["method"] ?? "")]
                json.merge(try req.jsonObjectBody())
                // Upstream queues an unknown method and lets the child fail; a 404 at once is clearer. Upstream
                // never enqueues scoring: a running job means 429.
                return (try app.jobRequest(.scoring, json), false)
            },
            // Hidden upstream: every method, queued, the whole params as each request.
            each: { params in
                app.scoring.methods.map { name, _ in
                    var json: JSONObject = ["method": .string(name)]
                    json.merge(params)
                    return (name: name, json: json)
                }
            }))
    }
}
