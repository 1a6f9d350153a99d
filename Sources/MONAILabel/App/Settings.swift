import Foundation
import Imaging

/// Server settings, read from `MONAI_LABEL_*` environment variables with upstream's names and defaults
/// (spec section 6). Lists are JSON, booleans `true`/`false` (case-insensitive, also 1/0).
public struct Settings: Sendable, Equatable {
    public var appDir: URL
    public var studies: String
    public var conf: [String: String]

    public var corsOrigins: [String] = []
    public var tasksTrain = true
    public var tasksStrategy = true
    public var tasksScoring = true
    public var tasksBatchInfer = true
    public var datastoreAutoReload = true
    public var datastoreReadOnly = false
    public var datastoreFileExt = StoreNames.defaultPatterns
    public var autoUpdateScoring = true
    public var sessions = true
    public var sessionPath = ""
    public var sessionExpiry = 3600
    /// The most bytes one session may hold, uploads or what an archive expands to (`MONAI_LABEL_SESSION_MAX_BYTES`).
    public var sessionMaxBytes = Int(SessionStore.defaultMaxBytes)
    /// The server's `PATH`, where external tools are looked up as upstream's `subprocess.run` does (`nvidia-smi`
    /// for `/logs/gpu`).
    public var executableSearchPath = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
    public var inferConcurrency = -1
    public var inferTimeout = 600
    /// Seconds one DICOM conversion of the DICOMweb datastore may run in its process
    /// (`MONAI_LABEL_DICOM_CONVERT_TIMEOUT`, default 300); past it the process is killed and the series is
    /// answered 502 and remembered as failing.
    public var dicomConvertTimeout = 300
    /// Seconds the ranks of a data-parallel train job wait for each other (`MONAI_LABEL_TRAIN_RANK_TIMEOUT`,
    /// default 300): to join, and in every collective, including while rank 0 validates. A rank that hangs
    /// ends the job after this; one that dies ends it at once.
    public var trainRankTimeout = 300
    /// Inferences admitted at once (running or waiting for the model); more get 503.
    public var inferQueue = 4
    /// Model worker processes (`MONAI_LABEL_INFER_WORKERS`, default 1): inference runs in supervised child
    /// processes so that a crash in tensor code fails one request, not the server. 0 runs models in the server
    /// process (the benchmark baseline and for debugging).
    public var inferWorkers = 1
    /// The model workers' heap allocator (`MONAI_LABEL_WORKER_ALLOCATOR`: `auto`, the default, jemalloc where
    /// Debian's libjemalloc2 is installed and glibc's malloc elsewhere; `glibc`; `jemalloc`, refused at start-up
    /// when the library is missing). See `InferWorker.jemallocConf` for why.
    public var workerAllocator = WorkerAllocator.auto
    /// Where sliding-window inference accumulates its output when a request's `sw_accumulate` does not say
    /// (`MONAI_LABEL_SW_ACCUMULATE`: `auto`, the default, on the GPU unless it lacks the free memory; `device`
    /// always there, as upstream; `cpu` always on the host).
    public var swAccumulate = AccumulateMode.auto
    /// cuDNN's autotuner for CUDA inference and training (`MONAI_LABEL_CUDNN_BENCHMARK`, default true, as
    /// upstream's `torch.backends.cudnn.benchmark = True`); no effect without a GPU.
    public var cudnnBenchmark = true
    /// Data-segment limit of each model worker in bytes (`MONAI_LABEL_WORKER_MAX_MEMORY`, suffixes K/M/G/T);
    /// 0 means the default, half of physical memory.
    public var workerMaxMemory: UInt64 = 0
    /// libtorch intra-op threads (`MONAI_LABEL_TORCH_THREADS`); 0 means one per core.
    public var torchThreads = 0
    /// Milliseconds a process that runs models must be idle before the heap memory inference freed is handed
    /// back to the system (`MONAI_LABEL_MEMORY_TRIM_DELAY_MS`, default 1000; 0 right after each request,
    /// negative never).
    public var memoryTrimDelayMs = 1000
    public var serverPort = 8000
    /// The executable train jobs run as (`MONAI_LABEL_TASK_RUNNER`); empty means this process's own.
    public var taskRunner = ""
    /// Seconds a stopped train job gets between SIGTERM and SIGKILL (`MONAI_LABEL_TRAIN_STOP_GRACE`).
    public var trainStopGrace = 3
    /// Queue a train job for every trainer after this many newly saved final labels
    /// (`MONAI_LABEL_AUTO_TRAIN_EVERY`); 0 turns auto-training off.
    public var autoTrainEvery = 0
    /// The bound on images and transform outputs (voxels x channels) the imaging layer allocates
    /// (`MONAI_LABEL_MAX_VOXELS`, default 2^30): one that reaches it is refused before allocating.
    public var maxVoxels = 1 << 30
    // What a client may make the HTTP server hold (issue 14): all far above what Slicer and OHIF send.
    /// Largest JSON (or urlencoded) body read into memory, bytes (`MONAI_LABEL_JSON_MAX_BYTES`); larger get 413.
    public var jsonMaxBytes = 8 << 20
    /// Most bytes of all text fields of one multipart form together (`MONAI_LABEL_FORM_FIELDS_MAX_BYTES`); file
    /// parts go to disk and do not count. More get 413.
    public var formFieldsMaxBytes = 8 << 20
    /// Bytes/s a request body must average after 10 s (`MONAI_LABEL_MIN_BODY_RATE`), else 408; 0 turns it off.
    public var minBodyRate = 256
    /// Open connections per client address (`MONAI_LABEL_MAX_CONNECTIONS_PER_PEER`); beyond it that address's
    /// least recently active connection is closed to make room.
    public var maxConnectionsPerPeer = 1024
    /// The OHIF viewer build served at `/ohif/` (`MONAI_LABEL_OHIF_DIR`); empty means `defaultOHIFDirectory`.
    public var ohifDir = ""

