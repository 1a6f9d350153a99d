import DICOMwebDatastore
import Foundation
import HTTPServer
import MONAILabel

/// What `monailabel start_server` was asked for.
public struct ServerOptions: Sendable {
    public var appDir: String
    public var studies: String
    public var conf: [String: String]
    public var host: String
    public var port: Int
    public var sslCertfile: String?
    public var sslKeyfile: String?
    public var sslKeyfilePassword: String?
    public var workers: Int?
    public var queueLimit: Int?
    public var logLevel: LogLevel

    public init(
        appDir: String, studies: String, conf: [String: String] = [:], host: String = "0.0.0.0", port: Int = 8000,
        sslCertfile: String? = nil, sslKeyfile: String? = nil, sslKeyfilePassword: String? = nil, workers: Int? = nil,
        queueLimit: Int? = nil, logLevel: LogLevel = .info
    ) {
        self.appDir = appDir
        self.studies = studies
        self.conf = conf
        self.host = host
        self.port = port
        self.sslCertfile = sslCertfile
        self.sslKeyfile = sslKeyfile
        self.sslKeyfilePassword = sslKeyfilePassword
        self.workers = workers
        self.queueLimit = queueLimit
        self.logLevel = logLevel
    }
}

/// Versions for `monailabel --version`.
public enum ServerInfo {
    public static let version = "0.1.0"
    public static let apiVersion = "0.8.5"

    public static func versionText() -> String {
        "monailabel-swift: \(version) (MONAI Label REST API \(apiVersion))\n" + TorchRuntime.versionLines()
    }
}

/// A running MONAI Label server: the app, its HTTP server and housekeeping.
public final class RunningServer: Sendable {
    public let app: MONAILabelApp
    public let http: HTTPServer
    public let log: Logger

    init(app: MONAILabelApp, http: HTTPServer, log: Logger) {
        self.app = app
        self.http = http
        self.log = log
    }

    /// The bound port (the real one when started with port 0).
    public var port: Int { http.port ?? 0 }

    public func shutdown(gracePeriod: Double = 10) {
        app.shutdown()
        http.shutdown(gracePeriod: gracePeriod)
    }
    public func wait() { http.wait() }
}

