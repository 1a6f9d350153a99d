import Foundation
import Testing
@testable import MONAILabel
@testable import MONAILabelCore

/// The model worker pool's rules without processes: FIFO queue, restarts with backoff, what a report shows.
@Suite(.tags(.unit)) struct WorkerPoolStateTests {
    /// A pool of `n` workers that have started.
    func running(_ n: Int) -> WorkerPoolState {
        var s = WorkerPoolState(workers: n)
        for slot in s.slotsToStart(now: 0) { s.started(slot, pid: Int32(100 + slot)) }
        return s
    }

    @Test func claim_servesRequestsInArrivalOrder() {
        var s = running(1)
        let a = s.enqueue(model: "m1", now: 1)
        let b = s.enqueue(model: "m2", now: 2)
        #expect(s.claim(b) == nil)
        #expect(s.claim(a) == 0)
        #expect(s.slots[0].state == .busy)
        #expect(s.claim(b) == nil)
        s.finished(0, model: "m1")
        #expect(s.claim(b) == 0)
    }

    @Test func position_countsFromTheHeadAndShiftsWhenOneLeaves() {
        var s = WorkerPoolState(workers: 1)
        let ids = (0..<3).map { s.enqueue(model: "m", now: Double($0)) }
        #expect(ids.map { s.position(of: $0) } == [1, 2, 3])
        s.leave(ids[0])
        #expect(s.position(of: ids[0]) == nil)
        #expect(s.position(of: ids[2]) == 2)
    }

    @Test func claim_withTwoWorkers_runsTwoAtOnce() {
        var s = running(2)
        let a = s.enqueue(model: "m", now: 0), b = s.enqueue(model: "m", now: 0), c = s.enqueue(model: "m", now: 0)
        #expect(s.claim(a) == 0)
        #expect(s.claim(b) == 1)
        #expect(s.claim(c) == nil)
        #expect(s.busyCount == 2)
    }

    @Test func died_firstRestartIsImmediateThenBacksOff() {
        var s = running(1)
        #expect(s.claim(s.enqueue(model: "m", now: 0)) == 0)
        s.died(0, reason: "killed by signal SIGKILL (9)", now: 10)
        #expect(s.slots[0].state == .down)
        #expect(s.slots[0].lastExit == "killed by signal SIGKILL (9)")
        #expect(s.slotsToStart(now: 10) == [0])
        s.startFailed(0, reason: "exited with status 1", now: 11)
        #expect(s.slotsToStart(now: 11.5).isEmpty)
        #expect(s.nextRetry == 12)
        #expect(s.slotsToStart(now: 12) == [0])
        s.startFailed(0, reason: "exited with status 1", now: 12)
        #expect(s.nextRetry == 14)
        #expect(s.slots[0].restarts == 2)
    }

    @Test func backoff_growsToThirtySeconds() {
        #expect((0...8).map { WorkerPoolState.backoff(failures: $0) } == [0, 0, 1, 2, 4, 8, 16, 30, 30])
        #expect(WorkerPoolState.backoff(failures: 10_000) == 30)
    }

    @Test func finished_resetsTheFailureCount() {
        var s = running(1)
        _ = s.claim(s.enqueue(model: "m", now: 0))
        s.died(0, reason: "x", now: 0)
        _ = s.slotsToStart(now: 0)
        s.startFailed(0, reason: "y", now: 0)
        #expect(s.slots[0].failures == 2)
        _ = s.slotsToStart(now: 100)
        s.started(0, pid: 7)
        _ = s.claim(s.enqueue(model: "m", now: 100))
        s.finished(0, model: "m")
        #expect(s.slots[0].failures == 0)
        #expect(s.slots[0].requests == 1)
        s.died(0, reason: "z", now: 200)
        #expect(s.nextRetry == 200)
    }

    @Test func died_byTimeoutOrCancel_doesNotBackOff() {
        var s = running(1)
        for _ in 0..<3 {
            _ = s.claim(s.enqueue(model: "m", now: 0))
            s.died(0, reason: "killed by signal SIGKILL (9)", now: 50, failure: false)
            #expect(s.nextRetry == 50)
            _ = s.slotsToStart(now: 50)
            s.started(0, pid: 8)
        }
        #expect(s.slots[0].failures == 0)
    }

    @Test func startFailed_withoutLiveWorker_isVisibleToWaiters() {
        var s = WorkerPoolState(workers: 1)
        _ = s.enqueue(model: "m", now: 0)
        let seen = s.startFailures
        #expect(s.slotsToStart(now: 0) == [0])
        #expect(s.hasLiveWorker)
        s.startFailed(0, reason: "cannot start monailabel: no such file", now: 0)
        #expect(s.startFailures == seen + 1)
        #expect(!s.hasLiveWorker)
        #expect(s.lastStartError == "cannot start monailabel: no such file")
    }

    @Test func models_listWhatTheCurrentProcessRanAndResetOnRestart() {
        var s = running(1)
        for m in ["a", "b", "a"] {
            _ = s.claim(s.enqueue(model: m, now: 0))
            s.finished(0, model: m)
        }
        #expect(s.slots[0].models == ["a", "b"])
        s.died(0, reason: "x", now: 0)
        _ = s.slotsToStart(now: 0)
        #expect(s.slots[0].models.isEmpty)
    }

    @Test func startingSlot_isNotClaimed() {
        var s = WorkerPoolState(workers: 1)
        _ = s.slotsToStart(now: 0)
        let a = s.enqueue(model: "m", now: 0)
        #expect(s.claim(a) == nil)
        s.started(0, pid: 9)
        #expect(s.claim(a) == 0)
        #expect(s.slots[0].pid == 9)
    }
}

