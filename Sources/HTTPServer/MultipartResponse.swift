/// Builds a `multipart/form-data` response the way requests_toolbelt's `MultipartEncoder` lays it out (what
/// MONAI Label's `/infer` returns): parts in order, text parts without a filename, file parts streamed from disk.
public struct MultipartResponseBuilder: Sendable {
    private var builder: MultipartBuilder

    /// 32 lowercase hex characters unless given.
    public var boundary: String { builder.boundary }

    public init(boundary: String? = nil) {
        builder = MultipartBuilder(boundary: boundary)
    }

    private static func headers(name: String, filename: String?, contentType: String?) -> [(name: String, value: String)] {
        var disposition = "form-data; name=\"\(name)\""
        if let f = filename { disposition += "; filename=\"\(f)\"" }
        var h = [(name: "Content-Disposition", value: disposition)]
        if let ct = contentType { h.append((name: "Content-Type", value: ct)) }
        return h
    }

    /// A part without filename holding `value`.
    public mutating func addField(name: String, value: [UInt8], contentType: String? = nil) {
        builder.addPart(headers: Self.headers(name: name, filename: nil, contentType: contentType), body: .bytes(value))
    }

    /// A part with `filename` whose bytes are streamed from `path` (deleted after sending when `deleteAfter`).
    public mutating func addFile(
        name: String, filename: String, path: String, contentType: String? = "application/octet-stream",
        deleteAfter: Bool = false
    ) {
        builder.addPart(headers: Self.headers(name: name, filename: filename, contentType: contentType),
                        body: .file(path: path, deleteAfter: deleteAfter))
    }

    /// The response: `Content-Type: multipart/form-data; boundary=...` and a body of known length.
    public func response(status: HTTPStatus = .ok) -> HTTPResponse {
        var headers = HTTPHeaders()
        headers.add("Content-Type", "multipart/form-data; boundary=\(boundary)")
        return HTTPResponse(status: status, headers: headers, body: .segments(builder.bodySegments))
    }
}
