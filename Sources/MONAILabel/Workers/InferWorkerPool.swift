import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Runs inferences in long-lived model worker processes of the server's own executable (`monailabel
/// infer_worker`), the server's half of a frontend/backend split: a crash, abort or out-of-memory kill in
/// tensor code ends a worker and fails only the request it ran; the pool restarts the worker (with backoff)
/// and the server keeps answering. Requests wait in FIFO order for an idle worker; a request whose client
/// leaves or that runs past its time limit is stopped by killing its worker.
///
/// Each worker talks over a Unix socketpair (its stdin) in `WorkerWire` frames; volumes travel as file paths.
/// A worker's `TMPDIR` is a private folder of the server's temporary folder: its result files are moved out
/// of it into the server's own results folder (the server deletes them after the response), and whatever a
/// dead worker left there is removed with the folder.
public final class InferWorkerPool: @unchecked Sendable {
    /// How to start a worker.
    public struct Launch: Sendable {
        public var executable: URL
        public var arguments: [String]
        public var environment: [String: String]
        /// Data-segment limit applied in the worker (`--max-memory`).
        public var maxMemory: UInt64

        public init(executable: URL, arguments: [String], environment: [String: String], maxMemory: UInt64) {
            self.executable = executable
            self.arguments = arguments
            self.environment = environment
            self.maxMemory = maxMemory
        }
    }

    public let launch: Launch
    /// Seconds a starting worker may take to build its app before it counts as failed.
    public let startTimeout: Double
    private let logSink: Mutex<@Sendable (String) -> Void>
    private let cond = NSCondition()
    private var state: WorkerPoolState
    private var handles: [Int: WorkerHandle] = [:]
    private var shuttingDown = false

    /// `workers` model workers per device of `devices` (`DeviceRouting.backendGroups()`: one group per GPU, or
    /// one `cpu` group); each worker is started with its device (`MONAI_LABEL_WORKER_DEVICE`).
    public init(workers: Int, devices: [String] = ["cpu"], launch: Launch, startTimeout: Double = 120,
                log: @escaping @Sendable (String) -> Void = { _ in }) {
        self.launch = launch
        self.startTimeout = startTimeout
        logSink = Mutex(log)
        state = WorkerPoolState(workers: workers, devices: devices)
    }

    deinit { shutdown() }

    /// Where the pool reports worker starts, deaths and output lines (the server's log).
    public func setLog(_ log: @escaping @Sendable (String) -> Void) {
        logSink.withLock { $0 = log }
    }

    private func log(_ line: String) {
        let sink = logSink.withLock { $0 }
        sink(line)
    }

    /// Starts every worker now. The server calls this at start-up so the first request finds a worker with its
    /// app built and a broken runner shows in the log at once; an app built in code (tests) starts its workers
    /// on the first request instead.
    public func start() {
        cond.lock()
        kickStarts()
        cond.unlock()
    }

    /// Kills every worker; waiting requests fail with `.unavailable`.
    public func shutdown() {
        cond.lock()
        shuttingDown = true
        let all = Array(handles.values)
        handles.removeAll()
        cond.broadcast()
        cond.unlock()
        for h in all { h.kill() }
        for h in all { h.reap(); h.removeFolder() }
    }

    /// Requests running on a worker and waiting for one.
    public var counts: (running: Int, waiting: Int) {
        cond.lock()
        defer { cond.unlock() }
        return (state.busyCount, state.queue.count)
    }

    /// A snapshot of the bookkeeping (tests and `report`).
    public var snapshot: WorkerPoolState {
        cond.lock()
        defer { cond.unlock() }
        return state
    }

    /// `GET /infer/`'s workers and queue.
    public func report() -> (workers: [JSONValue], waiting: [JSONValue]) {
        let now = Self.now()
        let s = snapshot
        let workers: [JSONValue] = s.slots.enumerated().map { i, w in
            var o: JSONObject = [
                "worker": .int(i), "device": .string(w.device), "state": .string(w.state.rawValue),
                "pid": w.pid.map { .int(Int($0)) } ?? .null,
                "models_loaded": .array(w.models.map { .string($0) }), "requests": .int(w.requests),
                "restarts": .int(w.restarts),
            ]
            if let e = w.lastExit { o["last_exit"] = .string(e) }
            if w.state == .down, w.retryAt > now { o["restart_in_seconds"] = .double(((w.retryAt - now) * 10).rounded() / 10) }
            return .object(o)
        }
        let waiting: [JSONValue] = s.queue.enumerated().map { i, q in
            ["position": .int(i + 1), "model": .string(q.model),
             "waiting_seconds": .double((max(0, now - q.since) * 1000).rounded() / 1000)]
        }
        return (workers, waiting)
    }

