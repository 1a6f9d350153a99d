import Foundation
import HTTPServer
import MONAILabel

/// `/datastore/...` (spec section 1.4), including the deprecated `PUT/DELETE /datastore/` aliases the Slicer
/// plugin and the Python client still use.
enum DatastoreRoutes {
    static func register(_ r: inout HTTPRouter, _ ctx: RouteContext) {
        let ds = ctx.app.datastore

        r.get("/datastore/", route { req in
            switch try req.enumQuery("output", ["train", "stats", "all"]) ?? "stats" {
            case "all": return .json(ds.compactJSON())
            case "train":
                return .json(.array(ds.datalist().map { ["image": .string($0.image), "label": .string($0.label)] }))
            default: return .json(ds.status().json)
            }
        })

        let putImage = route { req in
            let form = try req.form()
            guard let file = form.file("file") else { throw ValidationFailure.missing("body", "file") }
            let upload = UploadedFile(path: URL(fileURLWithPath: file.path), fileName: file.filename)
            let id: String
            if let q = req.queryValue("image"), !q.isEmpty {
                id = q
            } else {
                id = StoreNames.split(upload.baseName, patterns: ds.patternsForUploads).id
            }
            var info = try infoField(form, "params")
            info["user"] = .string(ctx.user)
            try ds.addImage(id: id, file: upload.path, fileName: upload.baseName, info: info)
            ctx.log.info("Image \(id) added")
            return .json(["image": .string(id)])
        }
        r.put("/datastore/image", putImage)
        r.put("/datastore/", putImage)

        let deleteImage = route { req in
            let id = try req.requiredQuery("id")
            try ds.removeImage(id)
            return .json(.object(JSONObject()))
        }
        r.delete("/datastore/image", deleteImage)
        r.delete("/datastore/", deleteImage)

        r.head("/datastore/image", route { req in
            let id = try req.requiredQuery("image")
            guard let path = try fetchedImage(ds, id), FileOps.isRegularFile(path) else {
                throw MONAILabelError.notFound("Image NOT Found")
            }
            // Upstream compares the bare digest with "SHA256:<hex>" and so always fails; both forms work here.
            if let sum = req.queryValue("check_sum"), !sum.isEmpty {
                let expected = sum.lowercased().hasPrefix("sha256:") ? String(sum.dropFirst(7)) : sum
                guard try Checksum.sha256Hex(path) == expected.lowercased() else {
                    throw MONAILabelError.notFound("Image NOT Found (checksum failed)")
                }
            }
            return .json(.object(JSONObject()))
        })

        r.get("/datastore/image", route { req in
            let id = try req.requiredQuery("image")
            guard let path = try fetchedImage(ds, id), FileOps.isRegularFile(path), let name = ds.imageFileName(id) else {
                throw MONAILabelError.notFound("Image NOT Found")
            }
            return .download(path, name: name)
        })

        r.get("/datastore/image/info", route { req in
            let id = try req.requiredQuery("image")
            guard var info = ds.imageInfo(id), let path = ds.imageURI(id) else { return .json(.object(JSONObject())) }
            info["path"] = .string(path)
            return .json(.object(info))
        })

        r.put("/datastore/image/info", route { req in
            let id = try req.requiredQuery("image")
            var info = try infoField(try req.form(), "info")
            info["user"] = .string(ctx.user)
            try ds.updateImageInfo(id, info: info)
            return .json(.null)
        })

        r.put("/datastore/label", route { req in
            let id = try req.requiredQuery("image")
            let tagParam = req.queryValue("tag") ?? ""
            let tag = tagParam.isEmpty ? LabelTag.final : tagParam
            let form = try req.form()
            guard let file = form.file("label") else { throw ValidationFailure.missing("body", "label") }
            let upload = UploadedFile(path: URL(fileURLWithPath: file.path), fileName: file.filename)
            var info = try infoField(form, "params")
            // Who saved it, when someone is signed in (upstream only logs it; with auth off nothing changes).
            if let user = CurrentUser.user { info["user"] = .string(user.username) }
            let labelID = try ds.saveLabel(imageID: id, file: upload.path, fileName: upload.baseName, tag: tag, info: info)
            ctx.log.info("Label \(labelID) saved under tag \(tag)")
            for job in ctx.app.onSaveLabel(imageID: id, tag: tag) { ctx.log.info("Auto-training: queued job \(job.id)") }
            return .json(["image": .string(id), "label": .string(labelID)])
        })

        r.delete("/datastore/label", route { req in
            let id = try req.requiredQuery("id")
            let tag = try req.requiredQuery("tag")
            try ds.removeLabel(id, tag: tag)
            return .json(.object(JSONObject()))
        })

        r.head("/datastore/label", route { req in
            let id = try req.requiredQuery("image")
            let tag = try req.requiredQuery("tag")
            guard let path = try ds.fetchLabel(id, tag: tag), FileOps.isRegularFile(path) else {
                throw MONAILabelError.notFound("Label NOT Found")
            }
            return .json(.object(JSONObject()))
        })

        r.get("/datastore/label", route { req in
            let id = try req.requiredQuery("label")
            let tag = try req.requiredQuery("tag")
            guard let path = try ds.fetchLabel(id, tag: tag), FileOps.isRegularFile(path),
                let name = ds.labelFileName(id, tag: tag)
            else { throw MONAILabelError.notFound("Label NOT Found") }
            return .download(path, name: name)
        })

        r.get("/datastore/label/info", route { req in
            let id = try req.requiredQuery("label")
            let tag = try req.requiredQuery("tag")
            return .json(.object(ds.labelInfo(id, tag: tag) ?? JSONObject()))
        })

        let updateLabelInfo = { (field: String) -> HTTPHandler in
            route { req in
                let id = try req.requiredQuery("label")
                let tag = try req.requiredQuery("tag")
                var info = try infoField(try req.form(), field)
                info["user"] = .string(ctx.user)
                try ds.updateLabelInfo(id, tag: tag, info: info)
                return .json(.null)
            }
        }
        r.put("/datastore/label/info", updateLabelInfo("info"))
        r.put("/datastore/updatelabelinfo", updateLabelInfo("params"))

        r.get("/datastore/dataset", route { req in
            let limit = try req.intQuery("limit_cases")
            let zip = try DatasetArchive.build(ds, limitCases: limit)
            return .file(zip.path, contentType: "application/octet-stream", downloadName: "dataset.zip", deleteAfter: true)
        })
    }
}

/// A form field holding info the datastore keeps (`params` of an upload, `info` of an update): a JSON object
/// within `InfoLimits`, else 422 naming the field. The store checks again what it would keep after merging.
func infoField(_ form: HTTPForm, _ name: String) throws -> JSONObject {
    let info = try jsonObjectField(form, name)
    try InfoLimits.check(info, field: "form field '\(name)'")
    return info
}

extension Datastore {
    /// The patterns that split an uploaded file name into id and extension.
    var patternsForUploads: [String] { (self as? LocalDatastore)?.patterns ?? StoreNames.defaultPatterns }
}

/// The image's local file (fetched from a PACS when needed); nil when unknown, so callers keep upstream's 404
/// text, while an unreachable PACS still surfaces as 503.
func fetchedImage(_ ds: any Datastore, _ id: String) throws -> String? {
    do {
        return try ds.fetchImage(id)
    } catch let e as MONAILabelError where e.kind == .notFound {
        return nil
    }
}
