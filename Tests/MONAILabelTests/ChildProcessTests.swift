import Foundation
import Synchronization
import Testing
@testable import MONAILabelCore

#if canImport(Glibc)
import Glibc
#endif

/// Starts `/bin/sleep 60` the way any spawn sees descriptors made after it listed them (as `Process.run` does
/// when another thread makes a pipe between its listing and its spawn): with no file actions, so everything
/// not close-on-exec is inherited.
private func spawnInheritingSleeper() throws -> pid_t {
    var pid: pid_t = 0
    let argv: [UnsafeMutablePointer<CChar>?] = [strdup("/bin/sleep"), strdup("60"), nil]
    defer { for a in argv { free(a) } }
    let status = posix_spawn(&pid, "/bin/sleep", nil, nil, argv, environ)
    guard status == 0 else { throw MONAILabelError.io("posix_spawn: \(status)") }
    return pid
}

/// Starts `/bin/sh -c script` with its stdout and stderr on `output`.
private func shell(_ script: String, output: FileHandle) throws -> Process {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/sh")
    p.arguments = ["-c", script]
    p.standardOutput = output
    p.standardError = output
    try p.run()
    return p
}

/// `body`'s result when it returns within `seconds` on a thread of its own, else nil: a regressed wait fails
/// its test instead of hanging the run.
private func within<T: Sendable>(_ seconds: Double, _ body: @escaping @Sendable () -> T) -> T? {
    let result = Mutex<T?>(nil)
    let done = DispatchSemaphore(value: 0)
    Thread {
        let value = body()
        result.withLock { $0 = value }
        done.signal()
    }.start()
    guard done.wait(timeout: .now() + seconds) == .success else { return nil }
    return result.withLock { $0 }
}

/// A child's output channel reaches end-of-file when the child exits although another long-lived process was
/// spawned while it was open: before, the job's `Pipe()` leaked into such a process (a model worker started
/// beside a start-up scoring job) and the finished job stayed RUNNING as long as that process lived.
@Test(.tags(.unit))
func childOutput_anotherProcessSpawnedMeanwhile_doesNotHoldItOpen() throws {
    let output = try ChildOutput()
    for handle in [output.reading, output.writing] {
        #expect(fcntl(handle.fileDescriptor, F_GETFD) & FD_CLOEXEC != 0)
    }
    let sleeper = try spawnInheritingSleeper()
    defer {
        kill(sleeper, SIGKILL)
        var status: Int32 = 0
        waitpid(sleeper, &status, 0)
    }
    let p = try shell("echo out; echo err >&2", output: output.writing)
    output.closeChildEnd()
    let reader = output.reading
    let text = within(20) { String(decoding: reader.readDataToEndOfFile(), as: UTF8.self) }
    #expect(text != nil, "no end-of-file 20 s after the child wrote its output: another process holds the channel")
    if let text { #expect(text == "out\nerr\n") }
    p.waitUntilExit()
}

/// A child that exits while a process it started lives on (holding, as a process another thread spawns during
/// `run()` does, the socket Foundation watches for the exit): `waitForExit` and `hasExited` see the exit at once,
/// where `waitUntilExit` waited for the other process too.
@Test(.tags(.unit))
func waitForExit_anotherProcessHoldsFoundationsExitSocket_seesTheExitAtOnce() throws {
    let tmp = TempDir()
    let pidFile = tmp.url.appendingPathComponent("left-behind.pid")
    let p = try shell("sleep 600 < /dev/null > /dev/null 2>&1 & echo $! > '\(pidFile.path)'; exit 3",
                      output: FileHandle.nullDevice)
    // Killing the process left behind ends a regressed wait (and Foundation's own).
    defer {
        if let text = try? String(contentsOf: pidFile, encoding: .utf8),
           let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)) {
            kill(pid, SIGKILL)
        }
        p.waitUntilExit()
    }
    let exit = within(20) { p.waitForExit() }
    #expect(exit != nil, "waitForExit still waiting 20 s after the child exited")
    #expect(exit == .exited(3))
    #expect(p.hasExited)
}

/// A child killed by a signal is reported as such.
@Test(.tags(.unit))
func waitForExit_killedChild_reportsTheSignal() throws {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/sleep")
    p.arguments = ["600"]
    try p.run()
    #expect(!p.hasExited)
    kill(p.processIdentifier, SIGKILL)
    #expect(p.waitForExit() == .signalled(SIGKILL))
    #expect(p.hasExited)
}
