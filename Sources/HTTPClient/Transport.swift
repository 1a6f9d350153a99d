import CHTTPClient
import OpenSSLKit

/// One connection, plain or TLS, used by one request at a time; closes itself when released.
final class Connection {
    private let fd: Int32
    private var tls: TLSClientSession?
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
            do {
                self.tls = try TLSClientSession(context: tls, fd: fd, host: host)
            } catch {
                chttpc_close(fd)
                throw HTTPClientError(.tls, "TLS with \(host):\(port) failed: \(error)")
            }
        }
    }

    deinit {
        // The session says close_notify over the socket, so it goes first.
        tls = nil
        chttpc_close(fd)
    }

    func write(_ bytes: [UInt8]) throws {
        var off = 0
        while off < bytes.count {
            let (n, status) = bytes.withUnsafeBytes { raw -> (Int, TLSClientSession.Status) in
                let p = raw.baseAddress! + off
                let len = bytes.count - off
                if let tls { return tls.write(p, len) }
                var st: Int32 = 0
                let n = chttpc_write(fd, p, len, &st)
                return (n, Self.status(st))
            }
            if n > 0 {
                off += n
                continue
            }
            switch status {
            case .timeout: throw HTTPClientError(.readTimeout, "\(host) stopped accepting the request body")
            case .closed: throw HTTPClientError(.connectionClosed, "\(host) closed the connection while the request was sent")
            case .ok, .error: throw HTTPClientError(.io, "cannot send to \(host)")
            }
        }
    }

    /// Reads what is available (blocking up to the I/O timeout); an empty result means end of stream.
    func read(into buf: inout [UInt8]) throws -> Int {
        let (n, status) = buf.withUnsafeMutableBytes { raw -> (Int, TLSClientSession.Status) in
            if let tls { return tls.read(raw.baseAddress, raw.count) }
            var st: Int32 = 0
            let n = chttpc_read(fd, raw.baseAddress, raw.count, &st)
            return (n, Self.status(st))
        }
        if n > 0 { return n }
        switch status {
        case .closed: return 0
        case .timeout: throw HTTPClientError(.readTimeout, "\(host) sent nothing within the read timeout")
        case .ok, .error: throw HTTPClientError(.io, "cannot read from \(host)")
        }
    }

    /// The plain socket's status in the TLS session's terms, so both paths share one error mapping.
    private static func status(_ s: Int32) -> TLSClientSession.Status {
        switch Int(s) {
        case Int(CHTTPC_IO_OK): return .ok
        case Int(CHTTPC_IO_CLOSED): return .closed
        case Int(CHTTPC_IO_TIMEOUT): return .timeout
        default: return .error
        }
    }
}

func milliseconds(_ seconds: Double) -> Int { max(1, min(Int(Int32.max), Int((seconds * 1000).rounded(.up)))) }

func cString(_ buf: [CChar]) -> String {
    String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
