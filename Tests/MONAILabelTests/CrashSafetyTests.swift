import Foundation
import Testing
@testable import MONAILabelCore

/// A child process saves labels in a loop and is SIGKILLed at random moments, 200 times. After each kill the
/// store must open, and every label whose save had returned must be on disk byte for byte (or be the newer
/// label whose save was in flight when the child died).
@Test(.tags(.unit), .timeLimit(.minutes(14)))
func saveLabel_killedAtRandomMoments_losesNoAcknowledgedLabel() throws {
    let tmp = TempDir()
    let root = tmp.url.appendingPathComponent("studies")
    for i in 0..<5 { _ = tmp.write("studies/case_\(i).nii.gz", [UInt8(i)]) }
    _ = try LocalDatastore(root: root)
    let child = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        .appendingPathComponent("datastore-crash-child")
    try #require(FileManager.default.isExecutableFile(atPath: child.path), "build datastore-crash-child first")

    var acked: [String: UInt64] = [:]  // last acknowledged seed per image
    var pending: [String: UInt64] = [:]  // a save begun but not acknowledged when the child died
    var totalAcks = 0
    var rng = SplitMix64(seed: 7)
    for round in 0..<200 {
        let p = Process()
        p.executableURL = child
        p.arguments = [root.path, String(UInt64(round) * 1_000_000)]
        // A file, not a pipe: a pipe's end-of-file waits for any unrelated process that inherited it too.
        let outFile = tmp.url.appendingPathComponent("child-\(round).out")
        FileManager.default.createFile(atPath: outFile.path, contents: nil)
        let out = try FileHandle(forWritingTo: outFile)
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        try? out.close()
        usleep(useconds_t(15_000 + Int(rng.next() % 100_000)))
        kill(p.processIdentifier, SIGKILL)
        _ = p.waitForExit()
        let text = (try? String(contentsOf: outFile, encoding: .utf8)) ?? ""
        for line in text.split(separator: "\n") {
            let f = line.split(separator: " ")
            guard f.count == 3, let seed = UInt64(f[2]) else { continue }
            let id = String(f[1])
            if f[0] == "BEGIN" { pending[id] = seed }
            if f[0] == "OK" {
                acked[id] = seed
                pending[id] = nil
                totalAcks += 1
            }
        }
        let store = try LocalDatastore(root: root)
        for (id, seed) in acked {
            let path = root.appendingPathComponent("labels/final/\(id).nii.gz").path
            let data = try #require(FileManager.default.contents(atPath: path), "round \(round): label of \(id) lost")
            let ok = Array(data) == CrashPayload.bytes(seed: seed)
                || pending[id].map { Array(data) == CrashPayload.bytes(seed: $0) } == true
            #expect(ok, "round \(round): label of \(id) is neither the acknowledged nor the in-flight one")
            #expect(store.labelInfo(id, tag: "final") != nil, "round \(round): \(id) has no final label entry")
            // Whatever was on disk is now what the store holds: the in-flight save either landed or did not.
            if let s = pending[id], Array(data) == CrashPayload.bytes(seed: s) { acked[id] = s }
            pending[id] = nil
        }
        let leftovers = FileOps.listDirectory(root.appendingPathComponent("labels/final").path)
            .filter { $0.hasPrefix(FileOps.tempPrefix) }
        #expect(leftovers.isEmpty, "round \(round): opening the store must clear staged files of a killed writer")
    }
    #expect(totalAcks > 50, "the child acknowledged only \(totalAcks) saves; the test exercised too little")
}
