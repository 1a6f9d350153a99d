import Foundation
import TorchKit

#if canImport(Glibc)
import Glibc
#endif

/// The worker side of `InferWorkerPool` (`monailabel infer_worker`): builds the app once on a read-only view
/// of the datastore, keeps its models loaded (each task reloads its weights when the file on disk changes,
/// so published weights reach every worker on their next request), and answers jobs from the server on
/// stdin, a Unix socket, until the server closes it.
public enum InferWorker {
    /// The environment variable that tells a model worker its device (`cuda:1`, `cpu`): where it runs requests
    /// that name none, and where `--conf preload` loads its networks.
    public static let deviceVariable = "MONAI_LABEL_WORKER_DEVICE"

    public static func serve(appDir: String, studies: String, conf: [String: String], maxMemory: UInt64,
                             environment: [String: String] = ProcessInfo.processInfo.environment) throws
    {
        ChildProcess.unblockSignals()
        ChildProcess.exitWhenOrphaned()
        if maxMemory > 0 { try limitMemory(maxMemory) }
        let app = URL(fileURLWithPath: appDir).standardizedFileURL
        var settings = try Settings.fromEnvironment(appDir: app, studies: studies, conf: conf, environment: environment)
        settings.applyProcessLimits()
        // This process is the worker: its own app runs the models itself.
        settings.inferWorkers = 0
        settings.sessions = false
        TorchRuntime.configureThreads(settings)
        // Read-only: the server owns the datastore document; paths come resolved in every job.
        let datastore = try LocalDatastore(root: URL(fileURLWithPath: studies), patterns: settings.datastoreFileExt,
                                           readOnly: true, autoReload: false)
        let monai = try MONAILabelApp(settings: settings, datastore: datastore)
        let device = try workerDevice(environment)
        // `--conf preload true`: the networks load before the worker reports ready, not on the first request.
        if monai.conf.preload { try monai.preloadModels(device: device) }
        // Jobs run on a secondary thread, as on the server's request threads when models run in-process: on
        // the main thread a warm 96x96x64 segmentation_spleen request measured 1.6-2x the CPU time (2.2-2.8 s
        // against 1.3-1.5 s, release build, 2 torch threads), presumably glibc's main heap handing memory back
        // and faulting it in again on every request.
        let outcome = WorkerOutcome()
        let t = Thread { outcome.finish { try serveJobs(monai, device: device, maxMemory: maxMemory) } }
        t.name = "infer-worker-jobs"
        t.stackSize = 8 << 20
        t.start()
        try outcome.wait()
    }

    /// glibc's malloc settings for a model worker that runs glibc's malloc (`WorkerAllocator.glibc`, or `auto`
    /// without libjemalloc2; `GLIBC_TUNABLES`, read at process start; an inherited value is kept instead): blocks
    /// of 4 MiB and more get their own mappings, unmapped when freed, and those mappings use
    /// transparent huge pages where the kernel offers them on request (`madvise`). By default glibc raises that
    /// threshold up to 32 MiB as large blocks are freed, after which activations come from arenas that fragment
    /// and keep freed pages: a warm 96x96x64 segmentation_spleen request peaked at 567-643 MB instead of 485 MB
    /// (release, Debian's libtorch 1.13, 2 threads). The huge pages keep the fresh mappings' page faults cheap:
    /// with 4 KiB pages the same requests took 1.4x the CPU time.
    public static let mallocTunables = "glibc.malloc.mmap_threshold=4194304:glibc.malloc.hugetlb=1"

    /// jemalloc's settings for a model worker (`MALLOC_CONF`; an inherited value is kept instead). With
    /// glibc's malloc a worker either faults fresh mappings in on every request (the tunables above: about one
    /// warm 96x96x64 request in three took 0.3-0.5 s longer on huge-page faults) or keeps fragmented arenas
    /// (glibc's defaults: peaks of 560-650 MB). jemalloc reuses freed extents within and across requests and
    /// purges them `dirty_decay_ms` after they were freed, or when the idle trim runs (`ProcessMemory.trim`).
    /// `oversize_threshold:0` keeps the large activation blocks in the ordinary arenas: by default blocks of
    /// 8 MiB and more go to an arena that purges them at once, which faults them in again on every window.
    /// Measured (release, Debian's libtorch 1.13, 2 threads, interleaved with the glibc settings on the same
    /// servers): 96x96x64 network stage median 0.53 s (max 0.56) at a 553 MB peak, against 1.19 s (max 2.25)
    /// at 455 MB with the tunables above and 0.72 s at 654 MB with glibc's defaults.
    public static let jemallocConf = "background_thread:true,oversize_threshold:0,dirty_decay_ms:5000,muzzy_decay_ms:0"