public enum ServerMain {
    /// Builds the app from the options and the `MONAI_LABEL_*` environment and starts serving; returns once
    /// the socket is bound.
    public static func start(_ options: ServerOptions, environment: [String: String] = ProcessInfo.processInfo.environment)
        throws -> RunningServer
    {
        // Review-only mode (`--conf models none`) never loads libtorch.
        let appConf = try AppConf(options.conf)
        if !appConf.reviewOnly { try TorchRuntime.load() }
        let appDir = URL(fileURLWithPath: options.appDir).standardizedFileURL
        guard FileOps.isDirectory(appDir.path) else {
            throw MONAILabelError.notFound("App Directory does NOT exist: \(appDir.path)")
        }
        // A DICOMweb root selects the PACS datastore; its local cache folder then plays the studies folder (what
        // background-task children open read-only).
        let dicomWeb = DicomWebSettings.isDicomWeb(options.studies)
            ? try DicomWebSettings(studies: options.studies, environment: environment) : nil
        let studies = dicomWeb?.cacheDirectory ?? URL(fileURLWithPath: options.studies).standardizedFileURL
        try FileOps.makeDirectory(studies)
        var settings = try Settings.fromEnvironment(
            appDir: appDir, studies: studies.path, conf: options.conf, environment: environment)
        settings.serverPort = options.port
        let log = Logger(file: appDir.appendingPathComponent("logs/app.log"), level: options.logLevel)
        if !appConf.reviewOnly { TorchRuntime.configureThreads(settings) }
        settings.applyProcessLimits()
        // The zoo's token (`--conf auth_token`) is a credential: masked, as upstream masks MONAI_ZOO_AUTH_TOKEN.
        let shownConf = options.conf.map { (key: $0.key, value: $0.key == "auth_token" ? "*****" : $0.value) }
            .sorted { $0.key < $1.key }
        log.info("App: \(appDir.path); Studies: \(studies.path); Conf: \(shownConf)")
        for warning in appConf.warnings { log.warning(warning) }
        try PretrainedFetcher.fetchMissing(appDir: appDir, conf: options.conf, environment: environment, log: log)
        if !appConf.reviewOnly {
            try ZooDownloader.fetchMissing(appDir: appDir, conf: options.conf, environment: environment, log: log)
        }
        // Spooled bodies and results of servers killed outright (SIGKILL, OOM) stay in their private temp folders.
        let swept = ProcessTemp.sweepDead()
        if !swept.isEmpty { log.info("Removed temporary folders of exited processes: \(swept.joined(separator: ", "))") }
        let privateTemp = try ProcessTemp.makeFolder()

        let datastore: any Datastore
        if let dicomWeb {
            datastore = try DicomWebDatastore(settings: dicomWeb)
            log.info("DICOMweb datastore: \(dicomWeb.baseURL.absoluteString); cache: \(studies.path); QIDO page "
                + "\(dicomWeb.qidoPageSize); label expiry \(dicomWeb.labelExpiry) s; fetch by frame \(dicomWeb.fetchByFrame)")
            for note in dicomWeb.ignored { log.warning(note) }
        } else {
            datastore = try LocalDatastore(
                root: studies, patterns: settings.datastoreFileExt, readOnly: settings.datastoreReadOnly,
                autoReload: settings.datastoreAutoReload, validator: ImageValidation.validator)
            if let r = (datastore as? LocalDatastore)?.recovery {
                log.error("\(DatastoreDocument.fileName) could not be loaded (\(r.reason)); "
                    + (r.movedTo.map { "kept as \($0) and " } ?? "") + "the datastore was rebuilt from the files")
            }
        }
        let app = try MONAILabelApp(settings: settings, datastore: datastore)
        if let pacs = datastore as? DicomWebDatastore {
            pacs.setSegmentNames(segmentNames(app))
            pacs.setConverter(IsolatedDicomConverter(settings: settings))
        }
        log.info("Models: \(app.inferTasks.keys); Strategies: \(app.strategies.keys)"
            + (appConf.reviewOnly ? " (review-only: no model, libtorch not loaded)" : ""))
        for model in app.untrainedModels { log.warning(MONAILabelApp.untrainedWarning(model)) }
        for (model, why) in app.unavailableTrainers { log.warning("bundle \(model) serves inference only, no train task: \(why)") }
        if let pool = app.inferWorkers {
            pool.setLog { line in log.info(line, source: "infer-worker") }
            pool.start()
            log.info("Model workers: \(settings.inferWorkers) per device on \(pool.snapshot.devices.joined(separator: ", ")) "
                + "(memory limit \(settings.effectiveWorkerMaxMemory) bytes each)")
        } else if app.preloadsModels {
            // Models in this process (the workers warm their own): in the background, requests are served meanwhile.
            let warm = Thread {
                do {
                    let loaded = try app.preloadModels()
                    log.info("Preloaded models: \(loaded.joined(separator: ", "))")
                } catch {
                    log.warning("preloading the models failed: \(error)")
                }
                app.prewarmModels { log.info($0) }
            }
            warm.name = "model-prewarm"
            warm.stackSize = 8 << 20
            warm.start()
        }
        // Upstream scores at start-up when auto-update-scoring is on: model-based scores not computed with the
        // current weights are queued now, so epistemic strategies have scores without an explicit POST /scoring/.
        if settings.autoUpdateScoring {
            for job in app.scoring.refreshStale() {
                log.info("Scoring job \(job.id) queued for \(job.request["method"]?.stringValue ?? "?")")
            }
        }
        if let sessions = app.sessions {
            let purged = sessions.purgeExpired()
            log.info("Session Path: \(sessions.root.path); expiry (max): \(sessions.globalExpiry) s; purged \(purged)")
            SessionJanitor.start(sessions, log: log)
        }

        var config = HTTPServerConfiguration(host: options.host, port: options.port)
        if let cert = options.sslCertfile, let key = options.sslKeyfile {
            config.tls = TLSConfiguration(certificateFile: cert, keyFile: key, keyPassword: options.sslKeyfilePassword)
        }
        let cores = ProcessInfo.processInfo.activeProcessorCount
        config.workerCount = options.workers ?? max(8, 2 * cores)
        if let q = options.queueLimit { config.queueCapacity = q }
        config.serverName = "monailabel-swift/\(ServerInfo.version)"
        config.temporaryDirectory = privateTemp.path
        config.maxInMemoryBodyBytes = settings.jsonMaxBytes
        config.formLimits.maxTotalFieldBytes = settings.formFieldsMaxBytes
        config.formLimits.maxFieldBytes = settings.formFieldsMaxBytes
        config.minBodyRate = settings.minBodyRate
        config.maxConnectionsPerPeer = settings.maxConnectionsPerPeer
        // No route reads a GET, HEAD or DELETE body (upstream's take their input from the path and query).
        config.bodyIgnoredMethods = [.get, .head, .delete]
        config.accessLog = { entry in log.info(entry.line, source: "access") }
        config.errorLog = { message in log.error(message, source: "http") }
        let auth = try AuthSettings.fromEnvironment(environment)
        if auth.enable {
            log.info("Auth: enabled; " + (auth.builtin ? "built-in accounts" : "realm \(auth.realmURI)") + "; client \(auth.clientID)"
                + (auth.issuer.isEmpty ? "" : "; issuer \(auth.issuer)"))
            if config.tls == nil, !["127.0.0.1", "::1", "localhost"].contains(options.host) {
                log.warning("Auth is enabled without TLS on \(options.host): passwords and tokens cross the network in "
                    + "clear text. Start with --ssl_certfile and --ssl_keyfile.")
            }
        }
        let http = HTTPServer(
            configuration: config,
            router: makeRouter(app: app, log: log, corsOrigins: settings.corsOrigins,
                               authenticator: try Authenticator.make(settings: auth, appDir: appDir, log: log)))
        try http.start()
        let scheme = config.tls == nil ? "http" : "https"
        let shownHost = options.host == "0.0.0.0" || options.host == "::" ? "127.0.0.1" : options.host
        log.info("Serving MONAI Label on \(scheme)://\(shownHost):\(http.port ?? options.port) (\(http.boundAddresses.joined(separator: ", ")))")
        return RunningServer(app: app, http: http, log: log)
    }

