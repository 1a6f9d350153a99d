import Foundation
import Testing

extension CrashProbes {
    /// Model workers dying under the server (issue 14): the daemon keeps serving, the request that ran on the
    /// worker fails with a clear error, and the next inference runs on a new worker.
    @Suite struct WorkerProbes {
        /// A long inference the server's bounds still admit: the 96x96x64 image is resampled to 144x144x127 for the
        /// model, where 48^3 windows at 0.9 overlap are about 13,000 (under the inferer's 100,000): minutes of work.
        static let runaway = #"params={"roi_size":[48,48,48],"sw_overlap":0.9}"#

        /// The first worker's pid and state from `GET /infer/`.
        func worker(_ s: ProbeServer) throws -> (pid: Int32, state: String) {
            let r = try s.curl("GET", "/infer/")
            guard r.status == 200, let o = try JSONSerialization.jsonObject(with: Data(r.body.utf8)) as? [String: Any],
                let w = (o["workers"] as? [[String: Any]])?.first, let state = w["state"] as? String
            else { throw ProbeError("GET /infer/: \(r.status) \(r.body.prefix(300))") }
            return ((w["pid"] as? Int).map(Int32.init) ?? 0, state)
        }

        func waitForWorker(_ s: ProbeServer, _ state: String) throws -> Int32 {
            let deadline = Date().addingTimeInterval(120)
            while Date() < deadline {
                let w = try worker(s)
                if w.state == state && w.pid > 0 { return w.pid }
                usleep(50_000)
            }
            throw ProbeError("the model worker never became \(state):\n\(s.log)")
        }

        @Test func idleWorker_sigkill_serverRestartsIt() throws {
            let s = try ProbeServer()
            let pid = try waitForWorker(s, "idle")
            kill(pid, SIGKILL)
            try s.expectAlive("kill -9 of the idle model worker")
            #expect(try worker(s).pid != pid)
        }

        @Test func busyWorker_sigkill_failsOnlyItsRequest() throws {
            let s = try ProbeServer()
            _ = try waitForWorker(s, "idle")
            let slow = Thread {
                _ = try? s.curl("POST", "/infer/segmentation_spleen?image=spleen_00&output=json",
                                ["-F", Self.runaway], timeout: 300)
            }
            slow.start()
            let pid = try waitForWorker(s, "busy")
            kill(pid, SIGKILL)
            try s.expectAlive("kill -9 of the busy model worker")
        }

        @Test func busyWorker_sigsegv_isReportedAndReplaced() throws {
            let s = try ProbeServer()
            _ = try waitForWorker(s, "idle")
            let result = Result<(status: Int, body: String, seconds: Double), any Error>.Box()
            let slow = Thread {
                result.set(Result { try s.curl("POST", "/infer/segmentation_spleen?image=spleen_00&output=json",
                                               ["-F", Self.runaway], timeout: 300) })
            }
            slow.start()
            let pid = try waitForWorker(s, "busy")
            kill(pid, SIGSEGV)
            let r = try result.wait().get()
            #expect(r.status == 500)
            #expect(detail(r.body).contains("SIGSEGV"), "\(r.body)")
            try s.expectAlive("SIGSEGV in the busy model worker")
        }

        /// A request whose tensors exceed the worker's memory limit fails alone; the worker stays up. The window
        /// (320^3, under the inferer's 2^25 voxels per network call) needs GBs of activations in the first layer.
        /// libtorch's refusal is an out-of-memory (issue 15): a 503 naming the device and the worker's limit.
        @Test func memoryBomb_underWorkerLimit_failsItsOwnRequest() throws {
            let s = try ProbeServer(environment: ["MONAI_LABEL_WORKER_MAX_MEMORY": "1500M"])
            _ = try waitForWorker(s, "idle")
            let r = try s.curl("POST", "/infer/segmentation_spleen?image=spleen_00&output=json",
                               ["-F", #"params={"roi_size":[320,320,320]}"#], timeout: 300)
            #expect(r.status == 503, "\(r.status) \(r.body.prefix(300))")
            #expect(detail(r.body).hasPrefix("Inference ran out of memory on cpu"), "\(r.body.prefix(300))")
            #expect(detail(r.body).contains("MONAI_LABEL_WORKER_MAX_MEMORY"), "\(r.body.prefix(300))")
            try s.expectAlive("memory bomb under MONAI_LABEL_WORKER_MAX_MEMORY")
        }

        /// A runner that cannot start gives a clear 503 at once (no hang), and the server keeps serving.
        @Test func brokenWorkerBinary_gives503_notAHang() throws {
            let s = try ProbeServer(environment: ["MONAI_LABEL_TASK_RUNNER": "/bin/false"])
            let r = try s.curl("POST", "/infer/segmentation_spleen?image=spleen_00&output=json", ["-F", "params={}"], timeout: 60)
            #expect(r.status == 503, "\(r.status) \(r.body.prefix(300))")
            #expect(detail(r.body).contains("model worker could not start"), "\(r.body.prefix(300))")
            #expect(r.seconds < 30)
            #expect(try s.curl("GET", "/info/").status == 200)
        }
    }
}

extension Result where Failure == any Error {
    /// A result handed from a thread to the test.
    final class Box: @unchecked Sendable {
        private let done = DispatchSemaphore(value: 0)
        private var value: Result<Success, any Error>?

        func set(_ v: Result<Success, any Error>) {
            value = v
            done.signal()
        }

        /// The value, or a failure after `seconds` (the thread's work has its own, shorter, timeouts).
        func wait(seconds: Double = 600) -> Result<Success, any Error> {
            guard done.wait(timeout: .now() + seconds) == .success else {
                return .failure(ProbeError("no result within \(Int(seconds)) s"))
            }
            return value!
        }
    }
}
