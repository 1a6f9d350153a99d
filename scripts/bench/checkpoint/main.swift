// Checkpoint read/write throughput, built by scripts/bench/checkpoint.sh together with the TorchCheckpoint
// sources as one optimised module (no Package.swift target needed).
import Foundation
#if canImport(Glibc)
import Glibc
#endif

func peakRSSMiB() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_maxrss) / 1024
}

func seconds(_ body: () throws -> Void) rethrows -> Double {
    let start = DispatchTime.now().uptimeNanoseconds
    try body()
    return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
}

let arguments = CommandLine.arguments
let megabytes = arguments.count > 1 ? Int(arguments[1]) ?? 256 : 256
let path = arguments.count > 2 ? arguments[2] : NSTemporaryDirectory() + "/checkpoint-bench.pt"
let url = URL(fileURLWithPath: path)

// A UNet-like state dict: a few large convolution weights and many small vectors.
var tensors: [(name: String, tensor: StoredTensor)] = []
var remaining = megabytes << 20
var layer = 0
while remaining > 0 {
    let count = min(remaining / 4, 4 << 20)
    guard count > 0 else { break }
    let bytes = [UInt8](unsafeUninitializedCapacity: count * 4) { buffer, initialized in
        for i in 0..<(count * 4) { buffer[i] = UInt8(truncatingIfNeeded: i &* 2_654_435_761 >> 13) }
        initialized = count * 4
    }
    tensors.append(("model.\(layer).conv.weight", StoredTensor(dtype: .float32, shape: [count], bytes: bytes)))
    for suffix in ["bias", "norm.weight", "norm.bias", "norm.running_mean", "norm.running_var"] {
        tensors.append(("model.\(layer).\(suffix)", StoredTensor(dtype: .float32, shape: [64], bytes: [UInt8](repeating: 1, count: 256))))
    }
    remaining -= count * 4
    layer += 1
}
let totalBytes = Double(tensors.reduce(0) { $0 + $1.tensor.bytes.count })
let mib = totalBytes / 1_048_576

let writeTime = try seconds { try Checkpoint.write(stateDict: tensors, key: "model", extra: [("epoch", .int(7))], to: url) }
tensors = []
var readBack: [(name: String, tensor: StoredTensor)] = []
let readTime = try seconds { readBack = try Checkpoint.stateDict(from: url) }
let rssAfterRead = peakRSSMiB()

print(String(format: "checkpoint: %.0f MiB in %d tensors", mib, readBack.count))
print(String(format: "write (atomic, fsync): %.3f s  %.0f MiB/s", writeTime, mib / writeTime))
print(String(format: "read (CRC-checked):    %.3f s  %.0f MiB/s", readTime, mib / readTime))
print(String(format: "peak RSS: %.0f MiB (the generated state dict alone is %.0f MiB)", rssAfterRead, mib))
print("file: \(path)")