    /// Label names by value over the app's models (`labels` as a name -> value map or a list), to name the
    /// segments of DICOM SEGs.
    static func segmentNames(_ app: MONAILabelApp) -> [Int: String] {
        var out: [Int: String] = [:]
        for name in app.inferTasks.keys.sorted() {
            guard let task = app.inferTasks[name] else { continue }
            switch task.labels {
            case .object(let o):
                for (label, v) in o { if let i = v.intValue, i > 0, out[i] == nil { out[i] = label } }
            case .array(let a):
                for (k, v) in a.enumerated() { if let label = v.stringValue, out[k + 1] == nil { out[k + 1] = label } }
            case .string(let label):
                if out[1] == nil { out[1] = label }
            default: break
            }
        }
        return out
    }

    /// `start_server`: start, stop on SIGINT/SIGTERM, return when stopped.
    public static func run(_ options: ServerOptions) throws {
        let server = try start(options)
        HTTPServer.stopOnSignals(server.http)
        server.wait()
        server.app.shutdown()
        try? FileManager.default.removeItem(at: ProcessTemp.folder())
        server.log.info("Server stopped")
    }

    /// `start_server --dryrun`: writes `<app>/.env` with `export KEY=VALUE` lines for the settings, as upstream.
    public static func writeDotEnv(_ options: ServerOptions) throws -> String {
        let appDir = URL(fileURLWithPath: options.appDir).standardizedFileURL
        guard FileOps.isDirectory(appDir.path) else {
            throw MONAILabelError.notFound("App Directory does NOT exist: \(appDir.path)")
        }
        var conf = JSONObject()
        for (k, v) in options.conf.sorted(by: { $0.key < $1.key }) { conf[k] = .string(v) }
        let lines = [
            "export MONAI_LABEL_APP_DIR=\(appDir.path)",
            "export MONAI_LABEL_STUDIES=\(URL(fileURLWithPath: options.studies).standardizedFileURL.path)",
            "export MONAI_LABEL_SERVER_PORT=\(options.port)",
            "export MONAI_LABEL_APP_CONF='\(JSONValue.object(conf).compactString())'",
        ]
        let url = appDir.appendingPathComponent(".env")
        try FileOps.atomicWrite(Array((lines.joined(separator: "\n") + "\n").utf8), to: url)
        return url.path
    }
}

/// Purges expired sessions every five minutes, as upstream's scheduler does.
enum SessionJanitor {
    static func start(_ sessions: SessionStore, log: Logger) {
        let t = Thread {
            while true {
                Thread.sleep(forTimeInterval: 300)
                let n = sessions.purgeExpired()
                if n > 0 { log.info("Purged \(n) expired sessions") }
            }
        }
        t.name = "session-janitor"
        t.start()
    }
}
