import COpenSSL

/// A TLS client context; immutable once made, so shared by all requests of a client.
public final class TLSClientContext: @unchecked Sendable {
    let ctx: OpaquePointer

    /// TLS 1.2 minimum; with `verify`, peers are checked against `caFile` (PEM) or the system's trust store.
    public init(verify: Bool, caFile: String?) throws {
        var err = [CChar](repeating: 0, count: 512)
        let made: OpaquePointer? = err.withUnsafeMutableBufferPointer { e in
            if let ca = caFile {
                return ca.withCString { copenssl_client_ctx_new(verify ? 1 : 0, $0, e.baseAddress, e.count) }
            }
            return copenssl_client_ctx_new(verify ? 1 : 0, nil, e.baseAddress, e.count)
        }
        guard let ctx = made else { throw OpenSSLError(cString(err)) }
        self.ctx = ctx
    }

    deinit { copenssl_client_ctx_free(ctx) }
}

/// One client-side TLS connection over a connected blocking socket (the socket's timeouts apply); used by one
/// request at a time. Does not own the socket: close it after releasing the session.
public final class TLSClientSession {
    private let ssl: OpaquePointer

    /// Runs the handshake, sending `host` as SNI and, when the context verifies, checking the certificate names it.
    public init(context: TLSClientContext, fd: Int32, host: String) throws {
        var err = [CChar](repeating: 0, count: 512)
        let s = err.withUnsafeMutableBufferPointer { e in copenssl_client_connect(context.ctx, fd, host, e.baseAddress, e.count) }
        guard let s else { throw OpenSSLError(cString(err)) }
        ssl = s
    }

    deinit { copenssl_client_free(ssl) }

    /// The outcome of a blocking read or write.
    public enum Status: Sendable { case ok, closed, timeout, error }

    private static func status(_ s: Int32) -> Status {
        switch s {
        case Int32(COPENSSL_IO_OK): return .ok
        case Int32(COPENSSL_IO_CLOSED): return .closed
        case Int32(COPENSSL_IO_TIMEOUT): return .timeout
        default: return .error
        }
    }

    /// Reads up to `len` bytes: the count (> 0), or 0 with why not.
    public func read(_ p: UnsafeMutableRawPointer?, _ len: Int) -> (Int, Status) {
        var st: Int32 = 0
        let n = copenssl_client_read(ssl, p, Int32(min(len, 1 << 30)), &st)
        return (n, Self.status(st))
    }

    /// Writes up to `len` bytes: the count (> 0), or 0 with why not.
    public func write(_ p: UnsafeRawPointer, _ len: Int) -> (Int, Status) {
        var st: Int32 = 0
        let n = copenssl_client_write(ssl, p, Int32(min(len, 1 << 30)), &st)
        return (n, Self.status(st))
    }
}
