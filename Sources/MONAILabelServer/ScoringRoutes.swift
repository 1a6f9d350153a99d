import Foundation
import HTTPServer
import MONAILabel

/// `/scoring/` (spec section 1.8): one scoring job at a time in a child process; the server applies the
/// datastore updates it reports.
enum ScoringRoutes {
    static func register(_ r: inout HTTPRouter, _ ctx: RouteContext) {
        let scoring = ctx.app.scoring
        let jobs = scoring.jobs

        r.get("/scoring/", route { req in
            if try req.boolQuery("check_if_running", default: false) {
                guard let j = jobs.running else {
                    throw MONAILabelError.notFound("No Scoring Tasks are currently Running")
                }
                return .json(j.json)
            }
            if try req.boolQuery("all", default: false) {
                let all = jobs.all
                guard !all.isEmpty else { throw MONAILabelError.notFound("No Scoring Tasks Found") }
                return .json(.array(all.map(\.json)))
            }
            guard let j = jobs.latest else { throw MONAILabelError.notFound("No Scoring Tasks Found") }
            return .json(j.json)
        })

        r.post("/scoring/{method}", route { req in
            let method = req.pathParameters["method"] ?? ""
            let runSync = try req.boolQuery("run_sync", default: false)
            var request: JSONObject = ["method": .string(method)]
            request.merge(try req.jsonObjectBody())
            // Upstream queues an unknown method and lets the child fail; a 404 at once is clearer.
            _ = try scoring.requireMethod(request["method"]?.stringValue ?? method, request: request)
            // Upstream never enqueues scoring: a running job means 429.
            let job = try jobs.submit(request, enqueue: false)
            ctx.log.info("Scoring job \(job.id) submitted for \(method)")
            guard runSync else { return .json(job.json) }
            let (done, result) = jobs.wait(job.id)
            guard let done, done.status == .done, let result else {
                let last = done?.details.last ?? "no output"
                throw MONAILabelError.io("Scoring Task \(done?.status.rawValue ?? "lost"): \(last)")
            }
            return .json(result)
        })

        // Hidden upstream: every method, queued, the whole params as each request.
        r.post("/scoring/", route { req in
            let params = try req.jsonObjectBody()
            var out = JSONObject()
            for (name, _) in scoring.methods {
                var request: JSONObject = ["method": .string(name)]
                request.merge(params)
                do {
                    _ = try scoring.requireMethod(request["method"]?.stringValue ?? name, request: request)
                    let job = try jobs.submit(request, enqueue: true)
                    out[name] = ["result": job.json, "detail": nil]
                } catch let e as MONAILabelError {
                    out[name] = ["result": nil, "detail": .string(e.message)]
                }
            }
            return .json(.object(out))
        })

        r.delete("/scoring/", route { _ in
            guard let j = jobs.stop() else { return .json(.null) }
            ctx.log.info("Scoring job \(j.id) stopped")
            return .json(j.json)
        })
    }
}
