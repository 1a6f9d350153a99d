import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// This process's resident memory, and handing freed heap memory back to the system.
///
/// glibc keeps what a request freed in its arenas (one per thread that allocated, and libtorch allocates from
/// its intra-op threads): after a 1.4 GB inference the process stayed at that size until the next one.
/// `malloc_trim` returns the free pages of every arena. It is not in Swift's Glibc module (`<malloc.h>` is not
/// part of it), so it is looked up once by name; on a C library without it, trimming does nothing.
public enum ProcessMemory {
    private typealias TrimFunction = @convention(c) (Int) -> Int32

    private static let trimFunction: TrimFunction? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "malloc_trim") else { return nil }
        return unsafeBitCast(symbol, to: TrimFunction.self)
    }()

    private typealias MallctlFunction = @convention(c) (
        UnsafePointer<CChar>?, UnsafeMutableRawPointer?, UnsafeMutablePointer<Int>?, UnsafeMutableRawPointer?, Int
    ) -> Int32

    /// jemalloc's control interface where jemalloc is preloaded (model workers, `MONAI_LABEL_WORKER_ALLOCATOR`):
    /// it keeps freed pages past `malloc_trim`, which only reaches glibc's own arenas.
    private static let mallctlFunction: MallctlFunction? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallctl") else { return nil }
        return unsafeBitCast(symbol, to: MallctlFunction.self)
    }()

    /// Returns the heap's free pages to the system (all arenas, jemalloc's too where it is loaded); true when
    /// the C library could trim.
    @discardableResult
    public static func trim() -> Bool {
        // "arena.<MALLCTL_ARENAS_ALL>.purge": every arena's unused dirty pages.
        if let purge = mallctlFunction { _ = purge("arena.4096.purge", nil, nil, nil, 0) }
        guard let f = trimFunction else { return false }
        _ = f(0)
        return true
    }

    /// Resident memory now (`VmRSS`), in bytes; nil where `/proc/self/status` cannot be read.
    public static var residentBytes: Int? { statusField("VmRSS") }

    /// The most resident memory since start-up or the last `resetPeak()` (`VmHWM`), in bytes.
    public static var peakResidentBytes: Int? { statusField("VmHWM") }

    /// Starts a new peak (`VmHWM` back to the current resident size; Linux's `clear_refs` value 5). False where
    /// the kernel refuses, in which case the peak stays the one since start-up.
    @discardableResult
    public static func resetPeak() -> Bool {
        let fd = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return write(fd, "5", 1) == 1
    }

    /// A `kB` line of `/proc/self/status`, in bytes.
    private static func statusField(_ name: String) -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix(name + ":") {
            let digits = line.dropFirst(name.count + 1).filter(\.isNumber)
            guard let kb = Int(digits), kb < Int.max / 1024 else { return nil }
            return kb * 1024
        }
        return nil
    }
}

/// Hands memory back after inference once the process has been idle for `delay`: trimming right after each
/// request would make the next one fault the same pages in again, which a busy server pays on every request.
public final class IdleMemoryTrimmer: @unchecked Sendable {
    private let delay: Double?
    private let lock = NSLock()
    private var generation = 0
    private var running = 0

    /// - Parameter delayMilliseconds: negative never trims; 0 trims as soon as a request ends.
    public init(delayMilliseconds: Int) {
        delay = delayMilliseconds < 0 ? nil : Double(delayMilliseconds) / 1000
    }

    /// Runs `body` as one request: the trim waits until no request has run for `delay`.
    public func run<T>(_ body: () throws -> T) rethrows -> T {
        lock.withLock {
            running += 1
            generation += 1
        }
        defer { finished() }
        return try body()
    }

    private func finished() {
        let mine: Int = lock.withLock {
            running -= 1
            return generation
        }
        guard let delay else { return }
        let check: @Sendable () -> Void = { [self] in
            let idle = lock.withLock { running == 0 && generation == mine }
            if idle { ProcessMemory.trim() }
        }
        if delay == 0 {
            check()
        } else {
            DispatchQueue.global(qos: .utility).asyncAfter(deadline: .now() + delay, execute: check)
        }
    }
}
