import Foundation
import MONAILabelCore

/// Whether `process` exits within `seconds`, as the kernel sees it: Foundation's `isRunning` and
/// `waitUntilExit()` can wait for an unrelated process as well (see `Process.hasExited`), and a test must never
/// wait unbounded.
public func processExits(_ process: Process, within seconds: TimeInterval) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while !process.hasExited {
        if Date() >= deadline { return false }
        usleep(20_000)
    }
    return true
}

/// Stops a long-lived child a test started (a server, Orthanc, a browser driver): `signal`, SIGKILL after
/// `grace` seconds, then at most `limit` seconds more for its end. Returns whether it ended; a test goes on
/// either way rather than hang the run (a process stuck in the kernel is the CI stage watchdog's to report).
@discardableResult
public func stopChild(_ process: Process, signal: Int32 = SIGTERM, grace: TimeInterval = 5,
                      limit: TimeInterval = 30) -> Bool
{
    let pid = process.processIdentifier
    guard pid > 0 else { return true }
    if signal != SIGKILL, !process.hasExited {
        kill(pid, signal)
        if processExits(process, within: grace) { return true }
    }
    if !process.hasExited { kill(pid, SIGKILL) }
    return processExits(process, within: limit)
}

/// The exit status of a `process` that is bound to end (run under `timeout`, or already killed), waited for as
/// the kernel sees it; a signal's number + 128 where one ended it, as a shell reports it.
public func exitStatus(of process: Process) -> Int32 {
    switch process.waitForExit() {
    case .exited(let status): status
    case .signalled(let signal): 128 + signal
    }
}

/// `arguments` prefixed so that `/usr/bin/timeout` runs them: after `limit` seconds the command (in its own
/// process group) gets SIGTERM, and SIGKILL 10 s later. For commands a test feeds or reads itself (where
/// `runProcess` does not fit).
public func bounded(_ executable: String, _ arguments: [String], limit: TimeInterval = processTimeLimit) -> [String] {
    ["--kill-after=10", "\(Int(limit))", executable] + arguments
}