    /// Runs `job` on a worker: waits for an idle one in FIFO order (of `device`'s group when it names one the
    /// pool has, else of the least-loaded device), sends the job, waits for the reply.
    /// Throws the worker's domain error as raised there; `.timedOut` past `timeout` seconds; `.unavailable`
    /// when the client left (`isCancelled`) or no worker can start; `.internalError` when the worker died.
    public func run(_ job: WorkerJob, device: String? = nil, isCancelled: (@Sendable () -> Bool)? = nil,
                    timeout: Double? = nil) throws -> InferResult
    {
        let frame = WorkerWire.frame(job.json)
        guard frame.count - 4 <= WorkerWire.maxFrame else {
            throw MONAILabelError.invalid("params are too large (\(frame.count - 4) bytes; at most \(WorkerWire.maxFrame))")
        }
        let deadline = timeout.flatMap { $0 > 0 ? Self.now() + $0 : nil }
        var (slot, handle) = try claimWorker(model: job.model, device: device, isCancelled: isCancelled, deadline: deadline,
                                             timeout: timeout)
        // A worker that died idle a moment ago (before its exit was booked) is not this request's failure.
        while !handle.process.isRunning {
            _ = workerLost(slot, handle, cause: .died)
            (slot, handle) = try claimWorker(model: job.model, device: device, isCancelled: isCancelled, deadline: deadline,
                                             timeout: timeout)
        }
        // A death's detail shows what the worker printed while running this request, not before.
        handle.tail.clear()
        guard WorkerWire.writeAll(handle.fd, frame) else {
            throw workerLost(slot, handle, cause: .died)
        }
        switch handle.await(deadline: deadline, isCancelled: isCancelled) {
        case .frame(let v):
            let reply: Result<InferResult, MONAILabelError>
            do {
                reply = try WorkerWire.decodeReply(v)
            } catch {
                throw workerLost(slot, handle, cause: .protocolError("\(error)"))
            }
            var outcome = reply
            if case .success(var r) = reply, let f = r.file {
                do {
                    r.file = try takeOver(f, from: handle)
                    outcome = .success(r)
                } catch {
                    outcome = .failure(error as? MONAILabelError ?? .io("cannot take over the model worker's result"))
                }
            }
            cond.lock()
            state.finished(slot, model: job.model)
            cond.broadcast()
            cond.unlock()
            return try outcome.get()
        case .eof:
            throw workerLost(slot, handle, cause: .died)
        case .timedOut:
            throw workerLost(slot, handle, cause: .timedOut(timeout ?? 0))
        case .cancelled:
            throw workerLost(slot, handle, cause: .cancelled)
        case .broken(let why):
            throw workerLost(slot, handle, cause: .protocolError(why))
        }
    }

    private func claimWorker(model: String, device: String?, isCancelled: (@Sendable () -> Bool)?, deadline: Double?,
                             timeout: Double?) throws -> (Int, WorkerHandle)
    {
        cond.lock()
        defer { cond.unlock() }
        let ticket = state.enqueue(model: model, device: device, now: Self.now())
        let failuresSeen = state.startFailures
        while true {
            if shuttingDown {
                state.leave(ticket)
                throw MONAILabelError(.unavailable, "The server is shutting down")
            }
            kickStarts()
            if let slot = state.claim(ticket) {
                if let h = handles[slot] {
                    cond.broadcast()
                    return (slot, h)
                }
                // An idle slot always has a handle; treat a missing one as a dead worker.
                state.died(slot, reason: "worker vanished", now: Self.now())
                continue
            }
            if state.startFailures > failuresSeen && !state.hasLiveWorker {
                state.leave(ticket)
                cond.broadcast()
                let retry = state.nextRetry.map { max(0, $0 - Self.now()) } ?? 0
                throw MONAILabelError(.unavailable, "The model worker could not start (\(state.lastStartError ?? "unknown reason")); "
                    + "the server retries in \(Int(retry.rounded(.up))) s")
            }
            if isCancelled?() == true {
                state.leave(ticket)
                cond.broadcast()
                throw MONAILabelError(.unavailable, "The client disconnected; the inference was not started")
            }
            if let deadline, Self.now() >= deadline {
                state.leave(ticket)
                cond.broadcast()
                throw MONAILabelError(.timedOut, "Inference waited longer than MONAI_LABEL_INFER_TIMEOUT (\(Int(timeout ?? 0)) s) for a model worker")
            }
            _ = cond.wait(until: Date().addingTimeInterval(0.1))
        }
    }

    private enum LossCause {
        case died, timedOut(Double), cancelled, protocolError(String)
    }

    /// Ends a worker that failed its request (or is killed to stop it), books it and returns the request's error.
    private func workerLost(_ slot: Int, _ h: WorkerHandle, cause: LossCause) -> MONAILabelError {
        if case .died = cause {} else { h.kill() }
        let exit = h.reap()
        let tail = h.tail.lines()
        h.removeFolder()
        let error: MONAILabelError
        var failure = true
        switch cause {
        case .died:
            var detail = "The model worker died while running this request (\(exit))"
            if !tail.isEmpty { detail += "; its last output: " + tail.joined(separator: " | ") }
            detail += ". A new worker is being started; the worker memory limit is \(Self.bytesText(launch.maxMemory))."
            error = MONAILabelError(.internalError, detail)
        case .timedOut(let seconds):
            failure = false
            error = MONAILabelError(.timedOut, "Inference ran longer than MONAI_LABEL_INFER_TIMEOUT (\(Int(seconds)) s); "
                + "its model worker was stopped and is being replaced")
        case .cancelled:
            failure = false
            error = MONAILabelError(.unavailable, "The client disconnected; the inference was stopped")
        case .protocolError(let why):
            error = MONAILabelError(.internalError, "The model worker sent a malformed reply (\(why)); it was replaced")
        }
        log("model worker \(slot) (pid \(h.pid)) ended: \(exit); \(error.message)")
        cond.lock()
        if handles[slot] === h { handles[slot] = nil }
        state.died(slot, reason: exit, now: Self.now(), failure: failure)
        kickStarts()
        cond.broadcast()
        cond.unlock()
        return error
    }

