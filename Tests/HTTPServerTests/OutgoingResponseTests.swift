import Foundation
import Testing
@testable import HTTPServer

/// The loop-side response writer over a socket pair: no server, no timing.
@Suite(.tags(.unit)) struct OutgoingResponseTests {
    /// A connection on one end of a non-blocking Unix socket pair with small buffers, and the other end to read.
    private final class Pair {
        let conn: Connection
        let peer: Int32
        init() throws {
            var fds: [Int32] = [0, 0]
            guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0 else {
                throw ClientError(description: "socketpair failed")
            }
            var small: Int32 = 16 * 1024
            setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &small, socklen_t(MemoryLayout<Int32>.size))
            _ = fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK)
            _ = fcntl(fds[1], F_SETFL, fcntl(fds[1], F_GETFL) | O_NONBLOCK)
            let t = ConnectionStateMachine.Timeouts(header: 1, body: 1, keepAlive: 1, write: 1)
            conn = Connection(fd: fds[0], tls: nil, remoteAddress: "127.0.0.1:1", limits: HTTPLimits(), timeouts: t, now: 0)
            peer = fds[1]
        }
        deinit {
            close(conn.fd)
            close(peer)
        }
        /// Everything readable now.
        func drain() -> [UInt8] {
            var out: [UInt8] = []
            var buf = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = buf.withUnsafeMutableBytes { read(peer, $0.baseAddress!, $0.count) }
                if n <= 0 { return out }
                out += buf[0..<n]
            }
        }
    }

    /// Writes `out` to the end, reading the other side between turns; returns the bytes and the progress seen.
    private func writeAll(_ out: OutgoingResponse, _ pair: Pair, budget: Int = 32 * 1024) -> ([UInt8], [OutgoingResponse.Progress]) {
        var received: [UInt8] = []
        var seen: [OutgoingResponse.Progress] = []
        for _ in 0..<10_000 {
            let (progress, _) = out.write(to: pair.conn, budget: budget)
            seen.append(progress)
            received += pair.drain()
            if progress == .done || progress == .failed { break }
        }
        return (received, seen)
    }

    private func bodyAfterHead(_ bytes: [UInt8]) -> [UInt8] {
        let sep: [UInt8] = [13, 10, 13, 10]
        guard let i = (0...(bytes.count - 4)).first(where: { Array(bytes[$0..<($0 + 4)]) == sep }) else { return [] }
        return Array(bytes[(i + 4)...])
    }

    @Test func segments_ofBytesAndFile_areWrittenInOrder_acrossFullSocketTurns() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let fileBytes = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        _ = FileManager.default.createFile(atPath: dir + "/f.bin", contents: Data(fileBytes))
        let response = HTTPResponse(body: .segments([.bytes(Array("A".utf8)), .file(path: dir + "/f.bin", deleteAfter: false),
                                                     .bytes(Array("B".utf8))]))
        let out = OutgoingResponse.prepare(response, requestVersion: .http1_1, isHead: false, keepAlive: true, serverName: nil,
                                           context: nil, logInfo: nil, accessLog: nil, errorLog: nil)
        let pair = try Pair()
        let (received, seen) = writeAll(out, pair)
        #expect(seen.last == .done)
        #expect(seen.contains(.blocked) || seen.contains(.yielded), "300 KB cannot go through a 16 KiB buffer in one turn")
        let text = String(decoding: received.prefix(200), as: UTF8.self)
        #expect(text.hasPrefix("HTTP/1.1 200 OK\r\n") && text.contains("Content-Length: 300002\r\n"))
        #expect(bodyAfterHead(received) == Array("A".utf8) + fileBytes + Array("B".utf8))
        #expect(out.bodyBytesSent == 300_002)
    }

    @Test func missingFile_becomes500_andDeleteAfterFiles_areUnlinkedOnceOpened() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        _ = FileManager.default.createFile(atPath: dir + "/once.bin", contents: Data("once".utf8))
        let missing = OutgoingResponse.prepare(.file(dir + "/nope.bin"), requestVersion: .http1_1, isHead: false, keepAlive: true,
                                               serverName: nil, context: nil, logInfo: nil, accessLog: nil, errorLog: nil)
        #expect(missing.status == 500)
        let once = OutgoingResponse.prepare(HTTPResponse(body: .file(path: dir + "/once.bin", deleteAfter: true)),
                                            requestVersion: .http1_1, isHead: false, keepAlive: true, serverName: nil,
                                            context: nil, logInfo: nil, accessLog: nil, errorLog: nil)
        #expect(!FileManager.default.fileExists(atPath: dir + "/once.bin"), "unlinked as soon as it is open")
        let pair = try Pair()
        let (received, _) = writeAll(once, pair)
        #expect(bodyAfterHead(received) == Array("once".utf8), "the open descriptor still serves the bytes")
    }

    @Test func streamBody_isChunkedFor11_andSentUntilCloseFor10() throws {
        let chunked = OutgoingResponse.prepare(HTTPResponse(body: .stream(CountingStream(chunks: 2))), requestVersion: .http1_1,
                                               isHead: false, keepAlive: true, serverName: nil, context: nil, logInfo: nil,
                                               accessLog: nil, errorLog: nil)
        let (a, _) = writeAll(chunked, try Pair())
        #expect(bodyAfterHead(a) == Array("8\r\nchunk-0;\r\n8\r\nchunk-1;\r\n0\r\n\r\n".utf8))
        #expect(chunked.keepAlive)
        let raw = OutgoingResponse.prepare(HTTPResponse(body: .stream(CountingStream(chunks: 2))), requestVersion: .http1_0,
                                           isHead: false, keepAlive: true, serverName: nil, context: nil, logInfo: nil,
                                           accessLog: nil, errorLog: nil)
        let (b, _) = writeAll(raw, try Pair())
        #expect(bodyAfterHead(b) == Array("chunk-0;chunk-1;".utf8))
        #expect(!raw.keepAlive, "without a length the end of the body is the end of the connection")
    }

    @Test func release_cleansTheRequestsTemporaryFiles_andLogsOnce() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let context = HTTPRequestContext(temporaryDirectory: dir)
        let (path, fd) = try context.makeTemporaryFile()
        close(fd)
        let log = LockedList<HTTPAccessLogEntry>()
        let out = OutgoingResponse.prepare(
            .text("hi"), requestVersion: .http1_1, isHead: false, keepAlive: true, serverName: nil, context: context,
            logInfo: .init(method: .get, target: "/x?token=secret", remoteAddress: "127.0.0.1:1", started: 0),
            accessLog: { log.append($0) }, errorLog: nil)
        #expect(FileManager.default.fileExists(atPath: path), "kept while the response is in flight")
        out.release()
        out.release()
        #expect(!FileManager.default.fileExists(atPath: path))
        #expect(log.all.count == 1 && log.all.first?.path == "/x" && log.all.first?.status == 200)
    }
}

