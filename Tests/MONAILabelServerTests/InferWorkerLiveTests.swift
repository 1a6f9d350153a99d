import Foundation
import Testing
import TestSupport
import MONAILabel
@testable import MONAILabelServer

/// Model workers with the real server and real `monailabel infer_worker` processes: a worker's death fails only
/// its request, a client that leaves or a request past MONAI_LABEL_INFER_TIMEOUT stops its worker, the queue
/// report shows who waits where, and published weights reach the workers.
@Suite(.tags(.live), .serialized) struct InferWorkerLiveTests {
    /// A runaway request: 16^3 windows at 0.97 overlap over the 64x64x32 image (~40k windows, minutes).
    static let runaway = #"params={"roi_size":[16,16,16],"sw_overlap":0.97}"#
    /// A quick request: one window.
    static let quick = #"params={"roi_size":[64,64,32],"sw_overlap":0}"#

    func startServer(_ tmp: TempDir, environment: [String: String] = [:]) throws -> RunningServer {
        let studies = tmp.url.appendingPathComponent("studies")
        try DemoStudies.write(to: studies, count: 2, labeled: 1, shape: [64, 64, 32], spacing: [1, 1, 1])
        let app = tmp.url.appendingPathComponent("app")
        try FileManager.default.createDirectory(at: app, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: repoRoot.appendingPathComponent("sample-apps/radiology/app.json"),
                                         to: app.appendingPathComponent("app.json"))
        return try startJobServer(appDir: app, studies: studies.path, conf: ["models": "segmentation_spleen"],
                                  environment: environment)
    }

    func report(_ server: RunningServer) throws -> JSONValue {
        let (status, body) = try curl(server.port, "GET", "/infer/")
        #expect(status == 200)
        return try JSONValue.parse(body)
    }

    /// Polls `/infer/` until `condition` holds (at most `seconds`).
    func waitFor(_ server: RunningServer, seconds: Double = 60, _ condition: (JSONValue) -> Bool) throws -> JSONValue {
        let deadline = Date().addingTimeInterval(seconds)
        var last = try report(server)
        while !condition(last) && Date() < deadline {
            usleep(20_000)
            last = try report(server)
        }
        #expect(condition(last), "\(last)")
        return last
    }

    func infer(_ server: RunningServer, _ form: String = quick) throws -> (status: Int, text: String) {
        let (status, body) = try curl(server.port, "POST", "/infer/segmentation_spleen?image=spleen_00&output=json", form: form)
        return (status, String(decoding: body, as: UTF8.self))
    }

    @Test func workers_onACpuHost_formOneCpuGroupAndServeRequestsNamingADevice() throws {
        let tmp = TempDir()
        let server = try startServer(tmp)
        defer { server.stop() }
        let named = try infer(server, #"params={"roi_size":[32,32,16],"sw_overlap":0,"device":"cpu","sw_accumulate":"cpu"}"#)
        #expect(named.status == 200, "\(named.text)")
        let bare = try infer(server, #"params={"roi_size":[64,64,32],"sw_overlap":0,"device":"cuda"}"#)
        #expect(bare.status == 200, "\(bare.text)")
        // One worker (MONAI_LABEL_INFER_WORKERS=1) per device: `cpu` here, each GPU on a CUDA backend.
        let workers = try report(server)["workers"]?.arrayValue ?? []
        #expect(workers.map { $0["device"]?.stringValue ?? "" } == DeviceRouting.backendGroups())
    }

    /// The worker's allocator is what MONAI_LABEL_WORKER_ALLOCATOR chose: libjemalloc is mapped into the worker
    /// by default where Debian's libjemalloc2 is installed, and never with `glibc`.
    @Test(.enabled(if: WorkerAllocator.jemallocInstalled, "libjemalloc2 is not installed"),
          arguments: ["auto", "glibc"])
    func worker_runsWithTheChosenAllocator(_ allocator: String) throws {
        let tmp = TempDir()
        let server = try startServer(tmp, environment: ["MONAI_LABEL_WORKER_ALLOCATOR": allocator])
        defer { server.stop() }
        let done = try infer(server)
        #expect(done.status == 200, "\(done.text)")
        let pid = try #require(firstWorker(try report(server))?["pid"]?.intValue)
        // Read to the end: /proc files report size 0, and a one-shot read may stop at the first page.
        let file = try FileHandle(forReadingFrom: URL(fileURLWithPath: "/proc/\(pid)/maps"))
        defer { try? file.close() }
        let maps = String(decoding: try file.readToEnd() ?? Data(), as: UTF8.self)
        #expect(maps.contains("libjemalloc") == (allocator == "auto"))
    }

    @Test func workerKilledMidInference_failsThatRequestOnly_nextSucceeds_infoStaysFast() throws {
        let tmp = TempDir()
        let server = try startServer(tmp)
        defer { server.stop() }
        #expect(try infer(server).status == 200)
        let poller = InfoPoller(port: server.port)
        let slow = try BackgroundCurl(port: server.port, path: "/infer/segmentation_spleen?image=spleen_00&output=json",
                                      form: Self.runaway)
        let busy = try waitFor(server) { firstWorker($0)?["state"]?.stringValue == "busy" }
        let pid = try #require(firstWorker(busy)?["pid"]?.intValue)
        kill(Int32(pid), SIGKILL)
        let (status, body) = slow.wait()
        #expect(status == 500)
        #expect(body.contains("model worker died") && body.contains("SIGKILL"), "\(body)")
        #expect(!body.contains(tmp.url.path) && !body.contains("/tmp/"), "\(body)")
        let next = try infer(server)
        #expect(next.status == 200, "\(next.text)")
        let after = try report(server)
        #expect(firstWorker(after)?["restarts"]?.intValue == 1)
        #expect(firstWorker(after)?["last_exit"]?.stringValue?.contains("SIGKILL") == true)
        let worst = poller.stop()
        #expect(poller.count > 10)
        #expect(worst < 0.1, "slowest /info/ took \(worst) s")
    }

    @Test func clientDisconnect_stopsItsWorkerWithinOneSecond_andQueueShowsPositions() throws {
        let tmp = TempDir()
        let server = try startServer(tmp)
        defer { server.stop() }
        #expect(try infer(server).status == 200)
        let slow = try BackgroundCurl(port: server.port, path: "/infer/segmentation_spleen?image=spleen_00&output=json",
                                      form: Self.runaway)
        let busy = try waitFor(server) { firstWorker($0)?["state"]?.stringValue == "busy" }
        let pid = Int32(try #require(firstWorker(busy)?["pid"]?.intValue))
        // Two more wait behind it, in order.
        let second = try BackgroundCurl(port: server.port, path: "/infer/segmentation_spleen?image=spleen_00&output=json",
                                        form: Self.quick)
        _ = try waitFor(server) { $0["queue"]?["length"]?.intValue == 1 }
        let third = try BackgroundCurl(port: server.port, path: "/infer/segmentation_spleen?image=spleen_01&output=json",
                                       form: Self.quick)
        let queued = try waitFor(server) { $0["queue"]?["length"]?.intValue == 2 }
        let waiting = queued["queue"]?["waiting"]?.arrayValue ?? []
        #expect(waiting.map { $0["position"]?.intValue } == [1, 2])
        #expect(waiting.allSatisfy { $0["model"]?.stringValue == "segmentation_spleen" })
        #expect((waiting.first?["waiting_seconds"]?.doubleValue ?? -1) >= 0)
        #expect(queued["in_flight"]?.intValue == 3)

        slow.disconnect()
        let left = Date()
        while processRuns(pid) && Date().timeIntervalSince(left) < 5 { usleep(10_000) }
        let stoppedAfter = Date().timeIntervalSince(left)
        #expect(!processRuns(pid))
        #expect(stoppedAfter < 1, "the worker ran \(stoppedAfter) s after its client left")
        #expect(second.wait().status == 200)
        #expect(third.wait().status == 200)
        let after = try report(server)
        #expect(after["queue"]?["length"]?.intValue == 0)
        #expect(firstWorker(after)?["pid"]?.intValue != Int(pid))
    }

    @Test func inferTimeout_stopsTheRequestWith504_andTheNextWorks() throws {
        let tmp = TempDir()
        let server = try startServer(tmp, environment: ["MONAI_LABEL_INFER_TIMEOUT": "1"])
        defer { server.stop() }
        _ = try waitFor(server) { firstWorker($0)?["state"]?.stringValue == "idle" }
        let started = Date()
        let (status, text) = try infer(server, Self.runaway)
        #expect(status == 504, "\(text)")
        #expect(text.contains("MONAI_LABEL_INFER_TIMEOUT"))
        #expect(Date().timeIntervalSince(started) < 10)
        // The replacement worker answers a request that fits the limit.
        _ = try waitFor(server) { firstWorker($0)?["state"]?.stringValue == "idle" }
        let next = try infer(server)
        #expect(next.status == 200, "\(next.text)")
        #expect(firstWorker(try report(server))?["restarts"]?.intValue == 1)
    }

    @Test func fullQueue_503_carriesTheQueueState() throws {
        let tmp = TempDir()
        let server = try startServer(tmp, environment: ["MONAI_LABEL_INFER_QUEUE": "1"])
        defer { server.stop() }
        let slow = try BackgroundCurl(port: server.port, path: "/infer/segmentation_spleen?image=spleen_00&output=json",
                                      form: Self.runaway)
        _ = try waitFor(server) { firstWorker($0)?["state"]?.stringValue == "busy" }
        let full = try infer(server)
        #expect(full.status == 503)
        #expect(full.text.contains("1 running, 0 waiting for a model worker"), "\(full.text)")
        slow.disconnect()
        _ = try waitFor(server) { firstWorker($0)?["state"]?.stringValue == "idle" }
        #expect(try infer(server).status == 200)
    }

    @Test func workerDomainErrors_keepTheirStatus() throws {
        let tmp = TempDir()
        let server = try startServer(tmp)
        defer { server.stop() }
        let bad = try infer(server, #"params={"result_extension":".xyz"}"#)
        #expect(bad.status == 422, "\(bad.text)")
        #expect(bad.text.contains("unsupported result_extension"))
        #expect(firstWorker(try report(server))?["restarts"]?.intValue == 0)
    }

    /// Weights written to the model folder are what every worker runs on its next request: garbage published
    /// fails both workers' requests with the loader's error, and removing it brings the previous weights back.
    @Test func publishedWeights_reachEveryWorkerOnTheirNextRequest() throws {
        let tmp = TempDir()
        let server = try startServer(tmp, environment: ["MONAI_LABEL_INFER_WORKERS": "2"])
        defer { server.stop() }
        _ = try waitFor(server) { r in (r["workers"]?.arrayValue ?? []).allSatisfy { $0["state"]?.stringValue == "idle" } }
        func both() throws -> [(Int, String)] {
            let a = try BackgroundCurl(port: server.port, path: "/infer/segmentation_spleen?image=spleen_00&output=json", form: Self.quick)
            let b = try BackgroundCurl(port: server.port, path: "/infer/segmentation_spleen?image=spleen_01&output=json", form: Self.quick)
            return [a.wait(), b.wait()]
        }
        #expect(try both().map(\.0) == [200, 200])
        let r = try report(server)
        #expect((r["workers"]?.arrayValue ?? []).allSatisfy { $0["requests"]?.intValue == 1 }, "\(r)")
        let published = tmp.url.appendingPathComponent("app/model/segmentation_spleen.pt")
        try Data("not a checkpoint".utf8).write(to: published)
        for (status, text) in try both() {
            #expect(status == 500)
            #expect(text.contains("segmentation_spleen.pt"), "\(text)")
        }
        try FileManager.default.removeItem(at: published)
        #expect(try both().map(\.0) == [200, 200])
    }
}

/// The first worker of a `GET /infer/` report.
func firstWorker(_ report: JSONValue) -> JSONValue? { report["workers"]?.arrayValue?.first }

/// Whether `pid` is alive and not a zombie (a killed worker is reaped shortly after).
func processRuns(_ pid: Int32) -> Bool {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return false }
    guard let close = stat.lastIndex(of: ")") else { return false }
    let state = stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).prefix(1)
    return state != "Z" && state != "X"
}

/// A curl request running in the background; `disconnect()` kills the client mid-request.
final class BackgroundCurl: @unchecked Sendable {
    private let process = Process()
    /// A file, not a pipe: a pipe's end-of-file waits for any unrelated process that inherited it too.
    private let output = FileManager.default.temporaryDirectory.appendingPathComponent("curl-\(UUID().uuidString).out")

    init(port: Int, path: String, form: String) throws {
        process.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
        // --max-time: a hung server fails the test instead of holding it.
        process.arguments = ["-s", "--max-time", "300", "-X", "POST", "-o", "-", "-w", "\n%{http_code}", "-F", form,
                             "http://127.0.0.1:\(port)\(path)"]
        FileManager.default.createFile(atPath: output.path, contents: nil)
        let handle = try FileHandle(forWritingTo: output)
        process.standardOutput = handle
        try process.run()
        try? handle.close()
    }

    deinit { try? FileManager.default.removeItem(at: output) }

    func disconnect() {
        stopChild(process, signal: SIGKILL)
    }

    func wait() -> (status: Int, body: String) {
        _ = exitStatus(of: process)
        let text = (try? String(contentsOf: output, encoding: .utf8)) ?? ""
        guard let nl = text.lastIndex(of: "\n") else { return (Int(text) ?? 0, "") }
        return (Int(text[text.index(after: nl)...]) ?? 0, String(text[..<nl]))
    }
}

/// Requests `/info/` every 20 ms on a raw socket until stopped; `stop()` returns the slowest round trip.
final class InfoPoller: @unchecked Sendable {
    private let lock = NSLock()
    private var running = true
    private var worst = 0.0
    private var samples = 0
    private var failures = 0
    private let done = DispatchSemaphore(value: 0)

    init(port: Int) {
        let t = Thread { [self] in
            while lock.withLock({ running }) {
                let started = DispatchTime.now()
                let ok = Self.get(port: port)
                let seconds = Double(DispatchTime.now().uptimeNanoseconds - started.uptimeNanoseconds) / 1e9
                lock.withLock {
                    worst = max(worst, seconds)
                    samples += 1
                    if !ok { failures += 1 }
                }
                usleep(20_000)
            }
            done.signal()
        }
        t.start()
    }

    var count: Int { lock.withLock { samples - failures } }

    func stop() -> Double {
        lock.withLock { running = false }
        // Each request has 60 s socket timeouts; this bounds the wait even so.
        guard done.wait(timeout: .now() + 300) == .success else { return .infinity }
        return lock.withLock { failures > 0 ? .infinity : worst }
    }

    /// One `GET /info/` with `Connection: close`; true on a 200.
    static func get(port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { return false }
        var timeout = timeval(tv_sec: 60, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let request = Array("GET /info/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".utf8)
        guard request.withUnsafeBytes({ send(fd, $0.baseAddress!, $0.count, 0) }) == request.count else { return false }
        var response: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
            if n <= 0 { break }
            response += chunk[0..<n]
        }
        return String(decoding: response.prefix(12), as: UTF8.self) == "HTTP/1.1 200"
    }
}

/// With `MONAI_LABEL_INFER_WORKERS=0` the report says so and lists no workers.
@Test(.tags(.live)) func inferReport_inProcess_listsNoWorkers() throws {
    let c = try TestClient()
    let r = try #require(c.get("/infer/").json)
    #expect(r["in_process"] == true)
    #expect(r["workers"] == [])
    #expect(r["queue"]?["length"] == 0)
    #expect(r["capacity"] == 4)
}
