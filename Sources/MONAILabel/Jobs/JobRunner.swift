import Foundation

/// The child side of background jobs (`monailabel run_task`, upstream's `python -m
/// monailabel.interfaces.utils.app -m <method> -r <request>`): builds its own app on a read-only view of the
/// datastore, decodes the request into its typed settings, runs it, streams log and progress lines on stdout
/// (unbuffered, the server reads them live) and writes the result JSON to `output`.
public enum JobRunner {
    public static func run(_ child: JobChild, environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        ChildProcess.unblockSignals()
        ChildProcess.exitWhenOrphaned { parent in emit("the server (pid \(parent)) is gone; stopping") }
        let app = URL(fileURLWithPath: child.appDir).standardizedFileURL
        let studies = child.studies, conf = child.conf
        var settings = try Settings.fromEnvironment(appDir: app, studies: studies, conf: conf, environment: environment)
        // This child is already isolated from the server: batch inference runs its models itself.
        settings.inferWorkers = 0
        TorchRuntime.configureThreads(settings)
        settings.applyProcessLimits()
        emit("Initializing App from: \(app.path); studies: \(studies); conf: \(conf.sorted { $0.key < $1.key })")
        // Read-only: the server owns the datastore document; the child must never write a stale copy of it.
        let datastore = try LocalDatastore(root: URL(fileURLWithPath: studies), patterns: settings.datastoreFileExt,
                                           readOnly: true, autoReload: false)
        let monai = try MONAILabelApp(settings: settings, datastore: datastore)
        let result: JSONValue
        switch try monai.jobRequest(child.kind, child.request) {
        case .scoring(let r):
            let scorer = try monai.scoring.requireMethod(r.method)
            emit("Running scoring method \(r.method)")
            result = try scorer.score(request: r.json, datastore: datastore, log: { emit($0) }).json
        case .batchInfer(let r):
            result = .object(try monai.batchInfer(r, log: { emit($0) }))
        case .train(let r):
            let progress: (JSONObject) -> Void = { p in emit(JobBook.progressPrefix + JSONValue.object(p).compactString()) }
            if r.settings.parallel.worldSize > 1 {
                result = .object(try DataParallelTraining.lead(monai, r, log: { emit($0) }, progress: progress))
            } else {
                result = .object(try monai.train(r, log: { emit($0) }, progress: progress))
            }
        }
        if let output = child.output {
            try FileOps.atomicWrite(result.compactBytes(), to: URL(fileURLWithPath: output))
        }
    }

    /// One line on stdout, written at once (a pipe would otherwise buffer it).
    static func emit(_ line: String) {
        let f = DateFormatter()
        f.dateFormat = "yyyy-MM-dd HH:mm:ss,SSS"
        f.locale = Locale(identifier: "en_US_POSIX")
        let text = line.hasPrefix(JobBook.progressPrefix) ? line : "\(f.string(from: Date())) - INFO - \(line)"
        FileHandle.standardOutput.write(Data((text + "\n").utf8))
    }
}
