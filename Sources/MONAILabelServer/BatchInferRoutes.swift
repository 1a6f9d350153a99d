import Foundation
import HTTPServer
import MONAILabel

/// `/batch/infer` (spec section 1.7; no trailing slash, as upstream): one model over many datastore images in
/// a child process, never queued.
enum BatchInferRoutes {
    static func register(_ r: inout HTTPRouter, _ ctx: RouteContext) {
        let app = ctx.app
        JobRoutes.register(&r, ctx, .init(
            kind: .batchInfer, path: "/batch/infer", parameter: "model", logName: "Batch inference job",
            decode: { req in
                let images = try req.enumQuery("images", BatchInferService.imageSets) ?? "all"
                var json: JSONObject = ["model": .string(req.pathParameters["model"] ?? ""), "images": .string(images)]
                // Upstream's defaults apply only when no body is sent at all; `{}` means no params.
                let noBody = try req.bodyBytes().allSatisfy { $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }
                json.merge(noBody ? BatchInferService.defaultParams : try req.jsonObjectBody())
                // Upstream queues an unknown model and lets the child fail; a 404 at once is clearer.
                return (try app.jobRequest(.batchInfer, json), false)
            },
            each: nil))
    }
}
