import Foundation
import HTTPServer
import MONAILabel

/// `/session/` (spec section 1.9): 406 for every call when sessions are disabled.
enum SessionRoutes {
    static func register(_ r: inout HTTPRouter, _ ctx: RouteContext) {
        @Sendable func store() throws -> SessionStore {
            guard let s = ctx.app.sessions else { throw MONAILabelError(.notEnabled, "Session Feature is Not Enabled") }
            return s
        }

        r.put("/session/", route { req in
            let sessions = try store()
            let uncompress = try req.boolQuery("uncompress", default: false)
            let expiry = try req.intQuery("expiry") ?? 0
            let form = try req.form()
            let files = form.files("files")
            guard !files.isEmpty else { throw ValidationFailure.missing("body", "files") }
            let info = try sessions.create(
                files: files.map { UploadedFile(path: URL(fileURLWithPath: $0.path), fileName: $0.filename) },
                expiry: expiry, uncompress: uncompress)
            return .json(["session_id": .string(info.name), "session_info": info.json])
        })

        r.get("/session/{session_id}", route { req in
            let sessions = try store()
            let id = req.pathParameters["session_id"] ?? ""
            let updateTS = try req.boolQuery("update_ts", default: false)
            let wantImage = try req.boolQuery("image", default: false)
            guard let info = sessions.get(id, updateTS: updateTS) else {
                throw MONAILabelError.notFound("Session (\(id)) Not Found")
            }
            if wantImage {
                guard FileOps.isRegularFile(info.image) else {
                    throw MONAILabelError.invalid("Session (\(id)) holds a folder of files, not a single image")
                }
                return .download(info.image, name: (info.image as NSString).lastPathComponent)
            }
            return .json(info.json)
        })

        r.delete("/session/{session_id}", route { req in
            let sessions = try store()
            guard let info = sessions.remove(req.pathParameters["session_id"] ?? "") else {
                throw MONAILabelError.notFound("Session Not Found")
            }
            return .json(info.json)
        })
    }
}
