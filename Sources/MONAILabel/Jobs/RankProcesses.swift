import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The local ranks 1... of a data-parallel train job: `monailabel train_worker` children of the job's own
/// process (rank 0), their output forwarded into the job's log with a `[rank N]` prefix, their exits watched.
/// A rank that dies while the job runs ends the whole job at once: the others are killed and `onFailure`
/// hears which rank died, how, and its last lines (rank 0 itself may be blocked in a collective that would
/// only fail after the group's timeout).
final class RankProcesses: @unchecked Sendable {
    private let lock = NSLock()
    private var processes: [Int: Process] = [:]
    private var stopping = false
    private let tails: [Int: OutputTail]

    /// Starts ranks `ranks` of `worldSize`, joining the store at `127.0.0.1:port`, each with `torchThreads`
    /// intra-op threads when given.
    init(ranks: Range<Int>, worldSize: Int, port: Int, settings: Settings, torchThreads: Int?, emit: @escaping @Sendable (String) -> Void,
         onFailure: @escaping @Sendable (String) -> Void) throws
    {
        var tails: [Int: OutputTail] = [:]
        for r in ranks { tails[r] = OutputTail() }
        self.tails = tails
        for rank in ranks {
            let p = Process()
            p.executableURL = settings.childExecutable
            var args = ["train_worker", "--rendezvous", "127.0.0.1:\(port)", "--rank", String(rank),
                        "--world-size", String(worldSize), "--exit-with-parent", "--app", settings.appDir.path,
                        "--studies", settings.studies]
            for (k, v) in settings.conf.sorted(by: { $0.key < $1.key }) { args += ["--conf", k, v] }
            p.arguments = args
            var env = ProcessInfo.processInfo.environment
            // As for model workers: a crashing rank must end at once, not symbolicate for minutes.
            env["SWIFT_BACKTRACE"] = "enable=no"
            if let torchThreads { env["MONAI_LABEL_TORCH_THREADS"] = String(torchThreads) }
            p.environment = env
            // Not a Pipe: one another spawn inherits keeps its reader waiting (see `ChildOutput`).
            let output = try ChildOutput()
            p.standardOutput = output.writing
            p.standardError = output.writing
            p.standardInput = FileHandle.nullDevice
            let tail = tails[rank] ?? OutputTail()
            p.terminationHandler = { [weak self] proc in self?.exited(rank, proc, onFailure: onFailure) }
            defer { output.closeChildEnd() }
            try p.run()
            lock.withLock { processes[rank] = p }
            let reader = Thread {
                BackgroundJobs.readLines(output.reading) { line in
                    tail.append(line)
                    emit("[rank \(rank)] \(line)")
                }
            }
            reader.name = "rank-\(rank)-output"
            reader.start()
        }
    }

    /// Waits for every rank to end on its own (the job is done), killing those still running after `grace`.
    func finish(grace: Double) {
        let deadline = Date().addingTimeInterval(grace)
        while Date() < deadline, lock.withLock({ processes.values.contains { !$0.hasExited } }) { usleep(50_000) }
        stopAll()
    }

    /// Kills every rank still running (the job failed or was stopped).
    func stopAll() {
        let running = lock.withLock { () -> [Process] in
            stopping = true
            return processes.values.filter { !$0.hasExited }
        }
        for p in running { kill(p.processIdentifier, SIGKILL) }
        for p in running { _ = p.waitForExit() }
    }

    private func exited(_ rank: Int, _ p: Process, onFailure: @Sendable (String) -> Void) {
        let clean = p.terminationReason == .exit && p.terminationStatus == 0
        let others = lock.withLock { () -> [Process]? in
            guard !clean, !stopping else { return nil }
            stopping = true
            return processes.values.filter(\.isRunning)
        }
        guard let others else { return }
        for other in others { kill(other.processIdentifier, SIGKILL) }
        let how = p.terminationReason == .exit ? "exited with status \(p.terminationStatus)"
            : "was killed by signal \(p.terminationStatus)"
        let lines = tails[rank]?.lines() ?? []
        onFailure("rank \(rank) \(how)" + (lines.isEmpty ? "" : "; its last output: " + lines.joined(separator: " | ")))
    }
}
