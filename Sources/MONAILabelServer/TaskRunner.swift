import Foundation
import MONAILabel
import TorchKit

/// The child side of background jobs (`monailabel run_task`, upstream's `python -m
/// monailabel.interfaces.utils.app -m <method> -r <request>`): builds its own app on a read-only view of the
/// datastore, runs the method, streams log and progress lines on stdout (unbuffered, the server reads them
/// live) and writes the result JSON to `output`.
public enum TaskRunner {
    public static func run(method: String, request: String, appDir: String, studies: String, conf: [String: String],
                           output: String?, environment: [String: String] = ProcessInfo.processInfo.environment) throws
    {
        guard ["train", "scoring", "batch_infer"].contains(method) else {
            throw MONAILabelError.invalid("unknown task method '\(method)' (train, scoring, batch_infer)")
        }
        guard let req = (try? JSONValue.parse(request))?.objectValue else {
            throw MONAILabelError.invalid("--request must be a JSON object")
        }
        ChildProcess.unblockSignals()
        ChildProcess.exitWhenOrphaned { parent in emit("the server (pid \(parent)) is gone; stopping") }
        let app = URL(fileURLWithPath: appDir).standardizedFileURL
        var settings = try Settings.fromEnvironment(appDir: app, studies: studies, conf: conf, environment: environment)
        // This child is already isolated from the server: batch inference runs its models itself.
        settings.inferWorkers = 0
        try? Torch.setNumThreads(settings.torchThreads > 0 ? settings.torchThreads : Torch.defaultNumThreads)
        settings.applyProcessLimits()
        emit("Initializing App from: \(app.path); studies: \(studies); conf: \(conf.sorted { $0.key < $1.key })")
        // Read-only: the server owns the datastore document; the child must never write a stale copy of it.
        let datastore = try LocalDatastore(root: URL(fileURLWithPath: studies), patterns: settings.datastoreFileExt,
                                           readOnly: true, autoReload: false)
        let monai = try MONAILabelApp(settings: settings, datastore: datastore)
        let result: JSONValue
        if method == "scoring" {
            let name = req["method"]?.stringValue ?? ""
            let scorer = try monai.scoring.requireMethod(name)
            emit("Running scoring method \(name)")
            result = try scorer.score(request: req, datastore: datastore, log: { emit($0) }).json
        } else if method == "batch_infer" {
            result = .object(try monai.batchInfer(request: req, log: { emit($0) }))
        } else {
            result = .object(try monai.train(request: req, log: { emit($0) }, progress: { p in
                emit(JobBook.progressPrefix + JSONValue.object(p).compactString())
            }))
        }
        if let output {
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
