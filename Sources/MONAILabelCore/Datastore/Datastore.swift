import Foundation

/// The two tags every store knows: what a model produced and what a user approved.
public enum LabelTag {
    public static let original = "original"
    public static let final = "final"
}

/// `GET /datastore/` stats: `{"total", "completed", "label_tags"}`.
public struct DatastoreStatus: Sendable, Equatable {
    public var total: Int
    public var completed: Int
    public var labelTags: OrderedMap<Int>
    /// Why the figures may be stale (a remote store that cannot be reached); added to the JSON as `error`.
    public var error: String?
    /// Series a remote store holds but cannot serve (what it sent cannot be converted), with why; added to the
    /// JSON as `failing` when any.
    public var failing: [String: String] = [:]

    public init(total: Int, completed: Int, labelTags: OrderedMap<Int>, error: String? = nil) {
        self.total = total
        self.completed = completed
        self.labelTags = labelTags
        self.error = error
    }

    public var json: JSONValue {
        var tags = JSONObject()
        for (k, v) in labelTags { tags[k] = .int(v) }
        var out: JSONObject = ["total": .int(total), "completed": .int(completed), "label_tags": .object(tags)]
        if let error { out["error"] = .string(error) }
        if !failing.isEmpty {
            var f = JSONObject()
            for (k, v) in failing.sorted(by: { $0.key < $1.key }) { f[k] = .string(v) }
            out["failing"] = .object(f)
        }
        return .object(out)
    }
}

/// An image with its `final` label, as training reads them.
public struct DatalistItem: Sendable, Equatable {
    public var image: String
    public var label: String
}

/// Where images and labels live. Mirrors upstream's `Datastore` interface (spec section 3.1); label id ==
/// image id, "labeled" means "has a `final` label".
public protocol Datastore: AnyObject, Sendable {
    var name: String { get }
    var description: String { get }

    func status() -> DatastoreStatus
    /// `status()` when the store has it at hand, without waiting for a write in progress or counting anything
    /// (for a caller on an event loop); nil otherwise, and then `status()` gives it. The default is nil.
    func statusWithoutWaiting() -> DatastoreStatus?
    /// The whole datastore document (`GET /datastore/?output=all`).
    func json() -> JSONValue
    func datalist() -> [DatalistItem]
    func listImages() -> [String]
    func labeledImages() -> [String]
    func unlabeledImages() -> [String]
    /// Absolute path of an image, or nil when the id is unknown (or, in a local store, when its file is missing or
    /// resolves outside the studies folder).
    func imageURI(_ id: String) -> String?
    func labelURI(_ id: String, tag: String) -> String?
    func imageInfo(_ id: String) -> JSONObject?
    func labelInfo(_ id: String, tag: String) -> JSONObject?
    /// The stored file name of an image (`<id><ext>`), or nil when unknown.
    func imageFileName(_ id: String) -> String?
    func labelFileName(_ id: String, tag: String) -> String?
    /// The whole document as compact JSON bytes (may be cached by the store).
    func compactJSON() -> [UInt8]
    /// `{tag: label id}` for an image.
    func labelsByImage(_ id: String) -> OrderedMap<String>

    /// Adds (or replaces) an image from a file whose name carries the extension; returns the id.
    @discardableResult
    func addImage(id: String, file: URL, fileName: String, info: JSONObject) throws -> String
    func removeImage(_ id: String) throws
    /// Saves a label for an existing image under `tag`; returns the label id.
    @discardableResult
    func saveLabel(imageID: String, file: URL, fileName: String, tag: String, info: JSONObject) throws -> String
    func removeLabel(_ id: String, tag: String) throws
    func updateImageInfo(_ id: String, info: JSONObject) throws
    func updateLabelInfo(_ id: String, tag: String, info: JSONObject) throws
    /// Re-reads the disk and reconciles the document with it.
    func refresh()

    /// The image as a local file, fetched first when the store is remote (a PACS). Throws `.notFound` for an
    /// unknown id and `.unavailable` when the remote store cannot be reached.
    func fetchImage(_ id: String) throws -> String
    /// The label as a local file, fetched first when the store is remote; nil when there is none.
    func fetchLabel(_ id: String, tag: String) throws -> String?
    /// Whether images come from a service outside the server (a PACS) rather than from clients or a folder: an
    /// image a model cannot use is then that service's fault (502), not the client's (422).
    var imagesFromUpstream: Bool { get }
}

extension Datastore {
    public func statusWithoutWaiting() -> DatastoreStatus? { nil }

    public func fetchImage(_ id: String) throws -> String {
        guard let path = imageURI(id) else { throw MONAILabelError.notFound("Image \(id) not found") }
        return path
    }

    public func fetchLabel(_ id: String, tag: String) throws -> String? { labelURI(id, tag: tag) }

    public var imagesFromUpstream: Bool { false }
}

/// A datastore that can export a label of one of its images as a DICOM SEG referencing that image's series
/// (a DICOMweb datastore). Inference asks for this capability for `output=dicom_seg`; a datastore without it
/// answers 422.
public protocol DicomSegExporting: Datastore {
    /// Writes `labelFile` (a label of image `imageID`; `fileName` carries its format's extension) as a DICOM SEG
    /// at `url`. Segment names come from `labelInfo` (a result's `label_info`) where given.
    func exportDicomSeg(imageID: String, labelFile: URL, fileName: String, labelInfo: [JSONValue], to url: URL) throws
}
