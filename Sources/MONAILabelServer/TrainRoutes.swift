import Foundation
import HTTPServer
import MONAILabel

/// `/train/` (spec section 1.6): jobs run in child processes (`BackgroundJobs`), one at a time.
enum TrainRoutes {
    static func register(_ r: inout HTTPRouter, _ ctx: RouteContext) {
        let app = ctx.app
        let jobs = app.training.jobs

        r.get("/train/", route { req in
            if try req.boolQuery("check_if_running", default: false) {
                guard let j = jobs.running else {
                    throw MONAILabelError.notFound("No Train Tasks are currently Running")
                }
                return .json(j.json)
            }
            if try req.boolQuery("all", default: false) {
                let all = jobs.all
                guard !all.isEmpty else { throw MONAILabelError.notFound("No Train Tasks Found") }
                return .json(.array(all.map(\.json)))
            }
            guard let j = jobs.latest else { throw MONAILabelError.notFound("No Train Tasks Found") }
            return .json(j.json)
        })

        r.post("/train/{model}", route { req in
            let model = req.pathParameters["model"] ?? ""
            let runSync = try req.boolQuery("run_sync", default: false)
            let enqueue = try req.boolQuery("enqueue", default: false)
            var request: JSONObject = ["model": .string(model)]
            request.merge(try req.jsonObjectBody())
            // Upstream answers 200 and lets the job fail; a clear 4xx before anything is queued is kinder.
            try app.validateTrainRequest(model: request["model"]?.stringValue ?? model, request: request)
            let job = try jobs.submit(request, enqueue: enqueue)
            ctx.log.info("Train job \(job.id) submitted for \(model)")
            guard runSync else { return .json(job.json) }
            let (done, result) = jobs.wait(job.id)
            guard let done, done.status == .done, let result else {
                let last = done?.details.last ?? "no output"
                throw MONAILabelError.io("Train Task \(done?.status.rawValue ?? "lost"): \(last)")
            }
            return .json(result)
        })

        // Deprecated and hidden upstream: one queued job per trainer, the whole params merged on top.
        r.post("/train/", route { req in
            let params = try req.jsonObjectBody()
            var out = JSONObject()
            for (model, _) in app.trainDefinitions {
                var request: JSONObject = ["model": .string(model)]
                if let own = params[model]?.objectValue { request.merge(own) }
                request.merge(params)
                do {
                    try app.validateTrainRequest(model: request["model"]?.stringValue ?? model, request: request)
                    let job = try jobs.submit(request, enqueue: true)
                    out[model] = ["result": job.json, "detail": nil]
                } catch let e as MONAILabelError {
                    out[model] = ["result": nil, "detail": .string(e.message)]
                }
            }
            return .json(.object(out))
        })

        r.delete("/train/", route { _ in
            guard let j = jobs.stop() else { return .json(.null) }
            ctx.log.info("Train job \(j.id) stopped")
            return .json(j.json)
        })
    }
}
