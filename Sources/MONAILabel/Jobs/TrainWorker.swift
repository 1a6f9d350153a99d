import Foundation

/// `monailabel train_worker`: ranks 1... of a data-parallel train job. Started by the job's own process for
/// the ranks on its machine (`RankProcesses`), or by hand on another machine; builds its app on a read-only view
/// of its own studies folder and trains its shard with the request rank 0 hands out.
public enum TrainWorker {
    public static func run(appDir: String, studies: String, conf: [String: String], host: String, port: Int, rank: Int,
                           worldSize: Int, exitWithParent: Bool = false,
                           environment: [String: String] = ProcessInfo.processInfo.environment) throws
    {
        ChildProcess.unblockSignals()
        // A rank the job started must not outlive it; one started by hand on another machine has no such parent.
        if exitWithParent { ChildProcess.exitWhenOrphaned() }
        guard rank >= 1 else { throw MONAILabelError.invalid("--rank must be 1 or more: rank 0 is the job the server runs") }
        let app = URL(fileURLWithPath: appDir).standardizedFileURL
        var settings = try Settings.fromEnvironment(appDir: app, studies: studies, conf: conf, environment: environment)
        settings.inferWorkers = 0
        settings.sessions = false
        let rendezvous = try Rendezvous(host: host, port: port, rank: rank, worldSize: worldSize,
                                        timeout: .seconds(settings.trainRankTimeout))
        TorchRuntime.configureThreads(settings)
        settings.applyProcessLimits()
        let datastore = try LocalDatastore(root: URL(fileURLWithPath: studies), patterns: settings.datastoreFileExt,
                                           readOnly: true, autoReload: false)
        let monai = try MONAILabelApp(settings: settings, datastore: datastore)
        JobRunner.emit("Rank \(rank) of \(worldSize): joining \(host):\(port)")
        try DataParallelTraining.join(monai, rendezvous, log: { JobRunner.emit($0) })
        JobRunner.emit("Rank \(rank) finished")
    }
}