    /// Moves a worker's result file out of its private folder into the server's results folder, so that a
    /// later death of the worker (which removes its folder) cannot pull it away while it is being sent. Only
    /// a regular file inside the worker's own folder is accepted.
    private func takeOver(_ file: URL, from h: WorkerHandle) throws -> URL {
        let path = file.standardizedFileURL.path
        let root = h.folder.standardizedFileURL.path + "/"
        guard path.hasPrefix(root), !path.contains("/../"), FileOps.isRegularFile(path) else {
            throw MONAILabelError.io("the model worker returned a result outside its folder")
        }
        let dir = try ProcessTemp.makeFolder()
        var target = dir.appendingPathComponent(file.lastPathComponent)
        if FileManager.default.fileExists(atPath: target.path) {
            target = dir.appendingPathComponent(UUID().uuidString.prefix(8).lowercased() + "-" + file.lastPathComponent)
        }
        guard rename(path, target.path) == 0 else {
            throw MONAILabelError.io("cannot take over the model worker's result: \(String(cString: strerror(errno)))")
        }
        return target
    }

    /// Starts threads for the slots due for a start. Call with the lock held.
    private func kickStarts() {
        guard !shuttingDown else { return }
        for slot in state.slotsToStart(now: Self.now()) {
            let t = Thread { [self] in startWorker(slot) }
            t.name = "infer-worker-start-\(slot)"
            t.start()
        }
    }

    private func startWorker(_ slot: Int) {
        // Worker folders live in the server's private temp folder, so a killed server's are swept with it at
        // the next start (ProcessTemp.sweepDead).
        let outcome: Result<WorkerHandle, MONAILabelError>
        do {
            let root = try ProcessTemp.makeFolder()
            cond.lock()
            let device = state.slots[slot].device
            cond.unlock()
            outcome = WorkerHandle.spawn(slot: slot, device: device, launch: launch, under: root,
                                         log: { [weak self] in self?.log($0) })
        } catch {
            outcome = .failure(error as? MONAILabelError ?? .io("\(error)"))
        }
        var handle: WorkerHandle?
        var reason: String?
        switch outcome {
        case .failure(let e): reason = e.message
        case .success(let h):
            switch h.await(deadline: Self.now() + startTimeout, isCancelled: nil) {
            case .frame(let v) where v["ready"]?.boolValue == true:
                handle = h
            case .timedOut:
                h.kill()
                reason = "it did not get ready within \(Int(startTimeout)) s"
            default:
                h.kill()
                let exit = h.reap()
                let tail = h.tail.lines()
                reason = exit + (tail.isEmpty ? "" : "; its last output: " + tail.joined(separator: " | "))
            }
            if handle == nil {
                h.reap()
                h.removeFolder()
            }
        }
        cond.lock()
        if let handle, !shuttingDown {
            handles[slot] = handle
            state.started(slot, pid: handle.pid)
            handle.onExit = { [weak self] h in self?.diedIdle(slot, h) }
            cond.broadcast()
            cond.unlock()
            log("model worker \(slot) ready (pid \(handle.pid))")
            return
        }
        let stopping = shuttingDown
        if !stopping {
            state.startFailed(slot, reason: reason ?? "unknown reason", now: Self.now())
        }
        cond.broadcast()
        cond.unlock()
        if let handle {
            handle.kill()
            handle.reap()
            handle.removeFolder()
        }
        if !stopping { log("model worker \(slot) could not start: \(reason ?? "unknown reason")") }
    }

    /// A worker that ended while idle (killed from outside, OOM-killed): book it and start a new one, so the
    /// next request does not find it dead.
    private func diedIdle(_ slot: Int, _ h: WorkerHandle) {
        cond.lock()
        guard handles[slot] === h, state.slots[slot].state == .idle else {
            cond.unlock()
            return
        }
        handles[slot] = nil
        let exit = h.exitDescription()
        state.died(slot, reason: exit, now: Self.now())
        kickStarts()
        cond.broadcast()
        cond.unlock()
        h.removeFolder()
        log("idle model worker \(slot) (pid \(h.pid)) ended: \(exit)")
    }

    static func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

    /// `n` bytes as "1.5 GiB" or "512 MiB".
    public static func bytesText(_ n: UInt64) -> String {
        let g = Double(n) / Double(1 << 30)
        return g >= 1 ? String(format: "%.1f GiB", g) : String(format: "%.0f MiB", Double(n) / Double(1 << 20))
    }
}
