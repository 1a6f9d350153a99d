import Foundation
import HTTPServer
import MONAILabel

/// `POST /infer/{model}` (spec section 1.2) and `GET /infer/` (our extension: the model workers and the
/// queue of requests waiting for one, with each request's position).
enum InferRoutes {
    static func register(_ r: inout HTTPRouter, _ ctx: RouteContext) {
        r.get("/infer/", route { _ in .json(.object(ctx.app.inferQueueReport())) })
        r.post("/infer/{model}", route { req in
            let model = req.pathParameters["model"] ?? ""
            let output = try req.enumQuery("output", ["image", "json", "all", "dicom_seg"])
            let form = try req.form()
            let params = try jsonObjectField(form, "params")
            var input = InferInput(
                model: model, imageID: req.queryValue("image") ?? "", sessionID: req.queryValue("session_id") ?? "",
                params: params)
            let context = req.context
            input.isCancelled = { context.isPeerGone }
            if let file = form.file("file") {
                input.upload = try keepExtension(file, req)
            }
            if let label = form.file("label") {
                input.labelUpload = try keepExtension(label, req)
            }
            if output == "dicom_seg" { try ctx.app.checkDicomSegOutput(input) }
            let result = try ctx.app.infer(input)
            if let f = result.file { req.context.deleteAfterResponse(f.path) }
            switch output {
            case "dicom_seg":
                guard let f = result.file else { return .json(.object(result.json)) }
                let seg = f.deletingLastPathComponent().appendingPathComponent(UUID().uuidString + ".dcm")
                req.context.deleteAfterResponse(seg.path)
                let imageID = try ctx.app.writeDicomSeg(result, to: seg)
                return .file(seg.path, contentType: "application/dicom", downloadName: "\(imageID).dcm",
                             deleteAfter: false)
            case "json":
                return .json(.object(result.json))
            case "image":
                guard let f = result.file else { return .json(.object(result.json)) }
                return .download(f.path, name: f.lastPathComponent)
            default:
                guard let f = result.file else { return .json(.object(result.json)) }
                var mp = MultipartResponseBuilder()
                mp.addField(name: "params", value: JSONValue.object(result.json).pythonDumpsBytes(),
                            contentType: "application/json")
                mp.addFile(name: "image", filename: f.lastPathComponent, path: f.path,
                           contentType: MimeTypes.guess(f.lastPathComponent))
                return mp.response()
            }
        })
    }

    /// Image readers pick the format from the file name, so the spooled upload gets the client's extension
    /// (`.nii.gz` when the client gave none), as upstream's temp file does.
    static func keepExtension(_ file: HTTPUploadedFile, _ req: HTTPRequest) throws -> UploadedFile {
        let base = UploadedFile(path: URL(fileURLWithPath: file.path), fileName: file.filename).baseName
        var ext = StoreNames.split(base).ext
        if ext.isEmpty { ext = ".nii.gz" }
        let target = file.path + ext
        guard rename(file.path, target) == 0 else { throw MONAILabelError.io("cannot stage the uploaded image") }
        req.context.deleteAfterResponse(target)
        return UploadedFile(path: URL(fileURLWithPath: target), fileName: base)
    }
}
