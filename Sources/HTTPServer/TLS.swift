import OpenSSLKit

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

extension TLSServerContext {
    /// The context for `config`, or a `TLSError` naming the files.
    static func make(_ config: TLSConfiguration) throws -> TLSServerContext {
        do {
            return try TLSServerContext(certificateFile: config.certificateFile, keyFile: config.keyFile, keyPassword: config.keyPassword)
        } catch {
            throw TLSError(description: "Cannot load TLS certificate \(config.certificateFile) / key \(config.keyFile): \(error)")
        }
    }
}
