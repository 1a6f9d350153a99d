/// Why a checkpoint could not be read or written.
///
/// `kind` lets callers (and tests) branch on the class of failure; `message` says what exactly was wrong,
/// naming the offending global, record or opcode where there is one.
public struct CheckpointError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Classes of failure.
    public enum Kind: String, Sendable, Equatable {
        /// The file could not be opened, read or written.
        case io
        /// The file is not a zip archive at all (for example the pre-1.6 `torch.save` format).
        case notZip
        /// The zip structure is damaged: truncated, inconsistent offsets, bad signatures or checksums.
        case corruptZip
        /// A valid zip feature this reader deliberately does not implement (compression, encryption, ...).
        case unsupportedZip
        /// A record the checkpoint needs (`data.pkl`, a storage) is not in the archive.
        case missingRecord
        /// The pickle references a global or callable outside the weights-only allowlist.
        case forbiddenGlobal
        /// The pickle uses an opcode this unpickler does not accept.
        case unsupportedOpcode
        /// The pickle stream is damaged or inconsistent (stack underflow, memo miss, truncation, wrong types).
        case malformedPickle
        /// A tensor's declared dtype, size, stride or storage do not fit together.
        case invalidTensor
        /// The checkpoint is well formed but does not hold what was asked for (e.g. no state dict).
        case unexpectedContent
        /// A value cannot be written in the checkpoint format.
        case unwritableValue
    }

    public let kind: Kind
    public let message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { "checkpoint error (\(kind.rawValue)): \(message)" }
}
