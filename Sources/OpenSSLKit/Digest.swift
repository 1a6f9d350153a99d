import COpenSSL

/// Why OpenSSL refused an operation; the reason is OpenSSL's (or the shim's) message.
public struct OpenSSLError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A streaming SHA-256 (a model file or image can be hundreds of MB, so it is fed piece by piece).
/// Owns its OpenSSL context; use it from one thread at a time.
public final class SHA256 {
    private let ctx: OpaquePointer

    public init() throws {
        guard let ctx = copenssl_sha256_new() else { throw OpenSSLError("OpenSSL: cannot allocate a SHA-256 digest") }
        self.ctx = ctx
    }

    deinit { copenssl_digest_free(ctx) }

    /// Adds the bytes.
    public func update(_ bytes: UnsafeRawBufferPointer) throws {
        guard copenssl_digest_update(ctx, bytes.baseAddress, bytes.count) == 1 else {
            throw OpenSSLError("OpenSSL: SHA-256 update failed")
        }
    }

    /// The 32-byte digest of everything added.
    public func finish() throws -> [UInt8] {
        var digest = [UInt8](repeating: 0, count: 64)
        var len: UInt32 = 0
        guard copenssl_digest_final(ctx, &digest, &len) == 1, len == 32 else { throw OpenSSLError("OpenSSL: SHA-256 failed") }
        return Array(digest.prefix(32))
    }
}

/// One-shot digests of small inputs.
public enum Digest {
    /// The 16-byte MD5 of `bytes` (names only, never security: upstream names cache folders by it).
    public static func md5(_ bytes: [UInt8]) -> [UInt8] {
        var digest = [UInt8](repeating: 0, count: 16)
        // EVP_md5 cannot fail on a fetched default provider; a failure leaves zeros, which only names a folder.
        _ = copenssl_md5(bytes, bytes.count, &digest)
        return digest
    }

    /// Lower-case hex of `bytes`.
    public static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 15)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
