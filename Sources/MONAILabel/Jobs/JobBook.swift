import Foundation

/// Upstream's task statuses (spec section 2.4).
public enum JobStatus: String, Sendable {
    case submitted = "SUBMITTED", running = "RUNNING", done = "DONE", error = "ERROR", stopped = "STOPPED"

    public var isFinished: Bool { self == .done || self == .error || self == .stopped }
}

/// One background task as `GET /train/` shows it.
public struct Job: Sendable {
    public var id: String
    public var request: JSONObject
    public var status: JobStatus
    public var startTS: String
    public var endTS: String?
    /// The last `JobBook.detailLines` lines the child printed.
    public var details: [String] = []
    /// Not in upstream's dict: epoch, total_epochs, iteration, total_iterations, eta.
    public var progress: JSONObject?

    /// Upstream's dict: id, status, request, start_ts, then details once started, end_ts once finished.
    public var json: JSONValue {
        var o = JSONObject()
        o["id"] = .string(id)
        o["status"] = .string(status.rawValue)
        o["request"] = .object(request)
        o["start_ts"] = .string(startTS)
        if status != .submitted || !details.isEmpty { o["details"] = .array(details.map { .string($0) }) }
        if let progress { o["progress"] = .object(progress) }
        if let endTS { o["end_ts"] = .string(endTS) }
        return .object(o)
    }
}

/// The task list of one job kind (train, scoring, batch inference) as a pure state machine: FIFO, one running
/// at a time, upstream's 429 rule. `BackgroundJobs` performs the process work its transitions call for.
public struct JobBook: Sendable {
    public static let detailLines = 20
    /// Lines starting with this carry a progress JSON object instead of log text.
    public static let progressPrefix = "MONAI_LABEL_PROGRESS "

    public private(set) var jobs: [Job] = []
    public private(set) var runningID: String?

    public init() {}

    public enum SubmitOutcome: Sendable, Equatable {
        /// A job is running and the caller did not ask to queue: upstream's 429.
        case busy
        /// Start this job now.
        case start(String)
        /// Queued behind the running job.
        case queued(String)
    }

    /// Adds a job for `request`; queued jobs do not count as running, as upstream.
    public mutating func submit(id: String, request: JSONObject, enqueue: Bool, now: String) -> SubmitOutcome {
        if runningID != nil && !enqueue { return .busy }
        jobs.append(Job(id: id, request: request, status: .submitted, startTS: now))
        if runningID == nil && !jobs.contains(where: { $0.status == .submitted && $0.id != id }) {
            runningID = id
            return .start(id)
        }
        return .queued(id)
    }

    /// The child of `id` runs; false when the job was stopped before it started (do not launch it).
    public mutating func started(_ id: String) -> Bool {
        guard let i = index(id), jobs[i].status == .submitted else { return false }
        jobs[i].status = .running
        runningID = id
        // Upstream's runner rewrites `gpus` into the request when it starts the child.
        if jobs[i].request["gpus"] == nil { jobs[i].request["gpus"] = "all" }
        return true
    }

    /// A line of the child's output: progress, or a log line kept in the rolling `details`.
    public mutating func output(_ id: String, line: String) {
        guard let i = index(id) else { return }
        if line.hasPrefix(Self.progressPrefix) {
            if let o = (try? JSONValue.parse(String(line.dropFirst(Self.progressPrefix.count))))?.objectValue {
                jobs[i].progress = o
            }
            return
        }
        jobs[i].details.append(line)
        if jobs[i].details.count > Self.detailLines { jobs[i].details.removeFirst(jobs[i].details.count - Self.detailLines) }
    }

    /// The child of `id` ended (`exitCode` 0 = success; nil when killed by a signal or not started). Returns
    /// the next queued job to start, if any.
    public mutating func finished(_ id: String, exitCode: Int32?, reason: String? = nil, now: String) -> String? {
        if let i = index(id) {
            if jobs[i].status != .stopped { jobs[i].status = exitCode == 0 ? .done : .error }
            if jobs[i].endTS == nil { jobs[i].endTS = now }
            if let reason, jobs[i].status == .error { output(id, line: reason) }
        }
        if runningID == id { runningID = nil }
        guard runningID == nil, let next = jobs.first(where: { $0.status == .submitted }) else { return nil }
        runningID = next.id
        return next.id
    }

    /// `DELETE /train/`: marks the running job STOPPED and returns it (the caller kills its process); nil when
    /// nothing runs. Queued jobs stay queued, as upstream.
    public mutating func stop(now: String, taskName: String = "Train") -> Job? {
        guard let id = runningID, let i = index(id), jobs[i].status == .running || jobs[i].status == .submitted
        else { return nil }
        jobs[i].status = .stopped
        jobs[i].endTS = now
        // Slicer shows `details[-1]` after a stop.
        if jobs[i].details.isEmpty { jobs[i].details.append("\(taskName) Task stopped before it wrote any output") }
        return jobs[i]
    }

    public func job(_ id: String) -> Job? { index(id).map { jobs[$0] } }

    public var running: Job? { runningID.flatMap { job($0) }.flatMap { $0.status == .running ? $0 : nil } }

    private func index(_ id: String) -> Int? { jobs.firstIndex { $0.id == id } }
}
