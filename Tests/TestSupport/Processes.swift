import Foundation
import MONAILabelCore

/// How long `runProcess` lets a command run by default: far beyond any tool or client script the tests run
/// (the slowest take about a minute on a busy 2-core machine), so that only a hang reaches it.
public let processTimeLimit: TimeInterval = 600

/// Runs `executable` with `arguments`, `environment` added to this process's; returns its exit status and its
/// output (stdout + stderr).
///
/// A test must never wait forever (Swift Testing's time limits cannot stop a blocked test, and one blocked
/// test holds the whole run open): the command runs under coreutils' `timeout` in its own process group, so
/// after `timeLimit` seconds it and everything it started are killed; the status is then 124 (or 137) and the
/// output says so. Its output comes through a close-on-exec channel (`ChildOutput`) and its exit is taken from
/// the kernel (`exitStatus(of:)`): a pipe or Foundation's exit socket inherited by a process another test starts
/// meanwhile would otherwise make this wait for that process too.
public func runProcess(_ executable: URL, _ arguments: [String], environment: [String: String] = [:],
                       timeLimit: TimeInterval = processTimeLimit) throws -> (status: Int32, output: String)
{
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/timeout")
    p.arguments = bounded(executable.path, arguments, limit: timeLimit)
    p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    let out = try ChildOutput()
    p.standardOutput = out.writing
    p.standardError = out.writing
    defer { out.closeChildEnd() }
    try p.run()
    out.closeChildEnd()
    var text = String(decoding: out.reading.readDataToEndOfFile(), as: UTF8.self)
    let status = exitStatus(of: p)
    if status == 124 || status == 137 {
        text += "\n[\(executable.lastPathComponent) was killed after the tests' \(Int(timeLimit)) s time limit]"
    }
    return (status, text)
}

/// `command` on PATH, or nil.
public func which(_ command: String) -> URL? {
    for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":") {
        let url = URL(fileURLWithPath: String(dir)).appendingPathComponent(command)
        if FileManager.default.isExecutableFile(atPath: url.path) { return url }
    }
    return nil
}
