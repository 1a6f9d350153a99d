import CHTTPSys
import Foundation

/// A response on its way to the client, written by the event loop as fast as the socket takes it.
///
/// Why the loop and not the worker that ran the handler: a client that stops reading (or reads through a tiny
/// receive window) would otherwise hold a worker for the whole write timeout, and ten such clients pinned every
/// worker. Here a stalled client costs its socket, one descriptor per open file and a 16 KiB TLS buffer; the
/// worker is free as soon as the handler returns.
///
/// The worker prepares it (`prepare`): it opens the files, so a missing one still becomes a 500 with a correct
/// head, unlinks the `deleteAfter` ones (the open descriptor keeps their bytes), serializes the head and makes one
/// non-blocking `write(to:budget:)` attempt (most responses end there). The loop then calls `write` again, at once
/// and on every `EPOLLOUT`, until it is done. `release()` (idempotent) runs when it is done, failed or abandoned:
/// it closes the files, deletes the request's temporary files and writes the access-log line. The hand-over from
/// worker to loop goes through the completion queue's lock, which orders the accesses.
final class OutgoingResponse: @unchecked Sendable {
    enum Piece {
        case bytes([UInt8])
        /// An open file sent from offset 0 (`sendfile` on plain sockets, read and encrypted in pieces for TLS).
        case file(fd: Int32, size: Int)
        /// Chunks pulled on the loop thread when the socket has room; `chunked` frames them.
        case stream(any HTTPBodyStream, chunked: Bool)
    }

    /// What one call to `write` achieved.
    enum Progress: Equatable {
        /// Everything went out.
        case done
        /// The socket is full; `EPOLLOUT` brings the loop back.
        case blocked
        /// The budget ran out with the socket still writable: the loop must come back by itself (edge-triggered
        /// epoll sends no new event).
        case yielded
        /// The client is gone or a file or stream failed: close the connection.
        case failed
    }

    /// Who asked, for the access log.
    struct LogInfo {
        var method: HTTPMethod
        var target: String
        var remoteAddress: String
        var started: UInt64
    }

    let keepAlive: Bool
    let status: Int
    private var pieces: [Piece]
    private var index = 0
    /// Progress inside `pieces[index]` (bytes or file offset).
    private var offset = 0
    /// Bytes made on the loop (a stream chunk with its framing, a file piece for TLS) not yet fully written;
    /// kept unchanged until written, as OpenSSL's retry rules want.
    private var staged: [UInt8] = []
    private var stagedOffset = 0
    private let headLength: Int
    private var sent = 0
    private var openFiles: [Int32]
    private let context: HTTPRequestContext?
    private let logInfo: LogInfo?
    private let accessLog: (@Sendable (HTTPAccessLogEntry) -> Void)?
    private let errorLog: (@Sendable (String) -> Void)?
    private var released = false

    /// Bytes of the body sent so far (everything after the head, chunk framing included).
    var bodyBytesSent: Int { max(0, sent - headLength) }

    init(
        head: [UInt8], body: [Piece], keepAlive: Bool, status: Int, openFiles: [Int32] = [],
        context: HTTPRequestContext? = nil, logInfo: LogInfo? = nil,
        accessLog: (@Sendable (HTTPAccessLogEntry) -> Void)? = nil, errorLog: (@Sendable (String) -> Void)? = nil
    ) {
        // A small in-memory body goes out with its head in one segment (one packet under TCP_NODELAY).
        if case .bytes(let b)? = body.first, b.count <= 64 * 1024 {
            pieces = [.bytes(head + b)] + body.dropFirst()
        } else {
            pieces = [.bytes(head)] + body
        }
        headLength = head.count
        self.keepAlive = keepAlive
        self.status = status
        self.openFiles = openFiles
        self.context = context
        self.logInfo = logInfo
        self.accessLog = accessLog
        self.errorLog = errorLog
    }

    deinit { release() }

    /// Builds the wire form of a handler's response (worker side): opens its files, picks the framing, writes
    /// the head. `keepAlive` false adds `Connection: close`.
    static func prepare(
        _ response: HTTPResponse, requestVersion: HTTPVersion, isHead: Bool, keepAlive: Bool, serverName: [UInt8]?,
        context: HTTPRequestContext?, logInfo: LogInfo?, accessLog: (@Sendable (HTTPAccessLogEntry) -> Void)?,
        errorLog: (@Sendable (String) -> Void)?
    ) -> OutgoingResponse {
        var r = response
        var keepAlive = keepAlive
        var deleteAfter: [String] = []
        var fds: [Int32] = []
        var sizes: [Int] = []
        var failed = false
        func open(_ path: String, _ del: Bool) {
            if del { deleteAfter.append(path) }
            guard !failed else { return }
            if let (fd, size) = openRegularFile(path) {
                fds.append(fd)
                sizes.append(size)
            } else {
                failed = true
                errorLog?("Cannot open response file \(path)")
            }
        }
        switch r.body {
        case .file(let path, let del): open(path, del)
        case .segments(let segs): for case .file(let path, let del) in segs { open(path, del) }
        case .empty, .bytes, .stream: break
        }
        if failed {
            for fd in fds { close(fd) }
            fds = []
            r = .text("Internal Server Error", status: .internalServerError)
        }
        // An open descriptor keeps the bytes, so `deleteAfter` files go now: nothing is left behind if the process
        // dies mid-write, and no client can see the file still there after its response.
        for p in deleteAfter { unlink(p) }

        let noBody = ResponseWriter.forbidsBody(r.status.code)
        var body: [Piece] = []
        let framing: ResponseWriter.Framing
        switch r.body {
        case _ where noBody:
            framing = .none
        case .empty:
            framing = .length(0)
        case .bytes(let b):
            framing = .length(b.count)
            body = [.bytes(b)]
        case .file:
            framing = .length(sizes[0])
            body = [.file(fd: fds[0], size: sizes[0])]
        case .segments(let segs):
            var total = 0
            var fi = 0
            for s in segs {
                switch s {
                case .bytes(let b):
                    total += b.count
                    body.append(.bytes(b))
                case .file:
                    total += sizes[fi]
                    body.append(.file(fd: fds[fi], size: sizes[fi]))
                    fi += 1
                }
            }
            framing = .length(total)
        case .stream(let stream):
            let chunked = requestVersion.minor >= 1
            if !chunked { keepAlive = false }
            framing = chunked ? .chunked : .untilClose
            body = [.stream(stream, chunked: chunked)]
        }
        var head: [UInt8] = []
        head.reserveCapacity(512)
        ResponseWriter.serializeHead(r, framing: framing, keepAlive: keepAlive, requestVersion: requestVersion,
                                     serverName: serverName, into: &head)
        return OutgoingResponse(
            head: head, body: isHead || noBody ? [] : body, keepAlive: keepAlive, status: r.status.code, openFiles: fds, context: context, logInfo: logInfo, accessLog: accessLog, errorLog: errorLog)
    }

