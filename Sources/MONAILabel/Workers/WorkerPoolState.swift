import Foundation

/// The bookkeeping of the model worker pool, free of processes and clocks (times are passed in as seconds)
/// so that its rules can be tested alone: requests wait in FIFO order for an idle worker; a worker that
/// dies or fails to start is restarted after a backoff that grows with consecutive failures and resets after
/// a request succeeds. `InferWorkerPool` holds one under its lock and does the process work.
///
/// Workers come in one group per device (`cuda:0`, `cuda:1`, ..., or one `cpu` group on a CPU-only host), each
/// of the same size. A request that names a device with a group waits for that group's workers; any other goes
/// to the idle worker of the least-loaded device (fewest busy workers, then the first device). Earlier requests
/// pick first, so one waiting for a busy device does not hold back a later one another device can serve.
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
        /// The device this worker's group serves; its default for requests that name none.
        public var device = "cpu"
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
        /// The device group the request must run on; nil for any.
        public var device: String?
    }

    public private(set) var slots: [Slot]
    public private(set) var queue: [Waiting] = []
    /// Failed starts so far; a waiting request that sees it grow while no worker lives gives up.
    public private(set) var startFailures = 0
    public private(set) var lastStartError: String?
    private var nextID = 1

    /// `workers` per device of `devices` (device names as `Device.description` writes them; at least one).
    public init(workers: Int, devices: [String] = ["cpu"]) {
        var groups: [String] = []
        for d in devices where !groups.contains(d) { groups.append(d) }
        if groups.isEmpty { groups = ["cpu"] }
        slots = groups.flatMap { d in Array(repeating: Slot(device: d), count: max(1, workers)) }
    }

    /// The device groups in order.
    public var devices: [String] {
        var out: [String] = []
        for s in slots where !out.contains(s.device) { out.append(s.device) }
        return out
    }

    /// Seconds before restarting a slot after `failures` consecutive failures: the first restart is
    /// immediate (a request's crash says nothing about the next one), then 1, 2, 4 ... 30 s so a worker that
    /// cannot start does not spin.
    public static func backoff(failures: Int) -> Double {
        failures <= 1 ? 0 : min(30, pow(2, Double(min(failures, 16) - 2)))
    }

    /// Puts a request at the back of the queue; returns its ticket. `device` pins it to that device's workers
    /// when there is such a group (any worker can place work on any device, so a device without one, such as
    /// `cpu` on a GPU host, pins nothing).
    public mutating func enqueue(model: String, device: String? = nil, now: Double) -> Int {
        let id = nextID
        nextID += 1
        let pinned = device.flatMap { d in slots.contains { $0.device == d } ? d : nil }
        queue.append(Waiting(id: id, model: model, since: now, device: pinned))
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

    /// The slot request `id` runs on, when a worker it may use is idle and no request ahead of it takes that
    /// worker; it leaves the queue and the slot turns busy. The queue is served in order: each request ahead
    /// picks (and so takes away) its worker first.
    public mutating func claim(_ id: Int) -> Int? {
        var idle = slots.indices.filter { slots[$0].state == .idle }
        var busy: [String: Int] = [:]
        for s in slots where s.state == .busy { busy[s.device, default: 0] += 1 }
        let order = devices
        for (position, w) in queue.enumerated() {
            guard !idle.isEmpty else { return nil }
            let candidates = idle.filter { w.device == nil || slots[$0].device == w.device }
            // Least-loaded device first, then the device order, then the slot order.
            guard let s = candidates.min(by: { a, b in
                let la = busy[slots[a].device, default: 0], lb = busy[slots[b].device, default: 0]
                if la != lb { return la < lb }
                let oa = order.firstIndex(of: slots[a].device) ?? 0, ob = order.firstIndex(of: slots[b].device) ?? 0
                return oa != ob ? oa < ob : a < b
            }) else { continue }
            if w.id == id {
                queue.remove(at: position)
                slots[s].state = .busy
                return s
            }
            idle.removeAll { $0 == s }
            busy[slots[s].device, default: 0] += 1
        }
        return nil
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
