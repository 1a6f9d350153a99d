import Foundation

/// The bookkeeping of the model worker pool, free of processes and clocks (times are passed in as seconds)
/// so that its rules can be tested alone: requests wait in FIFO order for an idle worker; a worker that
/// dies or fails to start is restarted after a backoff that grows with consecutive failures and resets after
/// a request succeeds. `InferWorkerPool` holds one under its lock and does the process work.
public struct WorkerPoolState: Sendable, Equatable {
    public enum SlotState: String, Sendable {
        /// No process: never started, died or failed to start; restartable from `retryAt`.
        case down
        /// A process is being started (building its app).
        case starting
        /// Ready for a request.
        case idle
        /// Running a request.
        case busy
    }

    public struct Slot: Sendable, Equatable {
        public var state = SlotState.down
        public var pid: Int32?
        /// Requests this slot's workers completed (successfully or with a domain error).
        public var requests = 0
        /// Processes started after the first.
        public var restarts = 0
        /// Processes started, successfully or not.
        public var starts = 0
        /// Failures (deaths, failed starts) since the last completed request.
        public var failures = 0
        public var retryAt = 0.0
        /// Why the last process ended, for the report.
        public var lastExit: String?
        /// Models the current process has run (and so holds loaded).
        public var models: [String] = []
    }

    public struct Waiting: Sendable, Equatable {
        public var id: Int
        public var model: String
        public var since: Double
    }

    public private(set) var slots: [Slot]
    public private(set) var queue: [Waiting] = []
    /// Failed starts so far; a waiting request that sees it grow while no worker lives gives up.
    public private(set) var startFailures = 0
    public private(set) var lastStartError: String?
    private var nextID = 1

    public init(workers: Int) {
        slots = Array(repeating: Slot(), count: max(1, workers))
    }

    /// Seconds before restarting a slot after `failures` consecutive failures: the first restart is
    /// immediate (a request's crash says nothing about the next one), then 1, 2, 4 ... 30 s so a worker that
    /// cannot start does not spin.
    public static func backoff(failures: Int) -> Double {
        failures <= 1 ? 0 : min(30, pow(2, Double(min(failures, 16) - 2)))
    }

    /// Puts a request at the back of the queue; returns its ticket.
    public mutating func enqueue(model: String, now: Double) -> Int {
        let id = nextID
        nextID += 1
        queue.append(Waiting(id: id, model: model, since: now))
        return id
    }

    /// 1-based place of a waiting request, nil once it left the queue.
    public func position(of id: Int) -> Int? {
        queue.firstIndex { $0.id == id }.map { $0 + 1 }
    }

    /// Removes a request that gave up waiting.
    public mutating func leave(_ id: Int) {
        queue.removeAll { $0.id == id }
    }

    /// The slot request `id` runs on, when it is at the head of the queue and a worker is idle; it leaves the
    /// queue and the slot turns busy.
    public mutating func claim(_ id: Int) -> Int? {
        guard queue.first?.id == id, let s = slots.firstIndex(where: { $0.state == .idle }) else { return nil }
        queue.removeFirst()
        slots[s].state = .busy
        return s
    }

    /// Slots due for a (re)start; they turn `starting`.
    public mutating func slotsToStart(now: Double) -> [Int] {
        var out: [Int] = []
        for i in slots.indices where slots[i].state == .down && slots[i].retryAt <= now {
            slots[i].state = .starting
            if slots[i].starts > 0 { slots[i].restarts += 1 }
            slots[i].starts += 1
            slots[i].models = []
            out.append(i)
        }
        return out
    }

    /// The earliest time a down slot may restart, if any is waiting for its backoff.
    public var nextRetry: Double? {
        slots.filter { $0.state == .down }.map(\.retryAt).min()
    }

    /// Whether a worker runs or is starting (a waiting request then keeps waiting).
    public var hasLiveWorker: Bool {
        slots.contains { $0.state != .down }
    }

    public var busyCount: Int { slots.filter { $0.state == .busy }.count }

    public mutating func started(_ slot: Int, pid: Int32) {
        guard slots[slot].state == .starting else { return }
        slots[slot].state = .idle
        slots[slot].pid = pid
    }

    public mutating func startFailed(_ slot: Int, reason: String, now: Double) {
        startFailures += 1
        lastStartError = reason
        markDown(slot, reason: reason, now: now)
    }

    /// A request ended with the worker alive: it is idle again and its failure count resets.
    public mutating func finished(_ slot: Int, model: String) {
        guard slots[slot].state == .busy else { return }
        slots[slot].state = .idle
        slots[slot].requests += 1
        slots[slot].failures = 0
        if !slots[slot].models.contains(model) { slots[slot].models.append(model) }
    }

    /// The slot's process ended: it crashed or died idle (`failure`), or the server killed it to stop a
    /// request that timed out or whose client left (not the worker's fault: no backoff).
    public mutating func died(_ slot: Int, reason: String, now: Double, failure: Bool = true) {
        markDown(slot, reason: reason, now: now, failure: failure)
    }

    private mutating func markDown(_ slot: Int, reason: String, now: Double, failure: Bool = true) {
        slots[slot].state = .down
        slots[slot].pid = nil
        if failure { slots[slot].failures += 1 }
        slots[slot].retryAt = now + Self.backoff(failures: slots[slot].failures)
        slots[slot].lastExit = reason
    }
}
