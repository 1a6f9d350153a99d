import COpenSSL

/// Owns a server `SSL_CTX`. Immutable after creation, which OpenSSL makes safe to share between threads.
public final class TLSServerContext: @unchecked Sendable {
    let ctx: OpaquePointer

    /// Loads the PEM certificate chain and private key (decrypted with `keyPassword` when given); TLS 1.2 minimum.
    /// Throws OpenSSL's reason.
    public init(certificateFile: String, keyFile: String, keyPassword: String?) throws {
        var err = [CChar](repeating: 0, count: 256)
        let made: OpaquePointer? = err.withUnsafeMutableBufferPointer { e in
            if let pw = keyPassword {
                return pw.withCString { copenssl_server_ctx_new(certificateFile, keyFile, $0, e.baseAddress, e.count) }
            }
            return copenssl_server_ctx_new(certificateFile, keyFile, nil, e.baseAddress, e.count)
        }
        guard let ctx = made else { throw OpenSSLError(cString(err)) }
        self.ctx = ctx
    }

    deinit { copenssl_ctx_free(ctx) }
}

/// Owns one server-side `SSL` connection over a non-blocking socket. Used by one thread at a time: the event
/// loop, or the worker that holds the connection while it writes a response; the hand-over goes through a lock.
public final class TLSServerSession: @unchecked Sendable {
    private let ssl: OpaquePointer
    /// Set after a fatal error, when OpenSSL forbids sending close_notify.
    private var failed = false

    public init?(context: TLSServerContext, fd: Int32) {
        guard let s = copenssl_ssl_new(context.ctx, fd) else { return nil }
        ssl = s
    }

    deinit { copenssl_ssl_free(ssl) }

    /// Sends close_notify unless a fatal error happened (OpenSSL forbids it then). Call before closing the socket.
    public func shutdown() {
        if !failed { copenssl_shutdown(ssl) }
    }

    /// The outcome of one non-blocking step.
    public enum Status: Sendable { case ok, wantRead, wantWrite, closed, error }

    private func status(_ s: Int32) -> Status {
        let st = Self.status(s)
        if st == .error { failed = true }
        return st
    }

    private static func status(_ s: Int32) -> Status {
        switch s {
        case Int32(COPENSSL_OK): return .ok
        case Int32(COPENSSL_WANT_READ): return .wantRead
        case Int32(COPENSSL_WANT_WRITE): return .wantWrite
        case Int32(COPENSSL_CLOSED): return .closed
        default: return .error
        }
    }

    /// Advances the handshake.
    public func handshake() -> Status { status(copenssl_accept(ssl)) }

    /// Reads up to `n` bytes: the count (> 0) with `.ok`, or 0 with why not.
    public func read(_ p: UnsafeMutableRawPointer, _ n: Int) -> (Int, Status) {
        var st: Int32 = 0
        let r = copenssl_read(ssl, p, Int32(min(n, Int(Int32.max))), &st)
        return (Int(r), status(st))
    }

    /// Writes up to `n` bytes (partial writes allowed): the count (> 0) with `.ok`, or 0 with why not.
    public func write(_ p: UnsafeRawPointer, _ n: Int) -> (Int, Status) {
        var st: Int32 = 0
        let r = copenssl_write(ssl, p, Int32(min(n, Int(Int32.max))), &st)
        return (Int(r), status(st))
    }
}

func cString(_ buf: [CChar]) -> String {
    String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