    private static func openRegularFile(_ path: String) -> (Int32, Int)? {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG else {
            close(fd)
            return nil
        }
        return (fd, Int(st.st_size))
    }

    /// Writes until the socket is full, the budget of bytes is spent, or the response is complete. Returns the
    /// progress and the bytes written by this call.
    func write(to conn: Connection, budget: Int) -> (Progress, Int) {
        var wrote = 0
        func put(_ p: UnsafeRawPointer, _ n: Int) -> Int {
            let w = conn.writeNonBlocking(p, n)
            if w > 0 {
                wrote += w
                sent += w
            }
            return w
        }
        // Bounded, so a stream that keeps returning empty chunks cannot hold the loop.
        for _ in 0..<4096 {
            if wrote >= budget { return (.yielded, wrote) }
            if stagedOffset < staged.count {
                let w = staged.withUnsafeBytes { put($0.baseAddress! + stagedOffset, $0.count - stagedOffset) }
                if w < 0 { return (.failed, wrote) }
                if w == 0 { return (.blocked, wrote) }
                stagedOffset += w
                if stagedOffset == staged.count {
                    staged.removeAll(keepingCapacity: true)
                    stagedOffset = 0
                }
                continue
            }
            guard index < pieces.count else { return (.done, wrote) }
            switch pieces[index] {
            case .bytes(let b):
                if offset >= b.count {
                    index += 1
                    offset = 0
                    continue
                }
                let w = b.withUnsafeBytes { put($0.baseAddress! + offset, $0.count - offset) }
                if w < 0 { return (.failed, wrote) }
                if w == 0 { return (.blocked, wrote) }
                offset += w
            case .file(let fd, let size):
                if offset >= size {
                    index += 1
                    offset = 0
                    continue
                }
                if conn.tls == nil {
                    var off = Int64(offset)
                    let w = chttp_sendfile(conn.fd, fd, &off, min(size - offset, budget - wrote, 1 << 30))
                    if w > 0 {
                        offset = Int(off)
                        wrote += w
                        sent += w
                        continue
                    }
                    if w == 0 { return (.failed, wrote) }  // the file shrank under us
                    if errno == EINTR { continue }
                    return (errno == EAGAIN || errno == EWOULDBLOCK ? .blocked : .failed, wrote)
                }
                // TLS: one record's worth at a time, so a stalled client holds 16 KiB, not the file.
                let want = min(16 * 1024, size - offset)
                if staged.count < want { staged.append(contentsOf: repeatElement(0, count: want - staged.count)) }
                let r = staged.withUnsafeMutableBytes { pread(fd, $0.baseAddress!, want, off_t(offset)) }
                if r < 0 && errno == EINTR { continue }
                if r <= 0 { return (.failed, wrote) }
                staged.removeLast(staged.count - r)
                stagedOffset = 0
                offset += r
            case .stream(let stream, let chunked):
                let chunk: [UInt8]?
                do {
                    chunk = try stream.next()
                } catch {
                    // The head is gone already: the only honest signal left is an aborted body.
                    errorLog?("Response stream failed: \(error)")
                    return (.failed, wrote)
                }
                guard let c = chunk else {
                    if chunked { staged = ChunkedCoding.lastChunk }
                    stagedOffset = 0
                    index += 1
                    continue
                }
                if c.isEmpty { continue }
                staged = chunked ? ChunkedCoding.chunk(c) : c
                stagedOffset = 0
            }
        }
        return (.yielded, wrote)
    }

    /// Closes the files, deletes the request's temporary files, and logs. Idempotent.
    func release() {
        guard !released else { return }
        released = true
        for fd in openFiles { close(fd) }
        openFiles = []
        context?.cleanUp()
        if let info = logInfo, let accessLog {
            let path = HTTPRequest.split(target: info.target).path
            let ms = Double(monotonicNanos() &- info.started) / 1e6
            accessLog(HTTPAccessLogEntry(method: info.method.rawValue, path: String(path), status: status,
                                         bytes: bodyBytesSent, durationMilliseconds: ms, remoteAddress: info.remoteAddress))
        }
    }
}
