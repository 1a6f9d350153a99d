import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The channel a child process writes its stdout and stderr to, whose descriptors are close-on-exec from the
/// moment they exist (a Unix socket pair; a socket reads like a pipe).
///
/// Not Foundation's `Pipe()`: its descriptors are inheritable, and `Process.run` closes in its child only the
/// descriptors it listed a moment before spawning, so a pipe another thread makes in that window leaks into that
/// child. When that child is long-lived (a model worker, a training rank, another job), whoever reads the pipe to
/// end-of-file waits until the unrelated process exits (the same leak as Foundation's exit socket's, see
/// `Process.hasExited`).
public final class ChildOutput: Sendable {
    /// The parent's end: read the child's output from it until end-of-file.
    public let reading: FileHandle
    /// The child's end: the process's `standardOutput` (and `standardError`). Call `closeChildEnd()` once the
    /// process runs (or failed to start), or end-of-file never comes.
    public let writing: FileHandle

    public init() throws {
        var fds: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else {
            throw MONAILabelError.io("cannot create a child's output channel: \(String(cString: strerror(errno)))")
        }
        // The parent only reads and the child only writes.
        shutdown(fds[0], Int32(SHUT_WR))
        shutdown(fds[1], Int32(SHUT_RD))
        reading = FileHandle(fileDescriptor: fds[0], closeOnDealloc: true)
        writing = FileHandle(fileDescriptor: fds[1], closeOnDealloc: true)
    }

    /// Closes the parent's copy of the child's end, so that end-of-file comes when the child (and whatever it
    /// passed its output on to) has exited.
    public func closeChildEnd() {
        try? writing.close()
    }
}

/// How a child process ended.
public enum ChildExit: Equatable, Sendable {
    case exited(Int32)
    case signalled(Int32)
}

/// A child's end as the kernel sees it, not as Foundation reports it.
///
/// Foundation learns that a child ended when a socket the child inherited reaches end-of-file; that socket is
/// not close-on-exec, so a process another thread spawns during `run()` inherits it too, and `isRunning`,
/// `waitUntilExit()` and `terminationHandler` then wait for that unrelated process as well (so does a process the
/// child left behind). A scoring job whose child had printed its last line stayed RUNNING that way in CI, where
/// the tests spawn servers, Orthanc and browsers beside in-process servers; a server spawning a model worker
/// beside its start-up scoring job is exposed the same way. `waitid` with `WNOWAIT` sees the exit at once and
/// leaves the reaping to Foundation.
extension Process {
    /// Whether the started process has exited.
    public var hasExited: Bool {
        let pid = processIdentifier
        guard pid > 0 else { return false }
        if !isRunning { return true }
        var info = siginfo_t()
        if waitid(P_PID, id_t(pid), &info, WEXITED | WNOWAIT | WNOHANG) == 0 {
            return info._sifields._sigchld.si_pid == pid
        }
        // Foundation reaped it between the two looks.
        return errno == ECHILD
    }

    /// Waits until the started process has exited and says how.
    public func waitForExit() -> ChildExit {
        let pid = processIdentifier
        if pid > 0, isRunning {
            var info = siginfo_t()
            var r: Int32
            repeat { r = waitid(P_PID, id_t(pid), &info, WEXITED | WNOWAIT) } while r == -1 && errno == EINTR
            if r == 0 {
                let status = info._sifields._sigchld.si_status
                return info.si_code == Int32(CLD_EXITED) ? .exited(status) : .signalled(status)
            }
        }
        // Foundation has reaped it (or is about to): its record is the answer.
        waitUntilExit()
        return terminationReason == .exit ? .exited(terminationStatus) : .signalled(terminationStatus)
    }
}
