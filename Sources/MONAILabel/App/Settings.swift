import Foundation

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
    public var inferConcurrency = -1
    public var inferTimeout = 600
    /// Inferences admitted at once (running or waiting for the model); more get 503.
    public var inferQueue = 4
    /// libtorch intra-op threads (`MONAI_LABEL_TORCH_THREADS`); 0 means one per core.
    public var torchThreads = 0
    public var serverPort = 8000
    /// The executable train jobs run as (`MONAI_LABEL_TASK_RUNNER`); empty means this process's own.
    public var taskRunner = ""
    /// Seconds a stopped train job gets between SIGTERM and SIGKILL (`MONAI_LABEL_TRAIN_STOP_GRACE`).
    public var trainStopGrace = 3
    /// Queue a train job for every trainer after this many newly saved final labels
    /// (`MONAI_LABEL_AUTO_TRAIN_EVERY`); 0 turns auto-training off.
    public var autoTrainEvery = 0
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
        try int("INFER_QUEUE", &s.inferQueue)
        try int("TORCH_THREADS", &s.torchThreads)
        try int("SERVER_PORT", &s.serverPort)
        if let r = value("TASK_RUNNER") { s.taskRunner = r }
        try int("TRAIN_STOP_GRACE", &s.trainStopGrace)
        try int("AUTO_TRAIN_EVERY", &s.autoTrainEvery)
        if let d = value("OHIF_DIR") { s.ohifDir = d }
        return s
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
