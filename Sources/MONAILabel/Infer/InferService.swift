import Foundation
import TorchKit

/// What `POST /infer/{model}` asks for, transport-free.
public struct InferInput: Sendable {
    public var model: String
    /// Datastore image id (query `image`); `params.image` overrides it (see `datastoreImageID`).
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

extension InferInput {
    /// The datastore image this request names: `params.image` wins over the query's `image`, as upstream merges
    /// params over the request. Every use (fetching the image, saving the label, the DICOM SEG) reads it here.
    public var datastoreImageID: String { params["image"]?.stringValue ?? imageID }
}

/// Upstream's `app.infer()` result: the label file (a temporary file the caller deletes), the result JSON, and
/// the label id and tag (`tag` is always `original`, as upstream reports it).
public struct InferOutput: Sendable {
    public var file: URL?
    public var json: JSONObject
    public var label: String
    public var tag = LabelTag.original
    /// The datastore image the inference ran on; nil when it ran on a session's image or an upload.
    public var imageID: String?
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
        // Checked so a client learns at once that a device does not exist. The device the client named (not the
        // config's default) picks the model workers of that device; without one (or with bare `cuda` on a GPU
        // host: any GPU) the least-loaded device's worker runs it on its own device (`InferPlacement`).
        _ = try DeviceList.requested(params["device"])
        let pinned = try DeviceRouting.pinned(input.params["device"])
        params["device"] = pinned.map { JSONValue.string($0.description) }
        if params["sw_accumulate"] == nil || params["sw_accumulate"] == .null {
            params["sw_accumulate"] = .string(settings.swAccumulate.rawValue)
        }
        _ = try AccumulateMode.from(params: params)
        try task.validate(params: params)
        let imageID = input.datastoreImageID
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
        let result: InferResult
        do {
            result = try admission.run(describe: { queueDescription }) {
                if let pool = inferWorkers {
                    let timeout = settings.inferTimeout > 0 ? Double(settings.inferTimeout) : nil
                    return try pool.run(job, device: pinned?.description, isCancelled: input.isCancelled, timeout: timeout)
                }
                return try runModel(job)
            }
        } catch let e as MONAILabelError where e.kind == .unusableImage {
            // Refused before any resampling: the geometry of a series a PACS sent is the PACS's fault.
            guard let id = storeID, datastore.imagesFromUpstream else { throw MONAILabelError.invalid(e.message) }
            throw MONAILabelError(.badUpstream, "series \(id) as the PACS sent it cannot be used by model \(input.model): \(e.message)")
        }
        var label = result.file?.path ?? ""
        if let file = result.file, let id = storeID, params["save_label"]?.boolValue == true {
            let tag = params["label_tag"]?.stringValue ?? LabelTag.original
            try datastore.saveLabel(
                imageID: id, file: file, fileName: file.lastPathComponent, tag: tag,
                info: ["model": .string(input.model), "params": .object(result.json)])
            label = id
        }
        return InferOutput(file: result.file, json: result.json, label: label, imageID: storeID)
    }

    /// Refuses `output=dicom_seg` before any work when it cannot succeed: the datastore cannot export SEGs, or
    /// the request names no datastore image.
    public func checkDicomSegOutput(_ input: InferInput) throws {
        guard datastore is DicomSegExporting else {
            throw MONAILabelError.invalid("DICOM SEG format is not supported in a non-DICOM datastore")
        }
        if input.datastoreImageID.isEmpty {
            throw MONAILabelError.invalid("DICOM SEG output needs an image of the datastore (query parameter image)")
        }
    }

    /// Writes an inference's label as a DICOM SEG of the datastore image it ran on, at `url`; returns that image's id.
    public func writeDicomSeg(_ output: InferOutput, to url: URL) throws -> String {
        guard let exporter = datastore as? DicomSegExporting else {
            throw MONAILabelError.invalid("DICOM SEG format is not supported in a non-DICOM datastore")
        }
        guard let file = output.file, let imageID = output.imageID else {
            throw MONAILabelError.invalid("DICOM SEG output needs an image of the datastore (query parameter image)")
        }
        try exporter.exportDicomSeg(imageID: imageID, labelFile: file, fileName: file.lastPathComponent,
                                    labelInfo: output.json["label_info"]?.arrayValue ?? [], to: url)
        return imageID
    }

    /// Runs a job on this process's own models: what a model worker does with each job, and the whole of
    /// inference when `MONAI_LABEL_INFER_WORKERS` is 0. A RawScribbles `.bin` label is converted here (it needs
    /// the image's geometry, which only the process that reads the image has).
    ///
    /// `latencies` gains `peak_rss_mb`, this process's peak resident memory during the request in MiB (the model
    /// worker's, or the server's with models in-process, where requests running at once share one peak). Freed
    /// memory goes back to the system once the process has been idle for `MONAI_LABEL_MEMORY_TRIM_DELAY_MS`.
    ///
    /// A request that names no device runs on `device` (a model worker's own), else on the backend's first. GPU
    /// memory the request left cached is released afterwards, and an out-of-memory that escaped the tasks' own
    /// retry (`InferPlacement.run`) is answered as theirs is: a 503 naming the device.
    public func runModel(_ job: WorkerJob, device: Device? = nil) throws -> InferResult {
        var job = job
        if job.params["device"] == nil || job.params["device"] == .null {
            job.params["device"] = .string((device ?? .best).description)
        }
        defer { DeviceMemory.releaseAfterRequest() }
        return try memoryTrimmer.run {
            ProcessMemory.resetPeak()
            var result: InferResult
            do {
                result = try runModelMeasured(job)
            } catch let e as TorchError where e.isOutOfMemory {
                let on = (try? DeviceList.requested(job.params["device"])) ?? Device.cpu
                throw InferPlacement.outOfMemory(e, on: on, retried: false)
            }
            if case .object(var latencies)? = result.json["latencies"], let peak = ProcessMemory.peakResidentBytes {
                latencies["peak_rss_mb"] = .int(peak >> 20)
                result.json["latencies"] = .object(latencies)
            }
            return result
        }
    }

    private func runModelMeasured(_ job: WorkerJob) throws -> InferResult {
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