@Suite(.tags(.unit)) struct WorkerWireTests {
    @Test func reply_carriesTheErrorKindAndMessage() throws {
        for kind: MONAILabelError.Kind in [.notFound, .invalidInput, .notEnabled, .busy, .unavailable, .timedOut, .internalError,
                                             .badUpstream, .unusableImage] {
            let sent = WorkerWire.reply(.failure(MONAILabelError(kind, "roi_size must be positive")))
            var buffer = WorkerWire.frame(sent)
            let got = try WorkerWire.decodeReply(try #require(try WorkerWire.takeFrame(&buffer)))
            #expect(throws: MONAILabelError(kind, "roi_size must be positive")) { try got.get() }
            #expect(buffer.isEmpty)
        }
    }

    @Test func takeFrame_waitsForTheWholeFrame() throws {
        let job = WorkerJob(model: "m", imagePath: "/i.nii.gz", params: ["sw_overlap": 0.25], labelPath: "/l.bin")
        let bytes = WorkerWire.frame(job.json)
        var buffer = Array(bytes.prefix(bytes.count - 1))
        #expect(try WorkerWire.takeFrame(&buffer) == nil)
        buffer.append(bytes.last!)
        #expect(try WorkerJob(json: try #require(try WorkerWire.takeFrame(&buffer))) == job)
    }

    @Test func takeFrame_refusesAnOversizedLength() {
        var buffer: [UInt8] = [0x7f, 0xff, 0xff, 0xff, 0]
        #expect(throws: MONAILabelError.self) { try WorkerWire.takeFrame(&buffer) }
    }

    @Test func withoutPaths_keepsOnlyTheLastComponent() {
        #expect(OutputTail.withoutPaths("cannot open /home/u/app/model/x.pt: denied")
            == "cannot open x.pt: denied")
        #expect(OutputTail.withoutPaths("file '/tmp/a/b.nii.gz' and 1/2 ratio") == "file 'b.nii.gz' and 1/2 ratio")
    }
}

