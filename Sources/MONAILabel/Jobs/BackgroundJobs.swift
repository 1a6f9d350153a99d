import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Runs the jobs of one kind in child processes of the server's own executable (`JobLaunch`), one at a time,
/// so a crash, an out-of-memory kill or a SIGKILL of a job leaves the server serving. The child's stdout and stderr become the job's `details`; lines with `JobBook.progressPrefix` its
/// progress. Bookkeeping is `JobBook`; this class only launches, reads, waits and kills.
public final class BackgroundJobs: @unchecked Sendable {
    public let kind: JobKind
    private let launcher: JobLaunch
    /// Seconds between SIGTERM and SIGKILL when a job is stopped.
    private let stopGrace: Double
    private let cond = NSCondition()
    private var book = JobBook()
    private var processes: [String: Process] = [:]
    private var results: [String: JSONValue] = [:]
    private let onResult: (@Sendable (JSONValue) throws -> JSONValue)?
    private var shuttingDown = false

    /// - Parameter onResult: runs in the server on the result of every successful child before the job shows
    ///   DONE (scoring applies its datastore updates there); what it returns is what `wait` hands back, and
    ///   an error it throws marks the job ERROR.
    init(kind: JobKind, launch: JobLaunch, stopGrace: Double = 3,
         onResult: (@Sendable (JSONValue) throws -> JSONValue)? = nil) {
        self.kind = kind
        self.onResult = onResult
        self.launcher = launch
        self.stopGrace = stopGrace
    }

    /// Upstream's `++++++++++ Train Task is Already Running`.
    public var busyMessage: String { "++++++++++ \(kind.taskName) Task is Already Running" }

    /// Submits a job for a request already decoded (`MONAILabelApp.submitJob` picks the list of its kind);
    /// throws `.busy` when one runs and `enqueue` is false. Returns the new job (SUBMITTED).
    func submit(_ request: JSONObject, enqueue: Bool) throws -> Job {
        let id = UUID().uuidString.lowercased()
        cond.lock()
        let outcome = book.submit(id: id, request: request, enqueue: enqueue, now: Self.timestamp())
        let job = book.job(id)
        cond.unlock()
        switch outcome {
        case .busy: throw MONAILabelError(.busy, busyMessage)
        case .start(let id): launch(id)
        case .queued: break
        }
        guard let job else { throw MONAILabelError.io("job \(id) vanished") }
        return job
    }

    /// Waits until job `id` has finished and returns it with the result the child wrote, if any.
    public func wait(_ id: String) -> (Job?, JSONValue?) {
        cond.lock()
        while let j = book.job(id), !j.status.isFinished { cond.wait() }
        let job = book.job(id)
        let value = results.removeValue(forKey: id)
        cond.unlock()
        return (job, value)
    }

    /// `DELETE`: stops the running job (SIGTERM, SIGKILL after the grace period) and returns it, STOPPED.
    public func stop() -> Job? {
        cond.lock()
        let job = book.stop(now: Self.timestamp(), taskName: kind.taskName)
        let process = job.flatMap { processes[$0.id] }
        cond.broadcast()
        cond.unlock()
        if let process { terminate(process) }
        return job
    }

    /// Stops everything at server shutdown.
    public func shutdown() {
        cond.lock()
        shuttingDown = true
        cond.unlock()
        _ = stop()
    }

    public var latest: Job? { locked { book.jobs.last } }
    public var all: [Job] { locked { book.jobs } }
    public var running: Job? { locked { book.running } }
    public func job(_ id: String) -> Job? { locked { book.job(id) } }

    /// The running child's process id (tests kill it to simulate a crash).
    public var runningPID: Int32? {
        locked { book.running.flatMap { processes[$0.id] }.map { $0.processIdentifier } }
    }

    private func locked<T>(_ body: () -> T) -> T {
        cond.lock()
        defer { cond.unlock() }
        return body()
    }

    private func launch(_ id: String) {
        let t = Thread { [self] in runChild(id) }
        t.name = "\(kind.rawValue)-job"
        t.start()
    }