    /// The worker's device from `MONAI_LABEL_WORKER_DEVICE` (checked against the backend's devices); the
    /// backend's first device when unset.
    static func workerDevice(_ environment: [String: String]) throws -> Device {
        guard let name = environment[deviceVariable], !name.isEmpty else { return .best }
        do {
            return try Device(parsing: name)
        } catch {
            throw MONAILabelError.invalid("\(deviceVariable): \(error.message)")
        }
    }

    private static func serveJobs(_ monai: MONAILabelApp, device: Device, maxMemory: UInt64) throws {
        let channel: Int32 = 0
        let hello: JSONValue = ["ready": true, "pid": .int(Int(getpid())), "device": .string(device.description)]
        guard WorkerWire.writeAll(channel, WorkerWire.frame(hello)) else { return }
        // After `ready`, so the server does not wait: a job sent meanwhile waits on the socket for the warm model.
        if monai.preloadsModels {
            monai.prewarmModels(device: device) { FileHandle.standardError.write(Data("\($0)\n".utf8)) }
        }
        var buffer: [UInt8] = []
        while let message = try WorkerWire.readFrame(channel, &buffer) {
            let result: Result<InferResult, MONAILabelError>
            do {
                let job = try WorkerJob(json: message)
                result = .success(try monai.runModel(job, device: device))
            } catch let e as MONAILabelError where e.message.contains("out of memory on cpu") {
                result = .failure(MONAILabelError(e.kind, e.message
                    + " (the model worker's memory limit is \(InferWorkerPool.bytesText(maxMemory)): MONAI_LABEL_WORKER_MAX_MEMORY)"))
            } catch let e as MONAILabelError {
                result = .failure(e)
            } catch {
                // Not a domain error (libtorch, imaging): a 500 that says what failed, with no server paths.
                var message = OutputTail.withoutPaths("\(error)")
                if message.contains("allocate memory") {
                    message += " (the model worker's memory limit is \(InferWorkerPool.bytesText(maxMemory)): MONAI_LABEL_WORKER_MAX_MEMORY)"
                }
                result = .failure(.io(message))
            }
            if case .failure(let e) = result { FileHandle.standardError.write(Data("infer failed: \(e.message)\n".utf8)) }
            guard WorkerWire.writeAll(channel, WorkerWire.frame(WorkerWire.reply(result))) else { return }
        }
    }

    /// Caps the data segment (heap and private mappings: what tensors and volumes allocate). RLIMIT_DATA
    /// rather than RLIMIT_AS: libtorch and glibc reserve address space they never touch (thread stacks,
    /// malloc arenas, CUDA's unified address space), which an address-space limit would count.
    static func limitMemory(_ bytes: UInt64) throws {
        var lim = rlimit(rlim_cur: rlim_t(bytes), rlim_max: rlim_t(bytes))
        guard setrlimit(Int32(RLIMIT_DATA.rawValue), &lim) == 0 else {
            throw MONAILabelError.io("cannot set the worker memory limit: \(String(cString: strerror(errno)))")
        }
    }
}

/// The job thread's end, handed to the main thread.
private final class WorkerOutcome: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private var error: (any Error)?

    func finish(_ body: () throws -> Void) {
        do { try body() } catch { self.error = error }
        done.signal()
    }

    func wait() throws {
        done.wait()
        if let error { throw error }
    }
}

/// What every child process of the server does first (background jobs and model workers).
public enum ChildProcess {
    /// The server starts children from threads whose signal mask blocks SIGTERM, and a child inherits it:
    /// unblocked here (before any thread starts) so that a stop ends the child at once.
    public static func unblockSignals() {
        var none = sigset_t()
        sigemptyset(&none)
        pthread_sigmask(SIG_SETMASK, &none, nil)
    }

