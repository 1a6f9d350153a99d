import Foundation

/// What `POST /infer/{model}` asks for, transport-free.
public struct InferInput: Sendable {
    public var model: String
    /// Datastore image id (query `image`); params may override it.
    public var imageID: String
    public var sessionID: String
    /// An uploaded image (`file` part), used instead of a datastore image.
    public var upload: UploadedFile?
    /// An uploaded label (`label` part: the scribbles of scribbles tasks).
    public var labelUpload: UploadedFile?
    public var params: JSONObject
    /// Whether the client has gone (the transport's disconnect check); a request running in a model worker is
    /// then stopped by killing the worker.
    public var isCancelled: (@Sendable () -> Bool)?

    public init(model: String, imageID: String = "", sessionID: String = "", upload: UploadedFile? = nil,
                params: JSONObject = [:]) {
        self.model = model
        self.imageID = imageID
        self.sessionID = sessionID
        self.upload = upload
        self.params = params
    }
}

/// Upstream's `app.infer()` result: the label file (a temporary file the caller deletes), the result JSON, and
/// the label id and tag (`tag` is always `original`, as upstream reports it).
public struct InferOutput: Sendable {
    public var file: URL?
    public var json: JSONObject
    public var label: String
    public var tag = LabelTag.original
}

/// Admission control for inference: at most `capacity` requests in flight; more get `unavailable` (503) at
/// once instead of piling up behind the model.
public final class InferAdmission: @unchecked Sendable {
    public let capacity: Int
    private let lock = NSLock()
    private var inFlight = 0

    public init(capacity: Int) { self.capacity = max(1, capacity) }

    /// Requests admitted and not finished.
    public var inFlightCount: Int {
        lock.lock()
        defer { lock.unlock() }
        return inFlight
    }

    /// Runs `body` when fewer than `capacity` requests are in flight; otherwise throws `.unavailable`, whose
    /// message ends with `describe()` (how the queue stands).
    public func run<T>(describe: () -> String = { "" }, _ body: () throws -> T) throws -> T {
        lock.lock()
        guard inFlight < capacity else {
            lock.unlock()
            throw MONAILabelError(.unavailable, "Inference queue is full (\(capacity) requests in flight\(describe())); retry later")
        }
        inFlight += 1
        lock.unlock()
        defer {
            lock.lock()
            inFlight -= 1
            lock.unlock()
        }
        return try body()
    }
}

extension MONAILabelApp {
    /// Runs an inference (spec sections 1.2 and 2.2): resolves the image from a session, an upload or the
    /// datastore, merges config and params, runs the task, and saves the label when `save_label` asks.
    /// Image ids are never taken as file paths, so a client cannot make the server read arbitrary files.
    public func infer(_ input: InferInput) throws -> InferOutput {
        let task = try inferTask(input.model)
        var params = task.config
        for (k, v) in params { if case .array(let a) = v, let first = a.first { params[k] = first } }
        params.merge(input.params)
        // Checked so a client learns at once that a device does not exist; the networks still run on the backend's
        // first device (Device.best) until inference places work per device (issue 15, with the worker processes).
        _ = try DeviceList.requested(params["device"])
        try task.validate(params: params)
        var imageID = input.imageID
        if let fromParams = input.params["image"]?.stringValue { imageID = fromParams }
        let imagePath: String
        var storeID: String?
        if !input.sessionID.isEmpty {
            guard let sessions else { throw MONAILabelError(.notEnabled, "Session Feature is Not Enabled") }
            guard let s = sessions.get(input.sessionID, updateTS: true) else {
                throw MONAILabelError.notFound("Session (\(input.sessionID)) Not Found")
            }
            imagePath = s.image
        } else if let upload = input.upload {
            imagePath = upload.path.path
        } else if !imageID.isEmpty {
            do {
                imagePath = try datastore.fetchImage(imageID)
            } catch let e as MONAILabelError where e.kind == .notFound {
                throw MONAILabelError.notFound("Image \(imageID) not found in the datastore")
            }
            storeID = imageID
        } else {
            throw MONAILabelError.invalid("Neither image, file nor session_id was provided")
        }
        // Only an uploaded file may be the label path: a client-given path would let it read any file.
        if task.type == "scribbles" { params["label"] = nil }
        let job = WorkerJob(model: input.model, imagePath: imagePath, params: params, labelPath: input.labelUpload?.path.path)
        let result = try admission.run(describe: { queueDescription }) {
            if let pool = inferWorkers {
                let timeout = settings.inferTimeout > 0 ? Double(settings.inferTimeout) : nil
                return try pool.run(job, isCancelled: input.isCancelled, timeout: timeout)
            }
            return try runModel(job)
        }
        var label = result.file?.path ?? ""
        if let file = result.file, let id = storeID, params["save_label"]?.boolValue == true {
            let tag = params["label_tag"]?.stringValue ?? LabelTag.original
            try datastore.saveLabel(
                imageID: id, file: file, fileName: file.lastPathComponent, tag: tag,
                info: ["model": .string(input.model), "params": .object(result.json)])
            label = id
        }
        return InferOutput(file: result.file, json: result.json, label: label)
    }

    /// Runs a job on this process's own models: what a model worker does with each job, and the whole of
    /// inference when `MONAI_LABEL_INFER_WORKERS` is 0. A RawScribbles `.bin` label is converted here (it needs
    /// the image's geometry, which only the process that reads the image has).
    public func runModel(_ job: WorkerJob) throws -> InferResult {
        let task = try inferTask(job.model)
        var params = job.params
        var staged: URL?
        defer { if let staged { try? FileManager.default.removeItem(at: staged) } }
        if let label = job.labelPath {
            if URL(fileURLWithPath: label).lastPathComponent.lowercased().hasSuffix(".bin") {
                staged = try RawScribbles.convert(URL(fileURLWithPath: label), reference: job.imagePath)
            }
            params["label"] = .string(staged?.path ?? label)
        }
        var result = try task.infer(InferRequest(imagePath: job.imagePath, params: params))
        // Checked after the run: the network just used is the one on disk now.
        if !task.modelPaths.isEmpty, task.currentModelFile == nil {
            result.json["warning"] = .string(Self.untrainedWarning(task.name))
        }
        return result
    }

    /// `, N running, M waiting for a model worker` for the queue-full message.
    private var queueDescription: String {
        guard let pool = inferWorkers else { return "" }
        let c = pool.counts
        return ": \(c.running) running, \(c.waiting) waiting for a model worker"
    }

    /// `GET /infer/` (our extension): the model workers and the requests waiting for one, in order.
    public func inferQueueReport() -> JSONObject {
        var out: JSONObject = ["capacity": .int(admission.capacity), "in_flight": .int(admission.inFlightCount)]
        guard let pool = inferWorkers else {
            out["in_process"] = true
            out["workers"] = .array([])
            out["queue"] = ["length": 0, "waiting": .array([])]
            return out
        }
        let r = pool.report()
        out["in_process"] = false
        out["workers"] = .array(r.workers)
        out["queue"] = ["length": .int(r.waiting.count), "waiting": .array(r.waiting)]
        return out
    }
}
