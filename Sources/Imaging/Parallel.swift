import Dispatch
import Foundation

/// A pointer that may cross into `DispatchQueue` work items; callers guarantee disjoint access and lifetime.
struct SendablePointer<T>: @unchecked Sendable {
    let p: UnsafeMutablePointer<T>
}

/// A read-only pointer that may cross into dispatched work items.
struct SendableConstPointer<T>: @unchecked Sendable {
    let p: UnsafePointer<T>
}

struct UncheckedBox<T>: @unchecked Sendable {
    let value: T
}

/// Data-parallel loops over the machine's cores (`DispatchQueue.concurrentPerform`).
enum Parallel {
    static var cores: Int { max(1, ProcessInfo.processInfo.activeProcessorCount) }

    /// Splits `0..<count` into contiguous chunks of at least `minChunk` and runs `body(lo, hi)` on each, in
    /// parallel when there is enough work to pay for it.
    static func forChunks(count: Int, minChunk: Int = 1 << 15, _ body: (Int, Int) -> Void) {
        guard count > 0 else { return }
        let chunks = max(1, min(cores * 4, count / max(1, minChunk)))
        if chunks == 1 {
            body(0, count)
            return
        }
        // The caller's loop body only touches disjoint index ranges; the box lets it into Dispatch's
        // @Sendable work item without forcing every captured buffer pointer to be Sendable.
        withoutActuallyEscaping(body) { escapable in
            let box = UncheckedBox(value: escapable)
            DispatchQueue.concurrentPerform(iterations: chunks) { c in
                let lo = count * c / chunks, hi = count * (c + 1) / chunks
                if lo < hi { box.value(lo, hi) }
            }
        }
    }

    /// `a.map(f)` computed in parallel chunks.
    static func map<T, U>(_ a: [T], _ f: (T) -> U) -> [U] {
        a.withUnsafeBufferPointer { src in
            [U](unsafeUninitializedCapacity: a.count) { dst, n in
                let d = dst.baseAddress!
                forChunks(count: a.count) { lo, hi in
                    for i in lo..<hi { (d + i).initialize(to: f(src[i])) }
                }
                n = a.count
            }
        }
    }
}
