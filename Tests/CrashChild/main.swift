import Foundation
import MONAILabelCore

// Saves labels into a studies folder in a loop, printing `BEGIN <id> <seed>` before each save and
// `OK <id> <seed>` after it returns, until killed. The crash test kills it with SIGKILL at random moments and
// checks that every acknowledged label survived byte for byte.
//
// Usage: datastore-crash-child STUDIES FIRST_SEED

/// One unbuffered write per line, so what the parent reads is exactly what was acknowledged before the kill.
func say(_ line: String) { FileHandle.standardOutput.write(Data((line + "\n").utf8)) }

let args = CommandLine.arguments
guard args.count == 3, let firstSeed = UInt64(args[2]) else {
    FileHandle.standardError.write(Data("usage: datastore-crash-child STUDIES FIRST_SEED\n".utf8))
    exit(2)
}
let root = URL(fileURLWithPath: args[1])
let store: LocalDatastore
do {
    store = try LocalDatastore(root: root)
} catch {
    FileHandle.standardError.write(Data("cannot open store: \(error)\n".utf8))
    exit(1)
}
let ids = store.listImages()
let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("crash-child-\(getpid())")
try? FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
var seed = firstSeed
while true {
    let id = ids[Int(seed % UInt64(ids.count))]
    let bytes = CrashPayload.bytes(seed: seed)
    let file = scratch.appendingPathComponent("label.nii.gz")
    guard FileManager.default.createFile(atPath: file.path, contents: Data(bytes)) else { exit(1) }
    say("BEGIN \(id) \(seed)")
    do {
        try store.saveLabel(imageID: id, file: file, fileName: "label.nii.gz", tag: "final", info: ["seed": .int(Int(seed))])
    } catch {
        FileHandle.standardError.write(Data("save failed: \(error)\n".utf8))
        exit(1)
    }
    say("OK \(id) \(seed)")
    seed += 1
}
