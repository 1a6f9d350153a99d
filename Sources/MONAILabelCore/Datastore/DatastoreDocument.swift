import Foundation

/// One file of the store (an image or a label): its extension and free-form info.
public struct FileEntry: Sendable, Equatable {
    public var ext: String
    public var info: JSONObject

    public init(ext: String, info: JSONObject) {
        self.ext = ext
        self.info = info
    }
}

/// An image and its labels by tag.
public struct ImageObject: Sendable, Equatable {
    public var image: FileEntry
    public var labels: OrderedMap<FileEntry>

    public init(image: FileEntry, labels: OrderedMap<FileEntry> = OrderedMap()) {
        self.image = image
        self.labels = labels
    }
}

/// `datastore_v2.json`, upstream's pydantic `LocalDatastoreModel` (spec section 3.2). Unknown top-level keys are
/// kept so a file written by a newer upstream round-trips.
public struct DatastoreDocument: Sendable, Equatable {
    public static let fileName = "datastore_v2.json"

    public var name = "new-dataset"
    public var description = "New Dataset"
    public var imagesDir = "."
    public var labelsDir = "labels"
    public var objects = OrderedMap<ImageObject>()
    public var extra = JSONObject()

    public init() {}

    /// Parses the document; a structurally wrong file is an error, never a partial store.
    public init(json: JSONValue) throws {
        guard let top = json.objectValue else { throw MONAILabelError.invalid("datastore JSON is not an object") }
        for (key, value) in top {
            switch key {
            case "name": name = value.stringValue ?? name
            case "description": description = value.stringValue ?? description
            case "images_dir": imagesDir = value.stringValue ?? imagesDir
            case "labels_dir": labelsDir = value.stringValue ?? labelsDir
            case "base_path": continue  // excluded by upstream when saving; the store's root is authoritative
            case "objects":
                guard let objs = value.objectValue else {
                    throw MONAILabelError.invalid("datastore JSON: objects is not an object")
                }
                for (id, obj) in objs {
                    objects[id] = try DatastoreDocument.parseObject(id, obj)
                }
            default: extra[key] = value
            }
        }
    }

    private static func parseEntry(_ v: JSONValue?, what: String) throws -> FileEntry {
        guard let o = v?.objectValue, let ext = o["ext"]?.stringValue else {
            throw MONAILabelError.invalid("datastore JSON: \(what) lacks an ext")
        }
        return FileEntry(ext: ext, info: o["info"]?.objectValue ?? JSONObject())
    }

    private static func parseObject(_ id: String, _ v: JSONValue) throws -> ImageObject {
        guard let o = v.objectValue else { throw MONAILabelError.invalid("datastore JSON: object \(id) is malformed") }
        var obj = ImageObject(image: try parseEntry(o["image"], what: "image \(id)"))
        if let labels = o["labels"]?.objectValue {
            for (tag, entry) in labels {
                obj.labels[tag] = try parseEntry(entry, what: "label \(id)/\(tag)")
            }
        }
        return obj
    }

    /// The document as upstream writes it (and as `GET /datastore/?output=all` returns it).
    public var json: JSONValue {
        var top = JSONObject()
        top["name"] = .string(name)
        top["description"] = .string(description)
        top["images_dir"] = .string(imagesDir)
        top["labels_dir"] = .string(labelsDir)
        var objs = JSONObject()
        for (id, obj) in objects {
            var labels = JSONObject()
            for (tag, e) in obj.labels {
                labels[tag] = ["ext": .string(e.ext), "info": .object(e.info)]
            }
            objs[id] = [
                "image": ["ext": .string(obj.image.ext), "info": .object(obj.image.info)],
                "labels": .object(labels),
            ]
        }
        top["objects"] = .object(objs)
        top.merge(extra)
        return .object(top)
    }
}

/// What the datastore accepts into an image's or a label's info (`params` of an upload, `info` of an update).
/// These are far stricter than what the reader of `datastore_v2.json` allows (`JSONValue.maxParseDepth`, no
/// size limit), so a document the server wrote always loads again: the info sits four levels down
/// (`objects.<id>.image.info`), and 4 + 32 is far from 512.
public enum InfoLimits {
    /// The deepest nesting of arrays and objects in one info (the info object itself counts as 1).
    public static let maxDepth = 32
    /// The largest info, as compact JSON.
    public static let maxBytes = 1 << 20

