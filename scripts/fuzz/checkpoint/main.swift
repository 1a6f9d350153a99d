// Mutation fuzzer for TorchCheckpoint, built by scripts/fuzz/checkpoint.sh together with the TorchCheckpoint
// sources and the tests' SplitMix (Tests/TestSupport) as one optimised module. For each iteration it takes a real
// checkpoint, mutates either its pickle (re-wrapped in a valid zip so the mutation reaches the unpickler) or the raw
// zip bytes, and reads it from memory. Any outcome other than a value or a CheckpointError (a crash, a trap, another
// error type) is a bug.
import Foundation

func mutate(_ input: [UInt8], _ rng: inout SplitMix) -> [UInt8] {
    var bytes = input
    guard !bytes.isEmpty else { return [UInt8(truncatingIfNeeded: rng.next())] }
    let index = Int(rng.next() % UInt64(bytes.count))
    switch rng.next() % 6 {
    case 0: bytes[index] = UInt8(truncatingIfNeeded: rng.next())
    case 1: bytes[index] ^= 1 << UInt8(rng.next() % 8)
    case 2: bytes.remove(at: index)
    case 3: bytes.insert(UInt8(truncatingIfNeeded: rng.next()), at: index)
    case 4:
        // Duplicate a short run: repeats opcodes and their arguments.
        let length = min(Int(rng.next() % 16) + 1, bytes.count - index)
        bytes.insert(contentsOf: bytes[index..<(index + length)], at: index)
    default: bytes.removeLast(bytes.count - index)
    }
    return bytes
}

let arguments = CommandLine.arguments
guard arguments.count >= 3, let iterations = Int(arguments[1]) else {
    print("usage: fuzz ITERATIONS CHECKPOINT... [seed via FUZZ_SEED]")
    exit(2)
}
let seed = UInt64(ProcessInfo.processInfo.environment["FUZZ_SEED"] ?? "") ?? UInt64(Date().timeIntervalSince1970)
var rng = SplitMix(seed: seed)
print("seed \(seed)")

struct Corpus {
    var raw: [UInt8]
    var prefix: String
    var pickle: [UInt8]
    var others: [(String, [UInt8])]
}
var corpus: [Corpus] = []
for path in arguments.dropFirst(2) {
    let raw = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
    let zip = try ZipReader(source: MemorySource(raw))
    guard let pkl = zip.entries.first(where: { $0.name.hasSuffix("/data.pkl") }) else { continue }
    let prefix = String(pkl.name.dropLast("data.pkl".count))
    let others = try zip.entries.filter { $0.name != pkl.name }.map { (String($0.name.dropFirst(prefix.count)), try zip.contents(of: $0)) }
    corpus.append(Corpus(raw: raw, prefix: prefix, pickle: try zip.contents(of: pkl), others: others))
}
guard !corpus.isEmpty else {
    print("no checkpoints to fuzz")
    exit(2)
}

var outcomes: [String: Int] = [:]
let start = Date()
for i in 0..<iterations {
    let sample = corpus[Int(rng.next() % UInt64(corpus.count))]
    let input: [UInt8]
    if rng.next() % 4 == 0 {
        input = mutate(sample.raw, &rng)
    } else {
        var pickle = mutate(sample.pickle, &rng)
        for _ in 0..<(rng.next() % 3) { pickle = mutate(pickle, &rng) }
        var zip = ZipWriter(sink: .memory)
        try zip.add(name: sample.prefix + "data.pkl", bytes: pickle)
        for (name, bytes) in sample.others { try zip.add(name: sample.prefix + name, bytes: bytes) }
        try zip.finish()
        input = zip.bytes
    }
    do {
        _ = try Checkpoint.read(bytes: input)
        outcomes["read", default: 0] += 1
    } catch let error as CheckpointError {
        outcomes[error.kind.rawValue, default: 0] += 1
    } catch {
        print("iteration \(i): unexpected error type \(error)")
        exit(1)
    }
}
let elapsed = Date().timeIntervalSince(start)
print(String(format: "%d iterations in %.1f s, no crash", iterations, elapsed))
for (kind, count) in outcomes.sorted(by: { $0.value > $1.value }) { print("  \(kind): \(count)") }
