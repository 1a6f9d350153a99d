/// An error of the MONAI Label domain. The kind says what went wrong in terms a transport can map to a status
/// (the endpoint layer turns `.notFound` into 404 and so on); the domain itself knows nothing of HTTP.
public struct MONAILabelError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// An unknown image, label, model, strategy, session or file.
        case notFound
        /// A request that can never succeed as sent: bad ids, malformed params, unreadable uploads.
        case invalidInput
        /// A feature switched off by settings (upstream's 406 for sessions).
        case notEnabled
        /// A task of the same kind is already running.
        case busy
        /// A bounded queue is full or a dependency is down; retrying later may work.
        case unavailable
        /// Work that ran past its configured time limit (`MONAI_LABEL_INFER_TIMEOUT`) and was stopped.
        case timedOut
        /// Our own failure (I/O, corrupt state).
        case internalError
        /// What a service we depend on sent cannot be used (a PACS's broken or hostile series): 502.
        case badUpstream
        /// An image (not a parameter) that a model's transforms refuse: its geometry implies a grid past
        /// `MONAI_LABEL_MAX_VOXELS`, or a singular affine. Whose fault depends on where the image came from: the
        /// client's (422) for an upload or a folder's image, the PACS's (502) for a series it sent, which
        /// inference maps to `.badUpstream`.
        case unusableImage
    }

    public let kind: Kind
    public let message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }

    public static func notFound(_ m: String) -> MONAILabelError { MONAILabelError(.notFound, m) }
    public static func invalid(_ m: String) -> MONAILabelError { MONAILabelError(.invalidInput, m) }
    public static func io(_ m: String) -> MONAILabelError { MONAILabelError(.internalError, m) }
}
