import COpenSSL
import Foundation
import MONAILabel

#if canImport(Glibc)
import Glibc
#endif

/// File digests through OpenSSL (a model file or image can be hundreds of MB).
enum Checksum {
    /// Lower-case hex SHA-256 of a file's bytes.
    static func sha256Hex(_ path: String) throws -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw MONAILabelError.notFound("cannot read \((path as NSString).lastPathComponent)") }
        defer { close(fd) }
        guard let ctx = EVP_MD_CTX_new() else { throw MONAILabelError.io("OpenSSL: cannot allocate a digest") }
        defer { EVP_MD_CTX_free(ctx) }
        guard EVP_DigestInit_ex(ctx, EVP_sha256(), nil) == 1 else { throw MONAILabelError.io("OpenSSL: SHA-256 init failed") }
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw MONAILabelError.io("reading \((path as NSString).lastPathComponent) failed")
            }
            if n == 0 { break }
            _ = buffer.withUnsafeBytes { EVP_DigestUpdate(ctx, $0.baseAddress, n) }
        }
        var digest = [UInt8](repeating: 0, count: 32)
        var len: UInt32 = 0
        guard EVP_DigestFinal_ex(ctx, &digest, &len) == 1 else { throw MONAILabelError.io("OpenSSL: SHA-256 failed") }
        return digest.prefix(Int(len)).map { b in
            let s = String(b, radix: 16)
            return b < 16 ? "0" + s : s
        }.joined()
    }
}