    /// A child must not outlive its server (a crashed server cannot stop it, and a restarted one would not know
    /// it): exit once re-parented.
    public static func exitWhenOrphaned(onExit: @escaping @Sendable (Int32) -> Void = { _ in }) {
        let parent = getppid()
        let t = Thread {
            while getppid() == parent { sleep(1) }
            onExit(parent)
            end(2)
        }
        t.name = "parent-watch"
        t.start()
    }

    /// Ends the child without running exit handlers: `exit` would run libtorch's and DCMTK's static destructors
    /// while their thread pools (and this file's parent watch) still run, and two threads in `exit` at once
    /// (the watch seeing the server gone while the main thread returns on the closed socket) corrupt glibc's
    /// handler list; both showed as general protection faults in `__run_exit_handlers`. Everything a child
    /// writes that matters is already synced to disk or sent on its socket; stdio is flushed here.
    public static func end(_ code: Int32) -> Never {
        fflush(nil)
        _exit(code)
    }
}

/// The heap allocator model workers run with (`MONAI_LABEL_WORKER_ALLOCATOR`).
public enum WorkerAllocator: String, Sendable {
    /// jemalloc where it is installed (`jemallocPath`), else glibc's malloc.
    case auto
    /// glibc's malloc with `InferWorker.mallocTunables`.
    case glibc
    /// jemalloc, preloaded into the worker (`LD_PRELOAD`) with `InferWorker.jemallocConf`.
    case jemalloc

    /// Where Debian's libjemalloc2 installs the library for this machine's architecture.
    public static let jemallocPath: String = {
        #if arch(arm64)
        return "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2"
        #else
        return "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
        #endif
    }()

    /// Whether `jemallocPath` exists and can be read.
    public static var jemallocInstalled: Bool { FileManager.default.isReadableFile(atPath: jemallocPath) }

    /// `auto` decided by whether jemalloc is installed; the other cases as they are.
    public var resolved: WorkerAllocator {
        self == .auto ? (Self.jemallocInstalled ? .jemalloc : .glibc) : self
    }
}

extension InferWorkerPool.Launch {
    /// The server's own executable as `monailabel infer_worker` on this app and studies folder, with the
    /// settings a worker needs that are not in the inherited environment.
    public static func inferWorker(settings: Settings) -> Self {
        var env = ["MONAI_LABEL_DATASTORE_AUTO_RELOAD": "false", "MONAI_LABEL_SESSIONS": "false"]
        if settings.torchThreads > 0 { env["MONAI_LABEL_TORCH_THREADS"] = String(settings.torchThreads) }
        env["MONAI_LABEL_DATASTORE_FILE_EXT"] = JSONValue.array(settings.datastoreFileExt.map { .string($0) }).compactString()
        // A crashing worker must end at once: Swift's backtracer would hold the dying process (and so its
        // request) for minutes while it symbolicates. The runtime's own fatal-error line still reaches the log.
        env["SWIFT_BACKTRACE"] = "enable=no"
        let inherited = ProcessInfo.processInfo.environment
        switch settings.workerAllocator.resolved {
        case .jemalloc:
            let preload = inherited["LD_PRELOAD"].flatMap { $0.isEmpty ? nil : $0 }
            env["LD_PRELOAD"] = [WorkerAllocator.jemallocPath, preload].compactMap { $0 }.joined(separator: ":")
            if inherited["MALLOC_CONF"] == nil { env["MALLOC_CONF"] = InferWorker.jemallocConf }
        default:
            if inherited["GLIBC_TUNABLES"] == nil { env["GLIBC_TUNABLES"] = InferWorker.mallocTunables }
        }
        var args = ["infer_worker", "--app", settings.appDir.path, "--studies", settings.studies]
        for (k, v) in settings.conf.sorted(by: { $0.key < $1.key }) { args += ["--conf", k, v] }
        return Self(executable: settings.childExecutable, arguments: args, environment: env,
                    maxMemory: settings.effectiveWorkerMaxMemory)
    }
}