    public init(appDir: URL, studies: String, conf: [String: String] = [:]) {
        self.appDir = appDir
        self.studies = studies
        self.conf = conf
    }

    /// Settings with every `MONAI_LABEL_*` variable of `environment` applied.
    public static func fromEnvironment(
        appDir: URL, studies: String, conf: [String: String],
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> Settings {
        var s = Settings(appDir: appDir, studies: studies, conf: conf)
        if let path = environment["PATH"] { s.executableSearchPath = path }
        func value(_ key: String) -> String? { environment["MONAI_LABEL_" + key] }
        func bool(_ key: String, _ into: inout Bool) throws {
            guard let v = value(key) else { return }
            switch v.lowercased() {
            case "true", "1", "yes", "on": into = true
            case "false", "0", "no", "off": into = false
            default: throw MONAILabelError.invalid("MONAI_LABEL_\(key) must be true or false, not '\(v)'")
            }
        }
        func int(_ key: String, _ into: inout Int) throws {
            guard let v = value(key) else { return }
            guard let i = Int(v.trimmingCharacters(in: .whitespaces)) else {
                throw MONAILabelError.invalid("MONAI_LABEL_\(key) must be an integer, not '\(v)'")
            }
            into = i
        }
        func list(_ key: String, _ into: inout [String]) throws {
            guard let v = value(key) else { return }
            guard let arr = (try? JSONValue.parse(v))?.arrayValue else {
                throw MONAILabelError.invalid("MONAI_LABEL_\(key) must be a JSON list of strings")
            }
            into = arr.compactMap(\.stringValue)
        }
        try list("CORS_ORIGINS", &s.corsOrigins)
        try bool("TASKS_TRAIN", &s.tasksTrain)
        try bool("TASKS_STRATEGY", &s.tasksStrategy)
        try bool("TASKS_SCORING", &s.tasksScoring)
        try bool("TASKS_BATCH_INFER", &s.tasksBatchInfer)
        try bool("DATASTORE_AUTO_RELOAD", &s.datastoreAutoReload)
        try bool("DATASTORE_READ_ONLY", &s.datastoreReadOnly)
        try list("DATASTORE_FILE_EXT", &s.datastoreFileExt)
        try bool("AUTO_UPDATE_SCORING", &s.autoUpdateScoring)
        try bool("SESSIONS", &s.sessions)
        if let p = value("SESSION_PATH") { s.sessionPath = p }
        try int("SESSION_EXPIRY", &s.sessionExpiry)
        try int("SESSION_MAX_BYTES", &s.sessionMaxBytes)
        if s.sessionMaxBytes < 1 {
            throw MONAILabelError.invalid("MONAI_LABEL_SESSION_MAX_BYTES must be at least 1, not \(s.sessionMaxBytes)")
        }
        try int("INFER_CONCURRENCY", &s.inferConcurrency)
        try int("INFER_TIMEOUT", &s.inferTimeout)
        try int("TRAIN_RANK_TIMEOUT", &s.trainRankTimeout)
        guard (1...86_400).contains(s.trainRankTimeout) else {
            throw MONAILabelError.invalid("MONAI_LABEL_TRAIN_RANK_TIMEOUT must be 1...86400 seconds, not \(s.trainRankTimeout)")
        }
        try int("INFER_QUEUE", &s.inferQueue)
        try int("TORCH_THREADS", &s.torchThreads)
        try int("MEMORY_TRIM_DELAY_MS", &s.memoryTrimDelayMs)
        try int("INFER_WORKERS", &s.inferWorkers)
        guard (0...64).contains(s.inferWorkers) else {
            throw MONAILabelError.invalid("MONAI_LABEL_INFER_WORKERS must be 0...64, not \(s.inferWorkers)")
        }
        if let v = value("SW_ACCUMULATE") {
            guard let mode = AccumulateMode(rawValue: v) else {
                throw MONAILabelError.invalid("MONAI_LABEL_SW_ACCUMULATE must be auto, device or cpu, not '\(v.prefix(40))'")
            }
            s.swAccumulate = mode
        }
        if let v = value("WORKER_ALLOCATOR") {
            guard let a = WorkerAllocator(rawValue: v) else {
                throw MONAILabelError.invalid("MONAI_LABEL_WORKER_ALLOCATOR must be auto, glibc or jemalloc, not '\(v.prefix(40))'")
            }
            guard a != .jemalloc || WorkerAllocator.jemallocInstalled else {
                throw MONAILabelError.invalid("MONAI_LABEL_WORKER_ALLOCATOR is jemalloc but libjemalloc2 is not installed")
            }
            s.workerAllocator = a
        }
        try bool("CUDNN_BENCHMARK", &s.cudnnBenchmark)
        if let v = value("WORKER_MAX_MEMORY") {
            guard let bytes = byteCount(v) else {
                throw MONAILabelError.invalid("MONAI_LABEL_WORKER_MAX_MEMORY must be a byte count like 4G or 512M, not '\(v)'")
            }
            s.workerMaxMemory = bytes
        }
        try int("SERVER_PORT", &s.serverPort)
        if let r = value("TASK_RUNNER") { s.taskRunner = r }
        try int("TRAIN_STOP_GRACE", &s.trainStopGrace)
        try int("AUTO_TRAIN_EVERY", &s.autoTrainEvery)
        try int("MAX_VOXELS", &s.maxVoxels)
        guard s.maxVoxels > 0 else { throw MONAILabelError.invalid("MONAI_LABEL_MAX_VOXELS must be positive") }
        try int("JSON_MAX_BYTES", &s.jsonMaxBytes)
        try int("FORM_FIELDS_MAX_BYTES", &s.formFieldsMaxBytes)
        try int("MIN_BODY_RATE", &s.minBodyRate)
        try int("MAX_CONNECTIONS_PER_PEER", &s.maxConnectionsPerPeer)
        for (key, v) in [("JSON_MAX_BYTES", s.jsonMaxBytes), ("FORM_FIELDS_MAX_BYTES", s.formFieldsMaxBytes),
                         ("MAX_CONNECTIONS_PER_PEER", s.maxConnectionsPerPeer)] where v < 1 {
            throw MONAILabelError.invalid("MONAI_LABEL_\(key) must be at least 1, not \(v)")
        }
        try int("DICOM_CONVERT_TIMEOUT", &s.dicomConvertTimeout)
        if s.dicomConvertTimeout < 1 {
            throw MONAILabelError.invalid("MONAI_LABEL_DICOM_CONVERT_TIMEOUT must be at least 1, not \(s.dicomConvertTimeout)")
        }
        if s.minBodyRate < 0 { throw MONAILabelError.invalid("MONAI_LABEL_MIN_BODY_RATE must be 0 or more, not \(s.minBodyRate)") }
        if let d = value("OHIF_DIR") { s.ohifDir = d }
        return s
    }

    /// Applies the limits the imaging layer reads process-wide (`MONAI_LABEL_MAX_VOXELS`) to this process, and
    /// exports them to the environment so train jobs and inference workers started from here apply them too.
    public func applyProcessLimits() {
        ImagingLimits.configure(maxVoxels: maxVoxels)
    }

    /// What child processes (jobs, model workers) run: `taskRunner`, else this process's own executable.
    public var childExecutable: URL {
        taskRunner.isEmpty
            ? URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath() : URL(fileURLWithPath: taskRunner)
    }

    /// The memory limit a model worker runs under: `workerMaxMemory`, else half of physical memory.
    public var effectiveWorkerMaxMemory: UInt64 {
        workerMaxMemory > 0 ? workerMaxMemory : ProcessInfo.processInfo.physicalMemory / 2
    }

    /// `4G`, `512M`, `1024k`, `3000000` (binary multiples, case-insensitive, an optional trailing `B`); nil when
    /// malformed, zero or beyond 2^62.
    static func byteCount(_ text: String) -> UInt64? {
        var t = text.trimmingCharacters(in: .whitespaces).uppercased()
        if t.hasSuffix("IB") { t.removeLast(2) } else if t.hasSuffix("B") { t.removeLast() }
        var shift: UInt64 = 0
        if let last = t.last, let i = "KMGT".firstIndex(of: last) {
            shift = 10 * UInt64("KMGT".distance(from: "KMGT".startIndex, to: i) + 1)
            t.removeLast()
        }
        guard let n = UInt64(t), n > 0, n <= (UInt64(1) << 62) >> shift else { return nil }
        return n << shift
    }

    /// Where sessions live: `MONAI_LABEL_SESSION_PATH`, else `~/.cache/monailabel/sessions` as upstream.
    public var sessionRoot: URL {
        if !sessionPath.isEmpty { return URL(fileURLWithPath: sessionPath) }
        return FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache/monailabel/sessions")
    }

    /// Where `scripts/install-ohif.sh` puts the viewer by default: `$XDG_DATA_HOME/monailabel/ohif`, else
    /// `~/.local/share/monailabel/ohif`.
    public static func defaultOHIFDirectory(environment: [String: String] = ProcessInfo.processInfo.environment) -> URL {
        if let xdg = environment["XDG_DATA_HOME"], xdg.hasPrefix("/") {
            return URL(fileURLWithPath: xdg).appendingPathComponent("monailabel/ohif")
        }
        return FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".local/share/monailabel/ohif")
    }

    /// The OHIF folder to serve: `MONAI_LABEL_OHIF_DIR` when set, else the default install place.
    public var ohifDirectory: URL { ohifDir.isEmpty ? Self.defaultOHIFDirectory() : URL(fileURLWithPath: ohifDir) }

    /// A `--conf` value read as a boolean the way upstream's apps do (`"true"` string compare, case-insensitive).
    public func confFlag(_ key: String, default d: Bool) -> Bool {
        guard let v = conf[key] else { return d }
        return v.lowercased() == "true"
    }
}