    /// Throws `invalidInput` naming `field` when `info` is nested deeper or is larger than the limits.
    public static func check(_ info: JSONObject, field: String) throws {
        let value = JSONValue.object(info)
        let depth = value.nestingDepth
        if depth > maxDepth {
            throw MONAILabelError.invalid(
                "\(field) is nested \(depth) levels deep; the datastore accepts at most \(maxDepth)")
        }
        let bytes = value.compactBytes().count
        if bytes > maxBytes {
            throw MONAILabelError.invalid(
                "\(field) is \(bytes) bytes as JSON; the datastore accepts at most \(maxBytes)")
        }
    }
}

/// Upstream's id/extension rules (spec section 3.2) and our safety rules for ids and tags.
public enum StoreNames {
    /// `MONAI_LABEL_DATASTORE_FILE_EXT`'s default.
    public static let defaultPatterns = ["*.nii.gz", "*.nii", "*.nrrd", "*.jpg", "*.png", "*.tif", "*.svs", "*.xml"]

    /// Splits a file name into (id, ext): ext is first every trailing suffix of at most 10 characters, then, if
    /// the name ends with a configured pattern, the last such pattern in list order.
    public static func split(_ fileName: String, patterns: [String] = defaultPatterns) -> (id: String, ext: String) {
        var ext = ""
        var rest = Substring(fileName)
        while let dot = rest.lastIndex(of: "."), dot != rest.startIndex {
            let suffix = rest[dot...]
            if suffix.count > 10 || suffix.count < 2 { break }
            ext = suffix + ext
            rest = rest[..<dot]
        }
        for p in patterns {
            let tail = p.hasPrefix("*") ? String(p.dropFirst()) : p
            if !tail.isEmpty, fileName.hasSuffix(tail), fileName.count > tail.count { ext = tail }
        }
        return (String(fileName.dropLast(ext.count)), ext)
    }

    /// Whether a file name matches one of the patterns (fnmatch, case-sensitive, as Python on Linux).
    public static func matches(_ fileName: String, patterns: [String]) -> Bool {
        patterns.contains { fnmatch($0, fileName, 0) == 0 }
    }

    /// Rejects ids and tags that could address anything but one entry of the store.
    public static func validate(_ s: String, what: String) throws {
        if s.isEmpty { throw MONAILabelError.invalid("\(what) must not be empty") }
        if s.utf8.count > 255 { throw MONAILabelError.invalid("\(what) is too long") }
        if s == "." || s == ".." || s.hasPrefix(".") {
            throw MONAILabelError.invalid("\(what) must not start with '.'")
        }
        if s.contains("/") || s.contains("\\") || s.utf8.contains(0) {
            throw MONAILabelError.invalid("\(what) must not contain '/', '\\' or NUL")
        }
        if s.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) {
            throw MONAILabelError.invalid("\(what) must not contain control characters")
        }
    }

    /// The longest file name the file systems we run on store (NAME_MAX).
    public static let maxFileNameBytes = 255

    /// Rejects an id whose stored file name (`<id><ext>`) the file system could not hold, before anything is
    /// written (the rename would fail with ENAMETOOLONG, a 500 naming a server path).
    public static func validateFileName(_ id: String, ext: String, what: String) throws {
        let n = id.utf8.count + ext.utf8.count
        if n > maxFileNameBytes {
            throw MONAILabelError.invalid(
                "\(what) is too long: with its extension '\(ext)' the file name would be \(n) bytes, and file names "
                    + "are limited to \(maxFileNameBytes) bytes")
        }
    }

    /// The extension part of an uploaded file name (which may be a full client path): every trailing suffix, as
    /// upstream keeps them, restricted to the configured image patterns when one matches.
    public static func uploadExtension(_ fileName: String, patterns: [String] = defaultPatterns) -> String {
        let base = fileName.split(whereSeparator: { $0 == "/" || $0 == "\\" }).last.map(String.init) ?? fileName
        return split(base, patterns: patterns).ext
    }
}
