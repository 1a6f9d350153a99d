import CHTTPSys
import Foundation

/// Monotonic nanoseconds.
@inline(__always) func monotonicNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// The request body while it arrives: in memory up to a threshold, then in a temporary file.
struct BodySpool {
    let threshold: Int
    let directory: String
    var bytes: [UInt8] = []
    var fd: Int32 = -1
    var path: String?
    var length = 0

    init(threshold: Int, directory: String, expected: Int?) {
        self.threshold = threshold
        self.directory = directory
        if let n = expected, n <= threshold { bytes.reserveCapacity(n) }
    }

    mutating func append(_ p: UnsafeRawBufferPointer) throws {
        length += p.count
        if fd < 0 {
            if bytes.count + p.count <= threshold {
                bytes.append(contentsOf: p)
                return
            }
            let (path, fd) = try TemporaryFile.create(in: directory, suffix: ".body")
            self.fd = fd
            self.path = path
            try bytes.withUnsafeBytes { try writeAll($0) }
            bytes = []
        }
        try writeAll(p)
    }

    private func writeAll(_ p: UnsafeRawBufferPointer) throws {
        var off = 0
        while off < p.count {
            let n = write(fd, p.baseAddress! + off, p.count - off)
            if n < 0 {
                if errno == EINTR { continue }
                throw HTTPError(.internalServerError, "Cannot spool request body: \(String(cString: strerror(errno)))")
            }
            off += n
        }
    }

    /// Closes the spool and hands the body over; a spooled file is registered for deletion with `context`.
    mutating func finish(context: HTTPRequestContext) -> HTTPBody {
        if fd >= 0 {
            close(fd)
            fd = -1
        }
        if let p = path {
            context.deleteAfterResponse(p)
            path = nil
            return .file(path: p, length: length)
        }
        return length == 0 ? .empty : .bytes(bytes)
    }

    /// Drops a partial body.
    mutating func discard() {
        if fd >= 0 { close(fd) }
        fd = -1
        if let p = path { unlink(p) }
        path = nil
    }
}

/// One client connection. The event loop owns it, except while a worker writes a response; the hand-over in
/// both directions goes through a lock (the pool queue, the completion queue), which orders the accesses.
final class Connection: @unchecked Sendable {
    struct PendingRequest {
        var head: HTTPRequestHead
        /// The decoded path the router matched.
        var path: String
        var handler: HTTPHandler
        var parameters: [String: String]
        var spool: BodySpool
        var started: UInt64
    }

    /// `drained`: a plain socket returned less than asked, so its queue was empty then; with edge-triggered epoll
    /// new data brings a new event, so the loop need not try another read.
    enum ReadResult { case bytes(Int, drained: Bool), wouldBlock, eof, failed }

    let fd: Int32
    let tls: TLSSession?
    let remoteAddress: String
    var machine: ConnectionStateMachine
    /// The routed request whose body is arriving.
    var pending: PendingRequest?
    var parser: HTTPRequestParser
    var buffer: [UInt8]
    var start = 0
    var end = 0
    /// True unless the last read said there is nothing more to read.
    var mayRead = true
    /// The loop is inside `service` for this connection.
    var inService = false
    var out: [UInt8] = []
    var outOffset = 0
    var peerClosed = false

    init(fd: Int32, tls: TLSSession?, remoteAddress: String, limits: HTTPLimits, timeouts: ConnectionStateMachine.Timeouts, now: UInt64) {
        self.fd = fd
        self.tls = tls
        self.remoteAddress = remoteAddress
        self.machine = ConnectionStateMachine(tls: tls != nil, timeouts: timeouts, now: now)
        self.parser = HTTPRequestParser(limits: limits)
        self.buffer = [UInt8](repeating: 0, count: 4096)
    }

    deinit { pending?.spool.discard() }

    var buffered: Int { end - start }

    /// Reads what the socket has into the buffer's free space, growing it up to `maxCapacity` (and at once to
    /// `preferredCapacity`, so bodies are read in large pieces while heads of idle connections stay small).
    func readIntoBuffer(maxCapacity: Int, preferredCapacity: Int = 0) -> ReadResult {
        if buffer.count < min(preferredCapacity, maxCapacity) {
            buffer.append(contentsOf: repeatElement(0, count: min(preferredCapacity, maxCapacity) - buffer.count))
        }
        if start > 0 && (end == buffer.count || start == end) {
            if start < end {
                buffer.withUnsafeMutableBytes { p in _ = memmove(p.baseAddress!, p.baseAddress! + start, end - start) }
            }
            end -= start
            start = 0
        }
        if end == buffer.count {
            if buffer.count >= maxCapacity { return .bytes(0, drained: false) }
            buffer.append(contentsOf: repeatElement(0, count: min(buffer.count, maxCapacity - buffer.count)))
        }
        let room = buffer.count - end
        let result: ReadResult = buffer.withUnsafeMutableBytes { p in
            let dst = p.baseAddress! + end
            if let tls {
                let (n, st) = tls.read(dst, room)
                if n > 0 { return .bytes(n, drained: false) }
                switch st {
                case .wantRead, .wantWrite: return .wouldBlock
                case .closed: return .eof
                case .ok, .error: return .failed
                }
            }
            while true {
                let n = read(fd, dst, room)
                if n > 0 { return .bytes(n, drained: n < room) }
                if n == 0 { return .eof }
                if errno == EINTR { continue }
                return errno == EAGAIN || errno == EWOULDBLOCK ? .wouldBlock : .failed
            }
        }
        if case .bytes(let n, _) = result { end += n }
        return result
    }

