import Foundation
import MONAILabel

#if canImport(Glibc)
import Glibc
#endif

/// Runs `nvidia-smi` for `GET /logs/gpu` as upstream does (`subprocess.run(["nvidia-smi"])`: found on `PATH`,
/// its standard output returned as text), but bounded: a driver in a bad state can make it hang, and its output
/// is held in memory, so it is killed after `timeout` seconds or past `maxOutput` bytes.
enum NvidiaSMI {
    /// Seconds one run may take: a healthy nvidia-smi answers in well under a second per GPU.
    static let timeout: Double = 10
    /// Bytes of output kept: a many-GPU host with hundreds of processes writes some tens of kilobytes.
    static let maxOutput = 1 << 20

    /// The first executable `nvidia-smi` in the colon-separated `searchPath` (relative entries ignored, as a
    /// server's working folder is no place to find tools).
    static func locate(searchPath: String) -> URL? {
        for dir in searchPath.split(separator: ":") where dir.hasPrefix("/") {
            let candidate = URL(fileURLWithPath: String(dir)).appendingPathComponent("nvidia-smi")
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
        }
        return nil
    }

    /// nvidia-smi's report, found on `searchPath`. Missing: 404; killed for time: 504; killed for size or failed
    /// without output: 500. A run that exits non-zero with output (the driver's own error text) is returned as
    /// upstream returns it.
    static func report(searchPath: String, timeout: Double = timeout, maxOutput: Int = maxOutput) throws -> String {
        guard let exe = locate(searchPath: searchPath) else {
            throw MONAILabelError.notFound("nvidia-smi is not available on this server (not found on its PATH)")
        }
        let p = Process()
        p.executableURL = exe
        p.arguments = []
        p.standardInput = FileHandle.nullDevice
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        let stdout = CappedBuffer(limit: maxOutput + 1), stderr = CappedBuffer(limit: 2048)
        // Drained as it arrives (a full pipe would stall the tool), each signalling its end of file.
        let ended = DispatchSemaphore(value: 0)
        for (pipe, buffer) in [(out, stdout), (err, stderr)] {
            pipe.fileHandleForReading.readabilityHandler = { h in
                let d = h.availableData
                if d.isEmpty {
                    h.readabilityHandler = nil
                    ended.signal()
                } else {
                    buffer.append(d)
                }
            }
        }
        defer {
            out.fileHandleForReading.readabilityHandler = nil
            err.fileHandleForReading.readabilityHandler = nil
        }
        do {
            try p.run()
        } catch {
            throw MONAILabelError.io("cannot run nvidia-smi: \(error.localizedDescription)")
        }
        let deadline = Date().addingTimeInterval(timeout)
        var killedFor: String?
        // hasExited, not isRunning: Foundation can see the exit only when an unrelated process exits too.
        while !p.hasExited {
            if Date() >= deadline {
                killedFor = "it did not finish within \(Int(timeout)) s"
            } else if stdout.count > maxOutput {
                killedFor = "it wrote more than \(maxOutput) bytes"
            }
            if killedFor != nil {
                kill(p.processIdentifier, SIGKILL)
                break
            }
            usleep(10_000)
        }
        let status: Int32
        switch p.waitForExit() {
        case .exited(let s), .signalled(let s): status = s
        }
        if killedFor == nil {
            // The last output may still be in the pipes; a child the tool left behind could hold them open, so
            // the wait for their ends is short.
            for _ in 0..<2 { _ = ended.wait(timeout: .now() + 1) }
        }
        if let killedFor {
            throw MONAILabelError(killedFor.hasPrefix("it did not") ? .timedOut : .internalError,
                                  "nvidia-smi was stopped: \(killedFor)")
        }
        if stdout.count > maxOutput {
            throw MONAILabelError.io("nvidia-smi was stopped: it wrote more than \(maxOutput) bytes")
        }
        let text = stdout.text
        if status != 0 && text.isEmpty {
            let why = stderr.text.trimmingCharacters(in: .whitespacesAndNewlines)
            throw MONAILabelError.io("nvidia-smi exited with status \(status)\(why.isEmpty ? "" : ": \(why)")")
        }
        return text
    }
}
