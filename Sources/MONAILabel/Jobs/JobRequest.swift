import Foundation

/// The kinds of background job, as upstream names their child's method (`-m train|scoring|batch_infer`).
public enum JobKind: String, Sendable, CaseIterable {
    case train
    case scoring
    case batchInfer = "batch_infer"

    /// The method as Python's `capitalize()` writes it in upstream's messages: Train, Scoring, Batch_infer.
    public var taskName: String { rawValue.prefix(1).uppercased() + rawValue.dropFirst().lowercased() }
}

/// A background job's request decoded into its typed settings (`MONAILabelApp.jobRequest`). The server decodes
/// before it queues anything, so a bad value is a 422 naming it and no job; the child decodes the same JSON
/// again with the same code before it runs.
public enum JobRequest: Sendable {
    case train(TrainRequest)
    case scoring(ScoringRequest)
    case batchInfer(BatchInferRequest)

    public var kind: JobKind {
        switch self {
        case .train: .train
        case .scoring: .scoring
        case .batchInfer: .batchInfer
        }
    }

    /// The request as the job shows it (`GET /train/`) and the child receives it: the client's params over the
    /// route's own keys (`model`, `method`, `images`).
    public var json: JSONObject {
        switch self {
        case .train(let r): r.json
        case .scoring(let r): r.json
        case .batchInfer(let r): r.json
        }
    }
}

/// The one place a job crosses to its child process: the server's own executable as
/// `monailabel run_task --method <kind> --request <json> --app <dir> --studies <dir> --output <file>
/// [--conf KEY VALUE]...` (upstream's `python -m monailabel.interfaces.utils.app -m <method> -r <request>`), with
/// the environment the child needs. `run_task` hands what it parsed back as a `JobChild`.
public struct JobLaunch: Sendable {
    public let executable: URL
    public let environment: [String: String]
    let app: String
    let studies: String
    let conf: [(key: String, value: String)]

    /// The child of this server's app and studies folder.
    public init(settings: Settings) {
        executable = settings.childExecutable
        // The child reads a snapshot of the datastore and needs no sessions of its own.
        var env = ["MONAI_LABEL_DATASTORE_AUTO_RELOAD": "false", "MONAI_LABEL_SESSIONS": "false"]
        if settings.torchThreads > 0 { env["MONAI_LABEL_TORCH_THREADS"] = String(settings.torchThreads) }
        env["MONAI_LABEL_DATASTORE_FILE_EXT"] = JSONValue.array(settings.datastoreFileExt.map { .string($0) }).compactString()
        environment = env
        app = settings.appDir.path
        studies = settings.studies
        conf = settings.conf.sorted { $0.key < $1.key }
    }

    /// The child's arguments for a job of `kind` with `request`, writing its result to `resultFile`.
    public func arguments(kind: JobKind, request: JSONObject, resultFile: URL) -> [String] {
        var args = ["run_task", "--method", kind.rawValue, "--request", JSONValue.object(request).compactString(),
                    "--app", app, "--studies", studies, "--output", resultFile.path]
        for (k, v) in conf { args += ["--conf", k, v] }
        return args
    }
}

/// What `monailabel run_task` was started with (`JobLaunch.arguments`), read back: the job's kind and request
/// JSON, the app the child builds, and where it writes its result.
public struct JobChild: Sendable {
    public let kind: JobKind
    public let request: JSONObject
    public let appDir: String
    public let studies: String
    public let conf: [String: String]
    public let output: String?

    /// Reads `run_task`'s words: `method` must name a job kind and `request` be a JSON object.
    public init(method: String, request: String, appDir: String, studies: String, conf: [String: String],
                output: String?) throws
    {
        guard let kind = JobKind(rawValue: method) else {
            throw MONAILabelError.invalid("unknown task method '\(method)' (train, scoring, batch_infer)")
        }
        guard let json = (try? JSONValue.parse(request))?.objectValue else {
            throw MONAILabelError.invalid("--request must be a JSON object")
        }
        self.kind = kind
        self.request = json
        self.appDir = appDir
        self.studies = studies
        self.conf = conf
        self.output = output
    }
}
