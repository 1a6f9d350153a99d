import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// One worker process: its socket, its output tail and its private folder.
final class WorkerHandle: @unchecked Sendable {
    let slot: Int
    let process: Process
    let fd: Int32
    let folder: URL
    let tail = OutputTail()
    private var buffer: [UInt8] = []
    private let lock = NSLock()
    private var exitHandler: (@Sendable (WorkerHandle) -> Void)?
    private var exited = false

    var pid: Int32 { process.processIdentifier }

    /// Called once when the process has ended (set after the handshake).
    var onExit: (@Sendable (WorkerHandle) -> Void)? {
        get { lock.withLock { exitHandler } }
        set {
            let fireNow = lock.withLock { () -> Bool in
                exitHandler = newValue
                return exited
            }
            if fireNow, let newValue { newValue(self) }
        }
    }

    private init(slot: Int, process: Process, fd: Int32, folder: URL) {
        self.slot = slot
        self.process = process
        self.fd = fd
        self.folder = folder
    }

    deinit { close(fd) }

    /// Starts the worker of `slot`; a model worker is told the device it serves (`MONAI_LABEL_WORKER_DEVICE`).
    static func spawn(slot: Int, device: String? = nil, launch: InferWorkerPool.Launch, under root: URL,
                      log: @escaping @Sendable (String) -> Void) -> Result<WorkerHandle, MONAILabelError>
    {
        var fds: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else {
            return .failure(.io("socketpair failed: \(String(cString: strerror(errno)))"))
        }
        let folder = root.appendingPathComponent("worker-\(slot)-\(UUID().uuidString.prefix(8).lowercased())")
        do {
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
        } catch {
            close(fds[0])
            close(fds[1])
            return .failure(.io("cannot create the worker's folder: \(error.localizedDescription)"))
        }
        let p = Process()
        p.executableURL = launch.executable
        p.arguments = launch.arguments + ["--max-memory", String(launch.maxMemory)]
        var env = ProcessInfo.processInfo.environment
        for (k, v) in launch.environment { env[k] = v }
        env["TMPDIR"] = folder.path
        if let device { env[InferWorker.deviceVariable] = device }
        p.environment = env
        p.standardInput = FileHandle(fileDescriptor: fds[1], closeOnDealloc: false)
        // Not a Pipe: one another spawn inherits would outlive this worker (see `ChildOutput`).
        let output: ChildOutput
        do { output = try ChildOutput() } catch {
            close(fds[0])
            close(fds[1])
            try? FileManager.default.removeItem(at: folder)
            return .failure(.io("cannot start \(launch.executable.lastPathComponent): \(error.localizedDescription)"))
        }
        p.standardOutput = output.writing
        p.standardError = output.writing
        let h = WorkerHandle(slot: slot, process: p, fd: fds[0], folder: folder)
        p.terminationHandler = { [weak h] _ in h?.processEnded() }
        defer { output.closeChildEnd() }
        do {
            try p.run()
        } catch {
            close(fds[1])
            try? FileManager.default.removeItem(at: folder)
            return .failure(.io("cannot start \(launch.executable.lastPathComponent): \(error.localizedDescription)"))
        }
        close(fds[1])
        let reader = output.reading
        let tail = h.tail
        let t = Thread {
            var pending: [UInt8] = []
            while true {
                let data = reader.availableData
                if data.isEmpty { break }
                pending += data
                while let nl = pending.firstIndex(of: 10) {
                    let line = String(decoding: pending[..<nl], as: UTF8.self)
                    pending.removeSubrange(...nl)
                    tail.append(line)
                    log("worker \(slot): \(line)")
                }
            }
            if !pending.isEmpty { tail.append(String(decoding: pending, as: UTF8.self)) }
        }
        t.name = "infer-worker-output-\(slot)"
        t.start()
        return .success(h)
    }

    private func processEnded() {
        let handler = lock.withLock { () -> (@Sendable (WorkerHandle) -> Void)? in
            exited = true
            return exitHandler
        }
        handler?(self)
    }

