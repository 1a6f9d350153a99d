import Foundation
import HTTPServer
import Testing

/// Slow and stalled clients cost nothing (issue 14 part 4): responses are written by the event loop, bodies are
/// read by it under a minimum rate, connection caps close the least recently active connection, and what a
/// handler reads into memory is capped. The same figures against the real binary: CrashProbeTests/SlowClientProbes.
@Suite(.tags(.live), .serialized) struct SlowClientTests {
    /// A `size`-byte file in a fresh temporary directory.
    private func makeFile(size: Int) throws -> (dir: String, path: String) {
        let dir = try temporaryDirectory()
        let path = dir + "/image.bin"
        _ = FileManager.default.createFile(atPath: path, contents: Data(repeating: 7, count: size))
        return (dir, path)
    }

    @Test func slowReaders_ofALargeFile_doNotDelayAnotherRequest() throws {
        let (dir, path) = try makeFile(size: 30 << 20)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // Two workers and more readers than workers: before, each reader held a worker for the 60 s write timeout.
        let s = try LiveServer(configure: { $0.workerCount = 2 }, routes: { r in
            r.get("/image") { _ in .file(path) }
            r.get("/hello") { _ in .text("hello") }
        })
        var readers: [RawClient] = []
        for _ in 0..<20 {
            let c = try RawClient(port: s.port, receiveBuffer: 4096)
            try c.send("GET /image HTTP/1.1\r\nHost: t\r\n\r\n")
            readers.append(c)
        }
        for _ in 0..<3 {
            let other = try RawClient(port: s.port, timeoutSeconds: 5)
            try other.send("GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
            #expect(try other.readResponse().text == "hello")
        }
        // The stalled downloads are intact, just waiting for their readers.
        let first = try readers[0].readResponse()
        #expect(first.status == 200 && first.body.count == 30 << 20)
    }

    @Test func slowReader_ofADeleteAfterFile_leavesNothingBehind() throws {
        let (dir, path) = try makeFile(size: 8 << 20)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let s = try LiveServer(configure: { $0.writeTimeout = 0.3 }, routes: { r in
            r.get("/once") { _ in .file(path, deleteAfter: true) }
        })
        let c = try RawClient(port: s.port, receiveBuffer: 4096)
        try c.send("GET /once HTTP/1.1\r\nHost: t\r\n\r\n")
        // The response is abandoned at the write timeout; the file must be gone either way.
        var gone = false
        for _ in 0..<100 where !gone {
            gone = !FileManager.default.fileExists(atPath: path)
            if !gone { usleep(20_000) }
        }
        #expect(gone)
    }

    /// The issue names 10,000 idle half-sent bodies (the crash probe sends that many to the real binary); here the
    /// count is bounded by what the test process's open-file limit allows, since client and server share it.
    @Test func idleHalfSentBodies_doNotDelayARequestPast100ms() throws {
        let limit = HTTPServer.raiseOpenFileLimit()
        let count = min(3_000, (limit - 512) / 2)
        try #require(count >= 500, "open-file limit \(limit) is too low for this test")
        let s = try LiveServer()
        var stalled: [RawClient] = []
        stalled.reserveCapacity(count)
        for _ in 0..<count {
            let c = try RawClient(port: s.port)
            try c.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\nabc")
            stalled.append(c)
        }
        var millis: [Double] = []
        for _ in 0..<5 {
            let started = Date()
            let c = try RawClient(port: s.port, timeoutSeconds: 5)
            try c.send("GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
            #expect(try c.readResponse().text == "hello")
            millis.append(Date().timeIntervalSince(started) * 1000)
        }
        // The median, because this machine is shared: one scheduling hiccup is not the server's delay.
        let median = millis.sorted()[2]
        #expect(median <= 100, "GET /hello took \(millis) ms beside \(count) stalled bodies")
    }

    @Test func perPeerCap_closesTheLeastRecentlyActiveConnection_notTheNewOne() throws {
        let s = try LiveServer(configure: { $0.maxConnectionsPerPeer = 3 })
        var waiting: [RawClient] = []
        for _ in 0..<3 {
            let c = try RawClient(port: s.port)
            // The interim response proves the server has read this head before the next connection starts.
            try c.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
            #expect(try c.readResponse().status == 100)
            waiting.append(c)
        }
        let fresh = try RawClient(port: s.port)
        try fresh.send("GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
        #expect(try fresh.readResponse().text == "hello")
        #expect(try waiting[0].isClosedByServer(), "the oldest stalled connection made room")
        try waiting[2].send("hello")
        #expect(try waiting[2].readResponse().text == "hello", "newer ones keep working")
    }

    @Test func fullServer_closesItsLeastRecentlyActiveConnection_forANewOne() throws {
        // The per-peer cap (1024) is far away: this is the server-wide one.
        let s = try LiveServer(configure: { $0.maxConnections = 2 })
        var waiting: [RawClient] = []
        for _ in 0..<2 {
            let c = try RawClient(port: s.port)
            try c.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
            #expect(try c.readResponse().status == 100)
            waiting.append(c)
        }
        let fresh = try RawClient(port: s.port)
        try fresh.send("GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
        #expect(try fresh.readResponse().text == "hello")
        #expect(try waiting[0].isClosedByServer())
    }

    @Test func connectionsRunningAHandler_areNeverClosedToMakeRoom() throws {
        let release = DispatchSemaphore(value: 0)
        let running = DispatchSemaphore(value: 0)
        let s = try LiveServer(configure: { $0.maxConnectionsPerPeer = 1 }, routes: { r in
            r.get("/slow") { _ in
                running.signal()
                _ = release.wait(timeout: .now() + 300)
                return .text("slow done")
            }
        })
        let busy = try RawClient(port: s.port)
        try busy.send("GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
        try #require(running.wait(timeout: .now() + 120) == .success, "the handler never started")
        // The peer is at its cap with nothing to close: the new connection is the one refused.
        let refused = try RawClient(port: s.port)
        #expect(try refused.isClosedByServer())
        release.signal()
        #expect(try busy.readResponse().text == "slow done")
    }

    @Test func tricklingBody_belowMinimumRate_gets408AndClose() throws {
        let s = try LiveServer {
            $0.minBodyRate = 1000
            $0.bodyRateGracePeriod = 0.3
        }
        let c = try RawClient(port: s.port)
        try c.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n")
        // One byte every 50 ms keeps the 60 s per-read body timeout happy for ever, but averages 20 bytes/s.
        var answered = false
        for _ in 0..<100 where !answered {
            try? c.send("x")
            answered = RawClient.firstReadable([c], timeoutMs: 50) != nil
        }
        #expect(answered)
        #expect(try c.readResponse().status == 408)
        #expect(try c.isClosedByServer())
    }

    @Test func jsonBody_overInMemoryLimit_gets413NamingTheLimit() throws {
        let s = try LiveServer(configure: { $0.maxInMemoryBodyBytes = 1000 }, routes: { r in
            r.post("/json") { req in
                _ = try req.jsonObject()
                return .text("parsed")
            }
        })
        let c = try RawClient(port: s.port)
        let small = "{\"a\": \"" + String(repeating: "x", count: 900) + "\"}"
        try c.send("POST /json HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: \(small.utf8.count)\r\n\r\n\(small)")
        #expect(try c.readResponse().text == "parsed")
        let big = "{\"a\": \"" + String(repeating: "x", count: 2000) + "\"}"
        try c.send("POST /json HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: \(big.utf8.count)\r\n\r\n\(big)")
        let r = try c.readResponse()
        #expect(r.status == 413)
        #expect(r.text.contains("1000 bytes"), "\(r.text)")
    }

    @Test func formTextFields_overTotalLimit_get413_fileParts_doNotCount() throws {
        let s = try LiveServer(configure: { $0.formLimits.maxTotalFieldBytes = 1000 })
        let b = "XyZzy"
        func form(fields: Int, fieldSize: Int, fileSize: Int) -> String {
            var body = ""
            for i in 0..<fields {
                body += "--\(b)\r\nContent-Disposition: form-data; name=\"f\(i)\"\r\n\r\n\(String(repeating: "v", count: fieldSize))\r\n"
            }
            body += "--\(b)\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.bin\"\r\n\r\n\(String(repeating: "d", count: fileSize))\r\n"
            body += "--\(b)--\r\n"
            return "POST /form HTTP/1.1\r\nHost: t\r\nContent-Type: multipart/form-data; boundary=\(b)\r\n"
                + "Content-Length: \(body.utf8.count)\r\n\r\n" + body
        }
        let c = try RawClient(port: s.port)
        try c.send(form(fields: 2, fieldSize: 400, fileSize: 5000))
        let ok = try c.readResponse()
        #expect(ok.status == 200 && ok.text.contains("file file a.bin - 5000"), "\(ok.text)")
        try c.send(form(fields: 3, fieldSize: 400, fileSize: 10))
        let r = try c.readResponse()
        #expect(r.status == 413)
        #expect(r.text.contains("1000 bytes"), "\(r.text)")
    }
}
