import Dispatch
import Foundation

/// A pointer that may cross into `DispatchQueue` work items; callers guarantee disjoint access and lifetime.
struct SendablePointer<T>: @unchecked Sendable {
    let p: UnsafeMutablePointer<T>
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
        guard !a.isEmpty else { return [] }
        return a.withUnsafeBufferPointer { src in
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

/// The element types a `VoxelData` can hold, readable as Float or Double without a whole-volume copy.
protocol VoxelScalar {
    var floatValue: Float { get }
    var doubleValue: Double { get }
}

extension Int8: VoxelScalar {
    var floatValue: Float { Float(self) }
    var doubleValue: Double { Double(self) }
}
extension UInt8: VoxelScalar {
    var floatValue: Float { Float(self) }
    var doubleValue: Double { Double(self) }
}
extension Int16: VoxelScalar {
    var floatValue: Float { Float(self) }
    var doubleValue: Double { Double(self) }
}
extension UInt16: VoxelScalar {
    var floatValue: Float { Float(self) }
    var doubleValue: Double { Double(self) }
}
extension Int32: VoxelScalar {
    var floatValue: Float { Float(self) }
    var doubleValue: Double { Double(self) }
}
extension UInt32: VoxelScalar {
    var floatValue: Float { Float(self) }
    var doubleValue: Double { Double(self) }
}
extension Int64: VoxelScalar {
    var floatValue: Float { Float(self) }
    var doubleValue: Double { Double(self) }
}
extension Float: VoxelScalar {
    var floatValue: Float { self }
    var doubleValue: Double { Double(self) }
}
extension Double: VoxelScalar {
    var floatValue: Float { Float(self) }
    var doubleValue: Double { self }
}

/// Runs a generic body over whichever element type a `VoxelData` holds.
protocol VoxelVisitor {
    associatedtype Result
    func visit<T: VoxelScalar>(_ values: UnsafeBufferPointer<T>) -> Result
}

extension VoxelData {
    func visit<V: VoxelVisitor>(_ v: V) -> V.Result {
        switch self {
        case .int8(let a): return a.withUnsafeBufferPointer { v.visit($0) }
        case .uint8(let a): return a.withUnsafeBufferPointer { v.visit($0) }
        case .int16(let a): return a.withUnsafeBufferPointer { v.visit($0) }
        case .uint16(let a): return a.withUnsafeBufferPointer { v.visit($0) }
        case .int32(let a): return a.withUnsafeBufferPointer { v.visit($0) }
        case .uint32(let a): return a.withUnsafeBufferPointer { v.visit($0) }
        case .int64(let a): return a.withUnsafeBufferPointer { v.visit($0) }
        case .float32(let a): return a.withUnsafeBufferPointer { v.visit($0) }
        case .float64(let a): return a.withUnsafeBufferPointer { v.visit($0) }
        }
    }
}