    enum Wait {
        case frame(JSONValue), eof, timedOut, cancelled, broken(String)
    }

    /// Waits for the worker's next message, checking `isCancelled` and `deadline` ten times a second.
    func await(deadline: Double?, isCancelled: (@Sendable () -> Bool)?) -> Wait {
        var chunk = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            do {
                if let v = try WorkerWire.takeFrame(&buffer) { return .frame(v) }
            } catch {
                return .broken("\(error)")
            }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let r = poll(&pfd, 1, 100)
            if r > 0 {
                let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
                if n < 0 && (errno == EINTR || errno == EAGAIN) { continue }
                if n <= 0 { return .eof }
                buffer += chunk[0..<n]
                continue
            }
            if r < 0 && errno != EINTR { return .broken(String(cString: strerror(errno))) }
            if isCancelled?() == true { return .cancelled }
            if let deadline, InferWorkerPool.now() >= deadline { return .timedOut }
        }
    }

    func kill() {
        if !process.hasExited { Glibc.kill(process.processIdentifier, SIGKILL) }
    }

    /// Waits for the process to end (killing it if it lingers after closing its socket) and describes how.
    @discardableResult
    func reap() -> String {
        var waited = 0
        while !process.hasExited && waited < 200 {
            usleep(10_000)
            waited += 1
        }
        if !process.hasExited { kill() }
        return exitDescription()
    }

    /// How the process ended, from the kernel (not Foundation's view of the exit, which an unrelated process can
    /// hold up: see `hasExited`); "still running" before it has.
    func exitDescription() -> String {
        guard process.hasExited else { return "still running" }
        switch process.waitForExit() {
        case .exited(let status): return "exited with status \(status)"
        case .signalled(let signal): return "killed by signal \(Self.signalName(signal))"
        }
    }

    func removeFolder() {
        try? FileManager.default.removeItem(at: folder)
    }

    static func signalName(_ s: Int32) -> String {
        let names: [Int32: String] = [
            SIGKILL: "SIGKILL", SIGABRT: "SIGABRT", SIGSEGV: "SIGSEGV", SIGBUS: "SIGBUS", SIGILL: "SIGILL",
            SIGTRAP: "SIGTRAP", SIGFPE: "SIGFPE", SIGTERM: "SIGTERM", SIGINT: "SIGINT", SIGXCPU: "SIGXCPU",
        ]
        return names[s].map { "\($0) (\(s))" } ?? "\(s)"
    }
}

/// The last lines a worker printed, with absolute paths reduced to their last component (they end up in
/// error details the client sees).
final class OutputTail: @unchecked Sendable {
    private let lock = NSLock()
    private var kept: [String] = []
    let limit: Int

    init(limit: Int = 5) { self.limit = limit }

    func append(_ line: String) {
        let clean = Self.withoutPaths(String(line.prefix(400)))
        guard !clean.trimmingCharacters(in: .whitespaces).isEmpty else { return }
        lock.withLock {
            kept.append(clean)
            if kept.count > limit { kept.removeFirst(kept.count - limit) }
        }
    }

    func lines() -> [String] { lock.withLock { kept } }

    func clear() { lock.withLock { kept.removeAll() } }

    /// Replaces every absolute path (`/a/b/c`) by its last component.
    static func withoutPaths(_ s: String) -> String {
        var out = ""
        var token = ""
        func flush() {
            if token.hasPrefix("/"), token.dropFirst().contains("/") {
                // Punctuation after the path (`file.pt:`) stays.
                var path = Substring(token), suffix = ""
                while let last = path.last, ":,;)]'\"".contains(last) {
                    suffix = String(last) + suffix
                    path = path.dropLast()
                }
                out += (path.split(separator: "/").last.map(String.init) ?? "") + suffix
            } else {
                out += token
            }
            token = ""
        }
        for c in s {
            if c == " " || c == "'" || c == "\"" || c == "(" || c == "=" {
                flush()
                out.append(c)
            } else {
                token.append(c)
            }
        }
        flush()
        return out
    }
}