    /// One non-blocking attempt to write; returns bytes written, 0 when the socket is full, -1 on failure.
    func writeNonBlocking(_ p: UnsafeRawPointer, _ n: Int) -> Int {
        if let tls {
            let (w, st) = tls.write(p, n)
            if w > 0 { return w }
            return st == .wantRead || st == .wantWrite ? 0 : -1
        }
        while true {
            let w = chttp_send(fd, p, n)
            if w >= 0 { return w }
            if errno == EINTR { continue }
            return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1
        }
    }

    /// Waits until the socket is writable (or readable, for TLS that needs to read). False on timeout/error.
    private func wait(for events: Int16, timeoutMs: Int32) -> Bool {
        var p = pollfd(fd: fd, events: events, revents: 0)
        while true {
            let r = poll(&p, 1, timeoutMs)
            if r > 0 { return p.revents & Int16(POLLERR | POLLNVAL) == 0 || p.revents & events != 0 }
            if r == 0 { return false }
            if errno != EINTR { return false }
        }
    }

    /// Writes all of `buffers` in order, blocking (with `timeoutMs` per stall). Used by workers only.
    func writeBlocking(_ buffers: [UnsafeRawBufferPointer], timeoutMs: Int32) -> Bool {
        if let tls {
            for b in buffers where b.count > 0 {
                var off = 0
                while off < b.count {
                    let (w, st) = tls.write(b.baseAddress! + off, b.count - off)
                    if w > 0 {
                        off += w
                        continue
                    }
                    switch st {
                    case .wantWrite: if !wait(for: Int16(POLLOUT), timeoutMs: timeoutMs) { return false }
                    case .wantRead: if !wait(for: Int16(POLLIN), timeoutMs: timeoutMs) { return false }
                    case .ok, .closed, .error: return false
                    }
                }
            }
            return true
        }
        var bases = buffers.filter { $0.count > 0 }.map { UnsafeRawPointer($0.baseAddress!) }
        var lens = buffers.filter { $0.count > 0 }.map(\.count)
        var idx = 0
        while idx < bases.count {
            let n = bases.count - idx
            let w = bases.withUnsafeBufferPointer { bp in
                lens.withUnsafeBufferPointer { lp in
                    bp.baseAddress!.withMemoryRebound(to: UnsafeRawPointer?.self, capacity: n) { b in
                        chttp_writev(fd, b + idx, lp.baseAddress! + idx, Int32(min(n, 16)))
                    }
                }
            }
            if w < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK {
                    if !wait(for: Int16(POLLOUT), timeoutMs: timeoutMs) { return false }
                    continue
                }
                return false
            }
            var left = w
            while left > 0, idx < bases.count {
                if left >= lens[idx] {
                    left -= lens[idx]
                    idx += 1
                } else {
                    bases[idx] += left
                    lens[idx] -= left
                    left = 0
                }
            }
        }
        return true
    }

    /// Sends `count` bytes of file `fileFD` from offset 0: `sendfile` on plain sockets, read+encrypt for TLS.
    func sendFileBlocking(_ fileFD: Int32, count: Int, scratch: inout [UInt8], timeoutMs: Int32) -> Bool {
        var offset: Int64 = 0
        if tls == nil {
            while offset < Int64(count) {
                let w = chttp_sendfile(fd, fileFD, &offset, min(count - Int(offset), 1 << 30))
                if w > 0 { continue }
                if w == 0 { return false }  // the file shrank under us
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK {
                    if !wait(for: Int16(POLLOUT), timeoutMs: timeoutMs) { return false }
                    continue
                }
                return false
            }
            return true
        }
        if scratch.count < 64 * 1024 { scratch = [UInt8](repeating: 0, count: 64 * 1024) }
        while offset < Int64(count) {
            let want = min(scratch.count, count - Int(offset))
            let r = scratch.withUnsafeMutableBytes { pread(fileFD, $0.baseAddress!, want, off_t(offset)) }
            if r <= 0 {
                if r < 0 && errno == EINTR { continue }
                return false
            }
            let ok = scratch.withUnsafeBytes { writeBlocking([UnsafeRawBufferPointer(rebasing: $0[0..<r])], timeoutMs: timeoutMs) }
            if !ok { return false }
            offset += Int64(r)
        }
        return true
    }
}
