import Foundation
import HTTPServer
import MONAILabel

/// `/model/{model}` and `/model/info/{model}` (spec section 1.10).
enum ModelRoutes {
    static func register(_ r: inout HTTPRouter, _ ctx: RouteContext) {
        let app = ctx.app

        r.get("/model/{model}", route { req in
            let model = req.pathParameters["model"] ?? ""
            let file = try app.modelFile(model)
            return .download(file.path, name: model + ModelFiles.extensionOf(file))
        })

        r.get("/model/info/{model}", route { req in
            let model = req.pathParameters["model"] ?? ""
            let file = try app.modelFile(model)
            var out = try ModelFiles.describe(file)
            if let stats = app.trainStats(model), !stats.isEmpty { out["train_stats"] = .object(stats) }
            return .json(.object(out))
        })

        r.put("/model/{model}", route { req in
            let model = req.pathParameters["model"] ?? ""
            let form = try req.form()
            guard let upload = form.file("file") else { throw ValidationFailure.missing("body", "file") }
            guard let task = app.inferTasks[model], let dest = task.modelPaths.last else {
                throw MONAILabelError.notFound("Model File Name NOT configured for \(model)")
            }
            try app.publishModel(model, from: URL(fileURLWithPath: upload.path), to: dest)
            ctx.log.info("Model \(model) replaced by an upload (\(upload.size) bytes)")
            return .json(.object(try ModelFiles.describe(dest)))
        })

        r.delete("/model/{model}", route { req in
            let model = req.pathParameters["model"] ?? ""
            let file = try app.modelFile(model)
            let f = DateFormatter()
            f.dateFormat = "yyyyMMdd_HHmmss"
            f.locale = Locale(identifier: "en_US_POSIX")
            let target = file.path + "." + f.string(from: Date()) + ".deleted"
            guard rename(file.path, target) == 0 else { throw MONAILabelError.io("cannot rename \(file.path)") }
            FileOps.fsyncDirectory(file.deletingLastPathComponent())
            ctx.log.info("Model \(model) file moved to \(target)")
            return .json(.object(JSONObject()))
        })
    }
}

enum ModelFiles {
    /// `.pt`, `.ts`: the last suffix of the weights file.
    static func extensionOf(_ url: URL) -> String {
        let ext = url.pathExtension
        return ext.isEmpty ? "" : "." + ext
    }

    /// `{"checksum": "SHA256:<hex>", "modified_time": <int mtime>}`.
    static func describe(_ url: URL) throws -> JSONObject {
        let sum = try Checksum.sha256Hex(url.path)
        let mtime = (FileOps.modificationTime(url.path) ?? 0) / 1_000_000_000
        return ["checksum": .string("SHA256:" + sum), "modified_time": .int(Int(mtime))]
    }
}