    private func runChild(_ id: String) {
        cond.lock()
        guard !shuttingDown, book.started(id), let request = book.job(id)?.request else {
            let next = book.finished(id, exitCode: nil, now: Self.timestamp())
            cond.broadcast()
            cond.unlock()
            if let next { launch(next) }
            return
        }
        let resultFile = FileManager.default.temporaryDirectory
            .appendingPathComponent("monailabel-\(kind.rawValue)-\(id).json")
        let p = Process()
        p.executableURL = launcher.executable
        p.arguments = launcher.arguments(kind: kind, request: request, resultFile: resultFile)
        var env = ProcessInfo.processInfo.environment
        for (k, v) in launcher.environment { env[k] = v }
        p.environment = env
        var launchError: String?
        // Read to end-of-file below: a channel no other child can inherit (see `ChildOutput`).
        let output: ChildOutput?
        do {
            output = try ChildOutput()
        } catch {
            output = nil
            launchError = "cannot start \(launcher.executable.path): \(error)"
        }
        if let output {
            p.standardOutput = output.writing
            p.standardError = output.writing
            p.standardInput = FileHandle.nullDevice
            do {
                try p.run()
                processes[id] = p
            } catch {
                launchError = "cannot start \(launcher.executable.path): \(error)"
            }
            output.closeChildEnd()
        }
        cond.broadcast()
        cond.unlock()

        var exitCode: Int32?
        if launchError == nil, let output {
            Self.readLines(output.reading) { line in
                self.cond.lock()
                self.book.output(id, line: line)
                self.cond.unlock()
            }
            // Not waitUntilExit(): Foundation can report the exit only when an unrelated process exits too.
            switch p.waitForExit() {
            case .exited(let status):
                exitCode = status
                if status != 0 { launchError = "the \(kind.rawValue) process exited with status \(status)" }
            case .signalled(let signal):
                launchError = "the \(kind.rawValue) process was killed by signal \(signal)"
            }
        }
        var result: JSONValue?
        if exitCode == 0 {
            result = FileManager.default.contents(atPath: resultFile.path).flatMap { try? JSONValue.parse(Array($0)) }
            if let value = result, let onResult, locked({ book.job(id)?.status == .running }) {
                do { result = try onResult(value) } catch {
                    result = nil
                    exitCode = 1
                    launchError = "the \(kind.rawValue) result could not be applied: \(error)"
                }
            }
        }
        try? FileManager.default.removeItem(at: resultFile)
        cond.lock()
        if let result { results[id] = result }
        processes[id] = nil
        let next = book.finished(id, exitCode: exitCode, reason: launchError, now: Self.timestamp())
        let stopNext = shuttingDown
        cond.broadcast()
        cond.unlock()
        if let next, !stopNext { launch(next) }
    }

    private func terminate(_ p: Process) {
        let pid = p.processIdentifier
        guard pid > 0 else { return }
        kill(pid, SIGTERM)
        let grace = stopGrace
        let t = Thread {
            let deadline = Date().addingTimeInterval(grace)
            while !p.hasExited && Date() < deadline { usleep(50_000) }
            if !p.hasExited { kill(pid, SIGKILL) }
        }
        t.name = "\(kind.rawValue)-stop"
        t.start()
    }

    /// Splits a child's output into lines as it arrives (also the ranks' of a data-parallel job).
    static func readLines(_ h: FileHandle, _ emit: (String) -> Void) {
        var buffer: [UInt8] = []
        while true {
            let data = h.availableData
            if data.isEmpty { break }
            buffer += data
            while let nl = buffer.firstIndex(of: 10) {
                emit(String(decoding: buffer[..<nl], as: UTF8.self))
                buffer.removeSubrange(...nl)
            }
        }
        if !buffer.isEmpty { emit(String(decoding: buffer, as: UTF8.self)) }
    }

    /// Upstream's `YYYY-MM-DD HH:MM:SS` (local time, as Python's `datetime.today()`).
    static func timestamp() -> String {
        let f = DateFormatter()
        f.dateFormat = "yyyy-MM-dd HH:mm:ss"
        f.locale = Locale(identifier: "en_US_POSIX")
        return f.string(from: Date())
    }
}
