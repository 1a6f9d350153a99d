import Foundation

/// Batch inference (spec sections 1.7 and 2.3): one model over a set of datastore images in a child process.
/// The child only reads the datastore; it leaves each label in a temporary file and the server saves them
/// under `label_tag` when the job succeeds, so only the server writes the datastore document.
public final class BatchInferService: Sendable {
    /// Values of the `images` query.
    public static let imageSets = ["all", "labeled", "unlabeled"]
    /// Upstream's params when `POST /batch/infer/{model}` has no body.
    public static let defaultParams: JSONObject = [
        "device": "cuda", "multi_gpu": true, "gpus": "all", "logging": "WARNING", "save_label": true,
        "label_tag": "original", "max_workers": 1, "max_batch_size": 0,
    ]

    public let jobs: BackgroundJobs

    init(settings: Settings, datastore: Datastore) {
        jobs = BackgroundJobs(kind: .batchInfer, launch: JobLaunch(settings: settings),
                              stopGrace: Double(settings.trainStopGrace)) { value in
            .object(try Self.save(childResult: value, datastore: datastore))
        }
    }

    /// Checks a request's own numeric parameter before a job is queued (`max_batch_size` must be an integer);
    /// the inference params are checked per image by the task, as for `/infer`.
    static func validate(request: JSONObject) throws {
        _ = try request.intParam("max_batch_size", in: Int.min...Int.max)
    }

    /// The images a request names: `labeled` (with a final label), `unlabeled`, a list, else all; sorted, then
    /// cut to `max_batch_size` when positive.
    public static func images(request: JSONObject, datastore: Datastore) -> [String] {
        var ids: [String]
        switch request["images"] {
        case .string("labeled"): ids = datastore.labeledImages()
        case .string("unlabeled"): ids = datastore.unlabeledImages()
        case .array(let a): ids = a.compactMap(\.stringValue)
        default: ids = datastore.listImages()
        }
        ids.sort()
        if let n = request["max_batch_size"]?.intValue, n > 0, ids.count > n { ids = Array(ids.prefix(n)) }
        return ids
    }

    /// The server side: saves every label the child left (when `save_label`) and answers upstream's
    /// `{image_id: {"label", "tag", "params"} | {}}`, deleting the temporary files.
    static func save(childResult: JSONValue, datastore: Datastore) throws -> JSONObject {
        guard let entries = childResult["images"]?.objectValue, let dir = childResult["dir"]?.stringValue else {
            throw MONAILabelError.invalid("batch_infer result has no 'images' and 'dir'")
        }
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var out = JSONObject()
        for (id, v) in entries {
            guard let e = v.objectValue, let path = e["file"]?.stringValue, let tag = e["tag"]?.stringValue else {
                out[id] = .object(JSONObject())
                continue
            }
            let file = URL(fileURLWithPath: path)
            defer { try? FileManager.default.removeItem(at: file) }
            let params = e["params"]?.objectValue ?? JSONObject()
            if e["save_label"]?.boolValue ?? true {
                do {
                    try datastore.saveLabel(imageID: id, file: file, fileName: file.lastPathComponent, tag: tag,
                                            info: ["model": e["model"] ?? .null, "params": .object(params)])
                } catch {
                    out[id] = .object(JSONObject())
                    continue
                }
            }
            out[id] = ["label": .string(id), "tag": .string(tag), "params": .object(params)]
        }
        return out
    }
}

/// A batch inference job's request decoded (`MONAILabelApp.batchInferRequest`).
public struct BatchInferRequest: Sendable {
    public let model: String
    /// The request as the job shows it and the child receives it.
    public let json: JSONObject
}

extension MONAILabelApp {
    /// Decodes a batch inference request (`model`, `images` and the inference params): 404 for an unknown
    /// model (upstream queues it and lets the child fail), 422 for a malformed `max_batch_size`.
    public func batchInferRequest(_ json: JSONObject) throws -> BatchInferRequest {
        guard let model = try json.stringParam("model") else { throw MONAILabelError.invalid("batch_infer request has no model") }
        _ = try inferTask(model)
        try BatchInferService.validate(request: json)
        return BatchInferRequest(model: model, json: json)
    }

    /// The child side of batch inference: runs `request.model` on each image and leaves the labels in a new
    /// temporary folder: `{"dir", "images": {id: {"file", "tag", "model", "save_label", "params"} | {} when it
    /// failed}}`.
    public func batchInfer(_ batch: BatchInferRequest, log: (String) -> Void) throws -> JSONObject {
        let model = batch.model, request = batch.json
        let ids = BatchInferService.images(request: request, datastore: datastore)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("monailabel-batch-\(UUID().uuidString)")
        try FileOps.makeDirectory(dir)
        let tag = request["label_tag"]?.stringValue ?? LabelTag.original
        var params = request
        for k in ["model", "images", "max_workers", "max_batch_size", "multi_gpu", "gpus"] { params[k] = nil }
        // The server saves the labels (this process sees a read-only datastore).
        params["save_label"] = false
        var out = JSONObject()
        log("Batch inference of \(model) on \(ids.count) images")
        for (i, id) in ids.enumerated() {
            do {
                let r = try infer(InferInput(model: model, imageID: id, params: params))
                guard let file = r.file else {
                    log("\(id): the model wrote no label")
                    out[id] = .object(JSONObject())
                    continue
                }
                let kept = dir.appendingPathComponent(id + "-" + file.lastPathComponent)
                try FileManager.default.moveItem(at: file, to: kept)
                out[id] = ["file": .string(kept.path), "tag": .string(tag), "model": .string(model),
                           "save_label": .bool(request["save_label"]?.boolValue ?? true), "params": .object(r.json)]
                log("\(i + 1)/\(ids.count) \(id): done")
            } catch {
                log("\(id): inference failed: \(error)")
                out[id] = .object(JSONObject())
            }
        }
        return ["dir": .string(dir.path), "images": .object(out)]
    }
}
