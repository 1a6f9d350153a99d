import Foundation
import HTTPServer
import MONAILabel

/// `/train/` (spec section 1.6): jobs run in child processes (`BackgroundJobs`), one at a time; `?enqueue=true`
/// queues behind a running one.
enum TrainRoutes {
    static func register(_ r: inout HTTPRouter, _ ctx: RouteContext) {
        let app = ctx.app
        JobRoutes.register(&r, ctx, .init(
            kind: .train, path: "/train/", parameter: "model", logName: "Train job",
            decode: { req in
                let enqueue = try req.boolQuery("enqueue", default: false)
                var json: JSONObject = ["model": .string(req.pathParameters["model"] ?? "")]
                json.merge(try req.jsonObjectBody())
                // Upstream answers 200 and lets the job fail; a clear 4xx before anything is queued is kinder.
                return (try app.jobRequest(.train, json), enqueue)
            },
            // Deprecated and hidden upstream: one queued job per trainer, the whole params merged on top.
            each: { params in
                app.trainDefinitions.map { model, _ in
                    var json: JSONObject = ["model": .string(model)]
                    if let own = params[model]?.objectValue { json.merge(own) }
                    json.merge(params)
                    return (name: model, json: json)
                }
            }))
    }
}
