import CHTTPClient

/// A TLS client context; immutable once made, so shared by all requests of a client.
final class TLSClientContext: @unchecked Sendable {
    let ctx: OpaquePointer

    init(verify: Bool, caFile: String?) throws {
        var err = [CChar](repeating: 0, count: 512)
        let made: OpaquePointer? = err.withUnsafeMutableBufferPointer { e in
            if let ca = caFile {
                return ca.withCString { chttpc_tls_ctx_new(verify ? 1 : 0, $0, e.baseAddress, e.count) }
            }
            return chttpc_tls_ctx_new(verify ? 1 : 0, nil, e.baseAddress, e.count)
        }
        guard let ctx = made else { throw HTTPClientError(.tls, cString(err)) }
        self.ctx = ctx
    }

    deinit { chttpc_tls_ctx_free(ctx) }
}

/// One connection, plain or TLS, used by one request at a time; closes itself when released.
final class Connection {
    private let fd: Int32
    private var ssl: OpaquePointer?
    private let host: String

    /// Connects (and for HTTPS runs the handshake) or throws a typed error saying why not.
    init(host: String, port: Int, tls: TLSClientContext?, connectTimeout: Double, ioTimeout: Double) throws {
        self.host = host
        var kind: Int32 = 0
        var err = [CChar](repeating: 0, count: 512)
        let fd = err.withUnsafeMutableBufferPointer { e in
            chttpc_connect(host, Int32(port), Int32(milliseconds(connectTimeout)), Int32(milliseconds(ioTimeout)),
                           &kind, e.baseAddress, e.count)
        }
        guard fd >= 0 else {
            let reason = cString(err)
            let where_ = "\(host):\(port)"
            switch Int(kind) {
            case Int(CHTTPC_RESOLVE): throw HTTPClientError(.cannotResolve, reason)
            case Int(CHTTPC_REFUSED): throw HTTPClientError(.connectionRefused, "connection to \(where_) refused")
            case Int(CHTTPC_TIMEOUT):
                throw HTTPClientError(.connectTimeout, "connection to \(where_) timed out after \(connectTimeout) s")
            case Int(CHTTPC_UNREACHABLE): throw HTTPClientError(.unreachable, "\(where_) is unreachable: \(reason)")
            default: throw HTTPClientError(.io, "cannot connect to \(where_): \(reason)")
            }
        }
        self.fd = fd
        if let tls {
            let s = err.withUnsafeMutableBufferPointer { e in chttpc_tls_connect(tls.ctx, fd, host, e.baseAddress, e.count) }
            guard let s else {
                chttpc_close(fd)
                throw HTTPClientError(.tls, "TLS with \(host):\(port) failed: \(cString(err))")
            }
            ssl = s
        }
    }

    deinit {
        if let ssl { chttpc_tls_free(ssl) }
        chttpc_close(fd)
    }

    func write(_ bytes: [UInt8]) throws {
        var off = 0
        while off < bytes.count {
            var status: Int32 = 0
            let n = bytes.withUnsafeBytes { raw -> Int in
                let p = raw.baseAddress! + off
                let len = bytes.count - off
                if let ssl { return chttpc_tls_write(ssl, p, Int32(min(len, 1 << 30)), &status) }
                return chttpc_write(fd, p, len, &status)
            }
            if n > 0 {
                off += n
                continue
            }
            switch Int(status) {
            case Int(CHTTPC_IO_TIMEOUT): throw HTTPClientError(.readTimeout, "\(host) stopped accepting the request body")
            case Int(CHTTPC_IO_CLOSED): throw HTTPClientError(.connectionClosed, "\(host) closed the connection while the request was sent")
            default: throw HTTPClientError(.io, "cannot send to \(host)")
            }
        }
    }

    /// Reads what is available (blocking up to the I/O timeout); an empty result means end of stream.
    func read(into buf: inout [UInt8]) throws -> Int {
        var status: Int32 = 0
        let n = buf.withUnsafeMutableBytes { raw -> Int in
            if let ssl { return chttpc_tls_read(ssl, raw.baseAddress, Int32(raw.count), &status) }
            return chttpc_read(fd, raw.baseAddress, raw.count, &status)
        }
        if n > 0 { return n }
        switch Int(status) {
        case Int(CHTTPC_IO_CLOSED): return 0
        case Int(CHTTPC_IO_TIMEOUT): throw HTTPClientError(.readTimeout, "\(host) sent nothing within the read timeout")
        default: throw HTTPClientError(.io, "cannot read from \(host)")
        }
    }
}

func milliseconds(_ seconds: Double) -> Int { max(1, min(Int(Int32.max), Int((seconds * 1000).rounded(.up)))) }

func cString(_ buf: [CChar]) -> String {
    String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
