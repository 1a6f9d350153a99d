import Foundation
import HTTPServer
import MONAILabel

/// The endpoints every background-job group shares (spec sections 1.6-1.8): `GET` (the latest job,
/// `?all=true`, `?check_if_running=true`), `POST <path>{param}` (`?run_sync=true` waits and answers the
/// result), upstream's hidden `POST <path>` for every model or method, and `DELETE` (stop the running job).
/// Each group only says how a POST becomes its typed request.
enum JobRoutes {
    /// One group of job endpoints.
    struct Group: Sendable {
        var kind: JobKind
        /// Where the group is served: `/train/`, `/scoring/`, `/batch/infer` (no trailing slash, as upstream).
        var path: String
        /// The path parameter of `POST <path>{param}`: `model` or `method`.
        var parameter: String
        /// The job in log lines: "Train job".
        var logName: String
        /// The typed request of a `POST <path>{param}` and whether it may wait behind a running job.
        var decode: @Sendable (HTTPRequest) throws -> (request: JobRequest, enqueue: Bool)
        /// Upstream's hidden `POST <path>`: one request per model or method for the params; nil when the group
        /// has none.
        var each: (@Sendable (_ params: JSONObject) -> [(name: String, json: JSONObject)])?
    }

    static func register(_ r: inout HTTPRouter, _ ctx: RouteContext, _ g: Group) {
        let app = ctx.app
        let jobs = app.jobs(g.kind)
        let name = g.kind.taskName

        r.get(g.path, route { req in
            if try req.boolQuery("check_if_running", default: false) {
                guard let j = jobs.running else {
                    throw MONAILabelError.notFound("No \(name) Tasks are currently Running")
                }
                return .json(j.json)
            }
            if try req.boolQuery("all", default: false) {
                let all = jobs.all
                guard !all.isEmpty else { throw MONAILabelError.notFound("No \(name) Tasks Found") }
                return .json(.array(all.map(\.json)))
            }
            guard let j = jobs.latest else { throw MONAILabelError.notFound("No \(name) Tasks Found") }
            return .json(j.json)
        })

        let slash = g.path.hasSuffix("/") ? "" : "/"
        r.post(g.path + slash + "{\(g.parameter)}", route { req in
            let runSync = try req.boolQuery("run_sync", default: false)
            let (request, enqueue) = try g.decode(req)
            let job = try app.submitJob(request, enqueue: enqueue)
            ctx.log.info("\(g.logName) \(job.id) submitted for \(req.pathParameters[g.parameter] ?? "")")
            guard runSync else { return .json(job.json) }
            let (done, result) = jobs.wait(job.id)
            guard let done, done.status == .done, let result else {
                let last = done?.details.last ?? "no output"
                throw MONAILabelError.io("\(name) Task \(done?.status.rawValue ?? "lost"): \(last)")
            }
            return .json(result)
        })

        if let each = g.each {
            r.post(g.path, route { req in
                let params = try req.jsonObjectBody()
                var out = JSONObject()
                for (key, json) in each(params) {
                    do {
                        let job = try app.submitJob(try app.jobRequest(g.kind, json), enqueue: true)
                        out[key] = ["result": job.json, "detail": nil]
                    } catch let e as MONAILabelError {
                        out[key] = ["result": nil, "detail": .string(e.message)]
                    }
                }
                return .json(.object(out))
            })
        }

        r.delete(g.path, route { _ in
            guard let j = jobs.stop() else { return .json(.null) }
            ctx.log.info("\(g.logName) \(j.id) stopped")
            return .json(j.json)
        })
    }
}