@Suite(.tags(.unit)) struct WorkerSettingsTests {
    @Test func workerMaxMemory_acceptsSuffixes() throws {
        let env = ["MONAI_LABEL_WORKER_MAX_MEMORY": "4G", "MONAI_LABEL_INFER_WORKERS": "2"]
        let s = try Settings.fromEnvironment(appDir: URL(fileURLWithPath: "/a"), studies: "/s", conf: [:], environment: env)
        #expect(s.workerMaxMemory == 4 << 30)
        #expect(s.inferWorkers == 2)
        #expect(Settings.byteCount("512m") == 512 << 20)
        #expect(Settings.byteCount("1536MiB") == 1536 << 20)
        #expect(Settings.byteCount("3000000") == 3_000_000)
        #expect(Settings.byteCount("1T") == 1 << 40)
    }

    @Test func workerMaxMemory_malformed_isRefusedNamingIt() {
        for bad in ["", "-1G", "0", "4X", "99999999999T", "1.5G"] {
            #expect(Settings.byteCount(bad) == nil)
            #expect(throws: MONAILabelError.self) {
                try Settings.fromEnvironment(appDir: URL(fileURLWithPath: "/a"), studies: "/s", conf: [:],
                                             environment: ["MONAI_LABEL_WORKER_MAX_MEMORY": bad])
            }
        }
    }

    @Test func workerAllocator_unknownValue_isRefusedNamingIt() {
        do {
            _ = try Settings.fromEnvironment(appDir: URL(fileURLWithPath: "/a"), studies: "/s", conf: [:],
                                             environment: ["MONAI_LABEL_WORKER_ALLOCATOR": "tcmalloc"])
            Issue.record("tcmalloc was accepted")
        } catch {
            #expect("\(error)".contains("MONAI_LABEL_WORKER_ALLOCATOR"), "\(error)")
        }
    }

    @Test func workerAllocator_launchEnvironment_preloadsJemallocOnlyWhenChosen() throws {
        let glibc = try Settings.fromEnvironment(appDir: URL(fileURLWithPath: "/a"), studies: "/s", conf: [:],
                                                 environment: ["MONAI_LABEL_WORKER_ALLOCATOR": "glibc"])
        #expect(InferWorkerPool.Launch.inferWorker(settings: glibc).environment["LD_PRELOAD"] == nil)
        let auto = try Settings.fromEnvironment(appDir: URL(fileURLWithPath: "/a"), studies: "/s", conf: [:], environment: [:])
        #expect(auto.workerAllocator == .auto)
        let preload = InferWorkerPool.Launch.inferWorker(settings: auto).environment["LD_PRELOAD"] ?? ""
        #expect(preload.contains(WorkerAllocator.jemallocPath) == WorkerAllocator.jemallocInstalled, "\(preload)")
    }

    @Test func inferWorkers_outOfRange_isRefused() {
        #expect(throws: MONAILabelError.self) {
            try Settings.fromEnvironment(appDir: URL(fileURLWithPath: "/a"), studies: "/s", conf: [:],
                                         environment: ["MONAI_LABEL_INFER_WORKERS": "-1"])
        }
    }

    @Test func workerMaxMemory_defaultsToHalfOfPhysicalMemory() {
        let s = Settings(appDir: URL(fileURLWithPath: "/a"), studies: "/s")
        #expect(s.effectiveWorkerMaxMemory == ProcessInfo.processInfo.physicalMemory / 2)
    }
}

/// The pool's refusals that need no working worker process.
@Suite(.tags(.unit)) struct InferWorkerPoolTests {
    func pool(_ executable: String) -> InferWorkerPool {
        InferWorkerPool(workers: 1, launch: .init(executable: URL(fileURLWithPath: executable), arguments: [],
                                                  environment: [:], maxMemory: 0))
    }

    @Test func run_oversizedParams_isRefusedBeforeAnyWorkerStarts() {
        let p = pool("/nonexistent/monailabel")
        let job = WorkerJob(model: "m", imagePath: "/i.nii.gz", params: ["x": .string(String(repeating: "a", count: 17 << 20))])
        #expect { try p.run(job) } throws: { ($0 as? MONAILabelError)?.kind == .invalidInput }
        #expect(p.snapshot.slots[0].starts == 0)
    }

    @Test func run_withAMissingRunner_is503NamingTheCause() {
        let p = pool("/nonexistent/monailabel")
        #expect {
            try p.run(WorkerJob(model: "m", imagePath: "/i.nii.gz", params: [:]), timeout: 60)
        } throws: { error in
            guard let e = error as? MONAILabelError else { return false }
            return e.kind == .unavailable && e.message.contains("could not start") && e.message.contains("monailabel")
        }
        // The first restart is immediate, so a second attempt may have failed too; then the backoff holds.
        let s = p.snapshot
        #expect(s.slots[0].state == .down || s.slots[0].state == .starting)
        #expect((1...3).contains(s.startFailures))
    }
}
