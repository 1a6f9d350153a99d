import CHTTPSys
import OpenSSLKit
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
        // Reserve what the client announced only up to 64 KiB: a stalled body's Content-Length is a claim, not bytes.
        if let n = expected, n <= threshold { bytes.reserveCapacity(min(n, 64 * 1024)) }
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

/// One client connection. The event loop owns it, except while it is dispatched: then the worker's handler may
/// poll the descriptor (to see whether the client left) and the worker makes the response's first non-blocking
/// write attempt; the hand-over in both directions goes through a lock (the pool queue, the completion queue).
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

    /// Links of the loop's least-recently-active lists (see `ActivityList`).
    struct Links {
        var prev: Connection?
        var next: Connection?
        var linked = false
    }

    let fd: Int32
    let tls: TLSServerSession?
    let remoteAddress: String
    /// The client's IP address without the port: the key of the per-peer connection cap.
    let peer: String
    var allLinks = Links()
    var peerLinks = Links()
    /// This client address's connections (set while the connection is open).
    var peerConnections: PeerConnections?
    /// When the loop last moved this connection to the back of its activity lists.
    var lastTouched: UInt64
    var machine: ConnectionStateMachine
    /// The routed request whose body is arriving.
    var pending: PendingRequest?
    var parser: HTTPRequestParser
    var buffer: [UInt8]
    var start = 0
    var end = 0
    /// True unless the last read said there is nothing more to read.
    var mayRead = true
    /// The last read filled all the room the buffer had (data is flowing faster than one buffer per read).
    var lastReadFilled = false
    /// The loop is inside `service` for this connection.
    var inService = false
    /// The response the loop is writing.
    var outgoing: OutgoingResponse?
    var peerClosed = false

    init(fd: Int32, tls: TLSServerSession?, remoteAddress: String, limits: HTTPLimits, timeouts: ConnectionStateMachine.Timeouts, now: UInt64) {
        self.fd = fd
        self.tls = tls
        self.remoteAddress = remoteAddress
        self.peer = Self.peerKey(remoteAddress)
        self.lastTouched = now
        self.machine = ConnectionStateMachine(tls: tls != nil, timeouts: timeouts, now: now)
        self.parser = HTTPRequestParser(limits: limits)
        self.buffer = [UInt8](repeating: 0, count: 4096)
    }

    deinit {
        pending?.spool.discard()
        outgoing?.release()
    }

    var buffered: Int { end - start }

    /// `127.0.0.1:5000` -> `127.0.0.1`, `[::1]:5000` -> `[::1]`.
    static func peerKey(_ remoteAddress: String) -> String {
        remoteAddress.lastIndex(of: ":").map { String(remoteAddress[..<$0]) } ?? remoteAddress
    }

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
        if case .bytes(let n, _) = result {
            end += n
            lastReadFilled = n == room
        } else {
            lastReadFilled = false
        }
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
}

/// One client address's connections: how many are open, and which of them may be closed to make room.
final class PeerConnections {
    var open = 0
    var evictable = ActivityList(.peer)
}

/// Connections in order of last activity, oldest first, linked through the connections themselves so that
/// appending, removing, moving to the back and finding the oldest are O(1) even with 10,000 connections.
struct ActivityList {
    /// Which of a connection's two sets of links this list uses (every connection is in the server's list and in
    /// its peer's).
    enum Chain { case all, peer }

    private let chain: Chain
    private(set) var oldest: Connection?
    private var newest: Connection?
    private(set) var count = 0

    init(_ chain: Chain) { self.chain = chain }

    @inline(__always) private func links(_ c: Connection) -> Connection.Links {
        chain == .all ? c.allLinks : c.peerLinks
    }

    @inline(__always) private func setLinks(_ c: Connection, _ l: Connection.Links) {
        if chain == .all { c.allLinks = l } else { c.peerLinks = l }
    }

    @inline(__always) private func setPrev(_ c: Connection, _ p: Connection?) {
        if chain == .all { c.allLinks.prev = p } else { c.peerLinks.prev = p }
    }

    @inline(__always) private func setNext(_ c: Connection, _ n: Connection?) {
        if chain == .all { c.allLinks.next = n } else { c.peerLinks.next = n }
    }

    mutating func append(_ c: Connection) {
        guard !links(c).linked else { return }
        setLinks(c, Connection.Links(prev: newest, next: nil, linked: true))
        if let n = newest { setNext(n, c) } else { oldest = c }
        newest = c
        count += 1
    }

    mutating func remove(_ c: Connection) {
        let l = links(c)
        guard l.linked else { return }
        if let p = l.prev { setNext(p, l.next) } else { oldest = l.next }
        if let n = l.next { setPrev(n, l.prev) } else { newest = l.prev }
        setLinks(c, Connection.Links())
        count -= 1
    }

    mutating func moveToBack(_ c: Connection) {
        guard links(c).linked, newest !== c else { return }
        remove(c)
        append(c)
    }
}
