import Foundation
import TestSupport
import MONAILabel
import Testing
import TorchKit

#if canImport(Glibc)
import Glibc
#endif

/// Train jobs on several processes (`world_size`): c10d ranks started by the job, or joined by hand with
/// `monailabel train_worker`, on the router harness's real job children.
@Suite(.tags(.router), .serialized, .enabled(if: ProcessGroup.isAvailable, "the backend was built without gloo's headers (libgloo-dev)"))
struct DataParallelTrainTests {
    /// Process ids whose command line contains every one of `words` (e.g. a rank of this harness's app).
    static func processes(with words: [String]) -> [Int32] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap(Int32.init).filter { pid in
            guard let raw = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
            let line = String(decoding: raw.map { $0 == 0 ? 32 : $0 }, as: UTF8.self)
            return words.allSatisfy(line.contains)
        }
    }

    static func details(_ job: JSONValue) -> [String] { job["details"]?.arrayValue?.compactMap(\.stringValue) ?? [] }

    @Test func badParallelKeys_are422NamingThem_beforeAnyJob() throws {
        let h = try TrainHarness()
        for (body, key) in [(#"{"world_size": 0}"#, "world_size"), (#"{"world_size": "2"}"#, "world_size"),
                            (#"{"world_size": 2.5}"#, "world_size"), (#"{"world_size": 100000}"#, "world_size"),
                            (#"{"world_size": 2, "local_ranks": 3}"#, "local_ranks"),
                            (#"{"world_size": 2, "local_ranks": 1}"#, "rendezvous_port"),
                            (#"{"world_size": 2, "rendezvous_port": 70000}"#, "rendezvous_port"),
                            // More local ranks than the machine has cores.
                            (#"{"world_size": 256}"#, "local_ranks")]
        {
            let r = try h.send(.post, "/train/segmentation_spleen", json: body)
            #expect(r.status == 422, "\(body)")
            #expect(r.json?["detail"]?.stringValue?.contains(key) == true, "\(body): \(String(describing: r.json))")
        }
        #expect(try h.send(.get, "/train/").status == 404, "no job was queued")
    }

    @Test(.timeLimit(.minutes(6)))
    func twoRankJob_trainsThroughTheAPI_publishes_andReportsEveryRank() throws {
        let h = try TrainHarness()
        let single = try h.send(.post, "/train/segmentation_spleen?run_sync=true",
                                json: #"{"max_epochs": 4, "name": "one", "seed": 3}"#)
        #expect(single.status == 200)
        try? FileManager.default.removeItem(at: h.published)
        let r = try h.send(.post, "/train/segmentation_spleen?run_sync=true",
                           json: #"{"max_epochs": 4, "name": "two", "seed": 3, "world_size": 2}"#)
        #expect(r.status == 200, "\(String(describing: r.json))")
        #expect(r.json?["total_epochs"]?.intValue == 4)
        #expect(FileManager.default.fileExists(atPath: h.published.path), "rank 0 published the best model")
        let job = try h.send(.get, "/train/").json ?? .null
        let lines = Self.details(job)
        #expect(lines.contains { $0.contains("[rank 1]") && $0.contains("Epoch:") }, "rank 1's lines reach the job")
        #expect(lines.contains { $0.contains("[rank 1]") && $0.contains("Rank 1 finished") })
        let ranks = job["progress"]?["ranks"]?.arrayValue ?? []
        #expect(ranks.compactMap { $0["rank"]?.intValue } == [0, 1], "\(String(describing: job["progress"]))")
        // Each rank trains on its half of every epoch (rounded up): fewer iterations than one process.
        let oneIters = single.json?["total_iterations"]?.intValue ?? 0
        #expect((r.json?["total_iterations"]?.intValue ?? .max) < oneIters, "1 rank: \(oneIters)")
        let d1 = single.json?["best_metric"]?.doubleValue ?? -1, d2 = r.json?["best_metric"]?.doubleValue ?? -1
        #expect(d2.isFinite && d2 >= 0 && d2 <= 1 && d1 >= 0, "Dice: 1 rank \(d1), 2 ranks \(d2)")
        #expect(Self.processes(with: ["train_worker", h.appDir.path]).isEmpty, "no rank left running")
    }

    @Test(.timeLimit(.minutes(6)))
    func aRankKilledMidEpoch_endsTheJobAsError_namingIt_withNothingLeftRunning() throws {
        let h = try TrainHarness()
        #expect(try h.send(.post, "/train/segmentation_spleen", json: #"{"max_epochs": 500, "world_size": 2}"#).status == 200)
        _ = try h.waitFor("rank 1 training", timeout: 120) { job in
            Self.details(job).contains { $0.contains("[rank 1]") && $0.contains("Epoch:") }
        }
        let rank1 = Self.processes(with: ["train_worker", "--rank 1", h.appDir.path])
        try #require(rank1.count == 1, "\(rank1)")
        let killed = Date()
        kill(rank1[0], SIGKILL)
        let failed = try h.waitFor("ERROR", timeout: 60) { $0["status"]?.stringValue == "ERROR" }
        #expect(Date().timeIntervalSince(killed) < 60)
        #expect(Self.details(failed).contains { $0.contains("rank 1 was killed by signal 9") }, "\(Self.details(failed).suffix(5))")
        usleep(500_000)
        #expect(Self.processes(with: ["train_worker", h.appDir.path]).isEmpty)
        #expect(Self.processes(with: ["run_task", h.appDir.path]).isEmpty)
        #expect(try h.send(.get, "/info/").status == 200)
    }

    /// Two "machines" on loopback: the server's job runs rank 0 only and a `train_worker` with its own copy
    /// of the app and studies joins as rank 1.
    @Test(.timeLimit(.minutes(6)))
    func aTrainWorkerOnAnotherMachine_joinsTheJob_andTheJobPublishes() throws {
        let h = try TrainHarness()
        let remote = h.tmp.url.appendingPathComponent("machine2")
        try FileManager.default.createDirectory(at: remote, withIntermediateDirectories: true)
        for folder in ["app", "studies"] {
            try FileManager.default.copyItem(at: h.tmp.url.appendingPathComponent(folder),
                                             to: remote.appendingPathComponent(folder))
        }
        let port = try Rendezvous.unusedPort()
        let body = #"{"max_epochs": 3, "world_size": 2, "local_ranks": 1, "rendezvous_port": \#(port)}"#
        #expect(try h.send(.post, "/train/segmentation_spleen", json: body).status == 200)
        let worker = Process()
        worker.executableURL = URL(fileURLWithPath: "/usr/bin/timeout")
        worker.arguments = bounded(monailabelBinary.path, ["train_worker", "--rendezvous", "127.0.0.1:\(port)", "--rank", "1", "--world-size", "2",
                            "--app", remote.appendingPathComponent("app").path,
                            "--studies", remote.appendingPathComponent("studies").path,
                            "--conf", "models", "segmentation_spleen"])
        var env = ProcessInfo.processInfo.environment
        env["MONAI_LABEL_TORCH_THREADS"] = "1"
        worker.environment = env
        // Its log goes to a file: a pipe's end-of-file waits for any unrelated process that inherited it too.
        let logFile = h.tmp.url.appendingPathComponent("rank1.log")
        FileManager.default.createFile(atPath: logFile.path, contents: nil)
        let out = try FileHandle(forWritingTo: logFile)
        worker.standardOutput = out
        worker.standardError = out
        try worker.run()
        try? out.close()
        let done = try h.waitFor("DONE", timeout: 180) { ["DONE", "ERROR"].contains($0["status"]?.stringValue ?? "") }
        // The rank ends with the job; one that does not is killed (and the test fails).
        let ended = processExits(worker, within: 120)
        if !ended { stopChild(worker, signal: SIGKILL) }
        let status = exitStatus(of: worker)
        #expect(ended, "rank 1 still running 120 s after the job finished")
        let workerLog = (try? String(contentsOf: logFile, encoding: .utf8)) ?? ""
        #expect(done["status"]?.stringValue == "DONE", "\(Self.details(done).suffix(8))")
        #expect(status == 0, "\(workerLog.suffix(2000))")
        #expect(workerLog.contains("Rank 1 finished"))
        #expect(FileManager.default.fileExists(atPath: h.published.path))
        #expect(!FileManager.default.fileExists(
            atPath: remote.appendingPathComponent("app/model/segmentation_spleen.pt").path), "only rank 0 publishes")
    }
}
