import Foundation

/// A mutex with a condition variable (pthread), for the worker queue.
final class ConditionLock: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let cond = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    init() {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(cond, nil)
    }

    deinit {
        pthread_cond_destroy(cond)
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        cond.deallocate()
    }

    func lock() { pthread_mutex_lock(mutex) }
    func unlock() { pthread_mutex_unlock(mutex) }
    func wait() { pthread_cond_wait(cond, mutex) }
    func signal() { pthread_cond_signal(cond) }
    func broadcast() { pthread_cond_broadcast(cond) }
}

/// A fixed set of threads taking jobs from a bounded FIFO. `submit` never blocks: a full queue is refused so
/// the caller can answer 503.
final class WorkerPool: @unchecked Sendable {
    typealias Job = @Sendable () -> Void
    private let lock = ConditionLock()
    // Guarded by `lock`.
    private var queue: [Job?]
    private var head = 0
    private var count = 0
    private var stopped = false
    let capacity: Int

    init(threads: Int, capacity: Int, name: String) {
        self.capacity = max(1, capacity)
        queue = Array(repeating: nil, count: self.capacity)
        for i in 0..<max(1, threads) {
            let t = Thread { [self] in self.work() }
            t.name = "\(name)-\(i)"
            t.stackSize = 1 << 20
            t.start()
        }
    }

    /// Queues `job`; false when the queue is full or the pool is stopped.
    func submit(_ job: @escaping Job) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        if stopped || count == capacity { return false }
        queue[(head + count) % capacity] = job
        count += 1
        lock.signal()
        return true
    }

    /// Lets the threads exit once the queue is empty.
    func stop() {
        lock.lock()
        stopped = true
        lock.broadcast()
        lock.unlock()
    }

    private func work() {
        while true {
            lock.lock()
            while count == 0 && !stopped { lock.wait() }
            if count == 0 {
                lock.unlock()
                return
            }
            let job = queue[head]
            queue[head] = nil
            head = (head + 1) % capacity
            count -= 1
            lock.unlock()
            job?()
        }
    }
}
