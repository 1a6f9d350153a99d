import Foundation

/// A child process's output drained by a reader thread, kept up to `limit` bytes so a chatty or hostile tool cannot
/// grow the server's memory; `count` keeps counting past the limit, so the caller can tell it was exceeded.
public final class CappedBuffer: @unchecked Sendable {
    private let lock = NSLock()
    private var data = Data()
    private var total = 0
    private let limit: Int

    public init(limit: Int) { self.limit = limit }

    public func append(_ d: Data) {
        lock.withLock {
            total += d.count
            if data.count < limit { data.append(d.prefix(limit - data.count)) }
        }
    }

    /// Every byte appended, kept or not.
    public var count: Int { lock.withLock { total } }
    /// The kept bytes as UTF-8 (invalid sequences replaced).
    public var text: String { lock.withLock { String(decoding: data, as: UTF8.self) } }
}