/// The least-recently-active lists that choose which connection makes room.
@Suite(.tags(.unit)) struct ActivityListTests {
    private func connection(_ port: Int) -> Connection {
        let t = ConnectionStateMachine.Timeouts(header: 1, body: 1, keepAlive: 1, write: 1)
        return Connection(fd: -1, tls: nil, remoteAddress: "127.0.0.1:\(port)", limits: HTTPLimits(), timeouts: t, now: 0)
    }

    @Test func oldest_isTheLeastRecentlyTouched_andRemovalUnlinks() {
        var list = ActivityList(.all)
        let a = connection(1), b = connection(2), c = connection(3)
        for x in [a, b, c] { list.append(x) }
        #expect(list.oldest === a && list.count == 3)
        list.moveToBack(a)
        #expect(list.oldest === b)
        list.remove(b)
        #expect(list.oldest === c && list.count == 2)
        list.remove(b)
        #expect(list.count == 2, "removing twice is harmless")
        list.remove(c)
        list.remove(a)
        #expect(list.oldest == nil && list.count == 0)
    }

    @Test func peerKey_dropsThePort() {
        #expect(Connection.peerKey("127.0.0.1:5000") == "127.0.0.1")
        #expect(Connection.peerKey("[::1]:5000") == "[::1]")
    }
}
