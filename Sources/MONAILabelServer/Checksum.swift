import Foundation
import MONAILabel
import OpenSSLKit

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
        do {
            let sha = try SHA256()
            var buffer = [UInt8](repeating: 0, count: 1 << 20)
            while true {
                let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n < 0 {
                    if errno == EINTR { continue }
                    throw MONAILabelError.io("reading \((path as NSString).lastPathComponent) failed")
                }
                if n == 0 { break }
                try buffer.withUnsafeBytes { try sha.update(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
            }
            return Digest.hex(try sha.finish())
        } catch let e as OpenSSLError {
            throw MONAILabelError.io(e.description)
        }
    }
}
