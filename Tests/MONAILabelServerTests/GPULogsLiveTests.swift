import Foundation
import Testing
import TestSupport
import MONAILabel
@testable import MONAILabelServer

/// `GET /logs/gpu` runs the `nvidia-smi` found on the server's `PATH`, as upstream does. Here a stand-in script
/// (a test double of the external tool, not of its result handling) sits first on the live server's `PATH`
/// and is rewritten between requests: its output comes back as text, a hanging one is stopped with a 504 after
/// `NvidiaSMI.timeout`, a flood is cut off, and none on `PATH` is a 404.
@Test(.tags(.live), .timeLimit(.minutes(14)))
func logsGPU_runsTheNvidiaSMIOnThePath_boundedInTimeAndSize() throws {
    let tmp = TempDir()
    let studies = tmp.url.appendingPathComponent("studies")
    try DemoStudies.write(to: studies, count: 1, labeled: 0, shape: [16, 16, 8], spacing: [1, 1, 1])
    let app = tmp.url.appendingPathComponent("app")
    try FileManager.default.createDirectory(at: app, withIntermediateDirectories: true)
    try FileManager.default.copyItem(at: repoRoot.appendingPathComponent("sample-apps/radiology/app.json"),
                                     to: app.appendingPathComponent("app.json"))
    let tools = tmp.url.appendingPathComponent("bin")
    try FileManager.default.createDirectory(at: tools, withIntermediateDirectories: true)
    let smi = tools.appendingPathComponent("nvidia-smi")
    func install(_ body: String) throws {
        // A new file each time: a running copy of the old one keeps its own inode.
        try? FileManager.default.removeItem(at: smi)
        try Data("#!/bin/sh\n\(body)\n".utf8).write(to: smi)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: smi.path)
    }
    let path = tools.path + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin")
    // Review-only: /logs/gpu needs no models.
    let server = try startJobServer(appDir: app, studies: studies.path, conf: ["models": "none"], environment: ["PATH": path])
    defer { server.stop() }
    func get() throws -> (status: Int, text: String, seconds: Double) {
        let t0 = Date()
        let (status, body) = try curl(server.port, "GET", "/logs/gpu")
        return (status, String(decoding: body, as: UTF8.self), Date().timeIntervalSince(t0))
    }

    try install("echo '| 0  NVIDIA H100 80GB HBM3  | 1234MiB / 81559MiB |  7%  Default |'")
    let ok = try get()
    #expect(ok.status == 200)
    #expect(ok.text == "| 0  NVIDIA H100 80GB HBM3  | 1234MiB / 81559MiB |  7%  Default |\n")

    // The driver's own failure text comes back as upstream returns it.
    try install("echo 'NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver.'; exit 9")
    let failed = try get()
    #expect(failed.status == 200)
    #expect(failed.text.hasPrefix("NVIDIA-SMI has failed"))

    try install("exec sleep 60")
    let hung = try get()
    #expect(hung.status == 504)
    #expect(hung.text.contains("nvidia-smi was stopped: it did not finish within \(Int(NvidiaSMI.timeout)) s"), "\(hung.text)")
    #expect(hung.seconds < NvidiaSMI.timeout + 5, "answered after \(hung.seconds) s")

    try install("exec yes 'GPU 0: NVIDIA H100 80GB HBM3'")
    let flood = try get()
    #expect(flood.status == 500)
    #expect(flood.text.contains("nvidia-smi was stopped: it wrote more than \(NvidiaSMI.maxOutput) bytes"), "\(flood.text.prefix(200))")

    try FileManager.default.removeItem(at: smi)
    let missing = try get()
    let onSystem = NvidiaSMI.locate(searchPath: path) != nil
    #expect(missing.status == (onSystem ? 200 : 404))
    if !onSystem { #expect(missing.text.contains("nvidia-smi is not available on this server")) }
}

@Test(.tags(.unit)) func nvidiaSMI_locate_takesTheFirstExecutableOnThePath_ignoringRelativeEntries() throws {
    let tmp = TempDir()
    let a = tmp.url.appendingPathComponent("a"), b = tmp.url.appendingPathComponent("b")
    for dir in [a, b] {
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try Data("#!/bin/sh\n".utf8).write(to: dir.appendingPathComponent("nvidia-smi"))
    }
    // Not executable in a: b's is taken.
    try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: b.appendingPathComponent("nvidia-smi").path)
    #expect(NvidiaSMI.locate(searchPath: "relative:\(a.path):\(b.path)")?.path == b.appendingPathComponent("nvidia-smi").path)
    #expect(NvidiaSMI.locate(searchPath: "\(a.path)") == nil)
    #expect(NvidiaSMI.locate(searchPath: "") == nil)
}
