import Foundation
import HTTPServer
import MONAILabel

/// `/batch/infer` (spec section 1.7; no trailing slash, as upstream): one model over many datastore images in
/// a child process, never queued.
enum BatchInferRoutes {
    static func register(_ r: inout HTTPRouter, _ ctx: RouteContext) {
        let app = ctx.app
        let jobs = app.batchInfer.jobs

        r.get("/batch/infer", route { req in
            if try req.boolQuery("check_if_running", default: false) {
                guard let j = jobs.running else {
                    throw MONAILabelError.notFound("No Batch_infer Tasks are currently Running")
                }
                return .json(j.json)
            }
            if try req.boolQuery("all", default: false) {
                let all = jobs.all
                guard !all.isEmpty else { throw MONAILabelError.notFound("No Batch_infer Tasks Found") }
                return .json(.array(all.map(\.json)))
            }
            guard let j = jobs.latest else { throw MONAILabelError.notFound("No Batch_infer Tasks Found") }
            return .json(j.json)
        })

        r.post("/batch/infer/{model}", route { req in
            let model = req.pathParameters["model"] ?? ""
            let images = try req.enumQuery("images", BatchInferService.imageSets) ?? "all"
            let runSync = try req.boolQuery("run_sync", default: false)
            var request: JSONObject = ["model": .string(model), "images": .string(images)]
            // Upstream's defaults apply only when no body is sent at all; `{}` means no params.
            let noBody = try req.bodyBytes().allSatisfy { $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }
            request.merge(noBody ? BatchInferService.defaultParams : try req.jsonObjectBody())
            // Upstream queues an unknown model and lets the child fail; a 404 at once is clearer.
            _ = try app.inferTask(request["model"]?.stringValue ?? model)
            try BatchInferService.validate(request: request)
            let job = try jobs.submit(request, enqueue: false)
            ctx.log.info("Batch inference job \(job.id) submitted for \(model)")
            guard runSync else { return .json(job.json) }
            let (done, result) = jobs.wait(job.id)
            guard let done, done.status == .done, let result else {
                let last = done?.details.last ?? "no output"
                throw MONAILabelError.io("Batch_infer Task \(done?.status.rawValue ?? "lost"): \(last)")
            }
            return .json(result)
        })

        r.delete("/batch/infer", route { _ in
            guard let j = jobs.stop() else { return .json(.null) }
            ctx.log.info("Batch inference job \(j.id) stopped")
            return .json(j.json)
        })
    }
}
