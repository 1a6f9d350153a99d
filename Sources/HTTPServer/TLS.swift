import COpenSSL

/// Certificate, key and key password for serving HTTPS, as upstream's `--ssl_certfile`, `--ssl_keyfile` and
/// `--ssl_keyfile_password`. TLS 1.2 is the minimum version.
public struct TLSConfiguration: Sendable {
    /// PEM certificate chain (leaf first).
    public var certificateFile: String
    /// PEM private key, possibly encrypted.
    public var keyFile: String
    /// Password of an encrypted key.
    public var keyPassword: String?

    public init(certificateFile: String, keyFile: String, keyPassword: String? = nil) {
        self.certificateFile = certificateFile
        self.keyFile = keyFile
        self.keyPassword = keyPassword
    }
}

/// Why TLS could not be set up.
public struct TLSError: Error, CustomStringConvertible {
    public let description: String
}

/// Owns an `SSL_CTX`. Immutable after creation, which OpenSSL makes safe to share between threads.
final class TLSContext: @unchecked Sendable {
    let ctx: OpaquePointer

    init(_ config: TLSConfiguration) throws {
        var err = [CChar](repeating: 0, count: 256)
        let made: OpaquePointer? = err.withUnsafeMutableBufferPointer { e in
            if let pw = config.keyPassword {
                return pw.withCString { copenssl_server_ctx_new(config.certificateFile, config.keyFile, $0, e.baseAddress, e.count) }
            }
            return copenssl_server_ctx_new(config.certificateFile, config.keyFile, nil, e.baseAddress, e.count)
        }
        guard let ctx = made else {
            let reason = err.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
            throw TLSError(description: "Cannot load TLS certificate \(config.certificateFile) / key \(config.keyFile): \(reason)")
        }
        self.ctx = ctx
    }

    deinit { copenssl_ctx_free(ctx) }
}

/// Owns one `SSL` connection object. Used by one thread at a time: the event loop, or the worker that holds
/// the connection while it writes a response; the hand-over goes through a lock.
final class TLSSession: @unchecked Sendable {
    let ssl: OpaquePointer
    /// Set after a fatal error, when OpenSSL forbids sending close_notify.
    private var failed = false

    init?(context: TLSContext, fd: Int32) {
        guard let s = copenssl_ssl_new(context.ctx, fd) else { return nil }
        ssl = s
    }

    deinit { copenssl_ssl_free(ssl) }

    /// Sends close_notify unless a fatal error happened (OpenSSL forbids it then). Call before closing the socket.
    func shutdown() {
        if !failed { copenssl_shutdown(ssl) }
    }

    enum Status { case ok, wantRead, wantWrite, closed, error }

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

    func handshake() -> Status { status(copenssl_accept(ssl)) }

    func read(_ p: UnsafeMutableRawPointer, _ n: Int) -> (Int, Status) {
        var st: Int32 = 0
        let r = copenssl_read(ssl, p, Int32(min(n, Int(Int32.max))), &st)
        return (Int(r), status(st))
    }

    func write(_ p: UnsafeRawPointer, _ n: Int) -> (Int, Status) {
        var st: Int32 = 0
        let r = copenssl_write(ssl, p, Int32(min(n, Int(Int32.max))), &st)
        return (Int(r), status(st))
    }
}
