import Foundation

/// Media types by file name, following Python's `mimetypes.guess_type(strict=False)` on a stock Debian for the
/// names a web app serves (so downloads carry the same `Content-Type` as Starlette's `FileResponse`).
public enum MediaType {
    private static let byExtension: [String: String] = [
        "html": "text/html", "htm": "text/html", "css": "text/css", "js": "text/javascript", "mjs": "text/javascript",
        "json": "application/json", "txt": "text/plain", "xml": "text/xml", "svg": "image/svg+xml",
        "png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "gif": "image/gif", "ico": "image/vnd.microsoft.icon",
        "webp": "image/webp", "woff": "font/woff", "woff2": "font/woff2", "ttf": "font/ttf", "wasm": "application/wasm",
        "zip": "application/zip", "pdf": "application/pdf", "dcm": "application/dicom", "csv": "text/csv",
        "md": "text/markdown", "yaml": "application/yaml", "yml": "application/yaml",
    ]
    /// Suffixes Python treats as content encodings: `x.nii.gz` is a `.nii` (unknown) compressed with gzip.
    private static let encodings: Set<String> = ["gz", "bz2", "xz", "br", "Z"]

    /// The media type of `filename`, or `application/octet-stream` when unknown (as upstream answers for
    /// `.nii`, `.nii.gz`, `.nrrd`, `.pt`).
    public static func guess(filename: String) -> String {
        var parts = filename.split(separator: "/").last.map { $0.split(separator: ".", omittingEmptySubsequences: false) } ?? []
        guard parts.count > 1 else { return "application/octet-stream" }
        if let last = parts.last, encodings.contains(String(last)) {
            parts.removeLast()
            guard parts.count > 1 else { return "application/octet-stream" }
        }
        guard let ext = parts.last else { return "application/octet-stream" }
        return byExtension[ext.lowercased()] ?? "application/octet-stream"
    }
}

/// Serves files under a directory, like Starlette's `StaticFiles` (with `html=True`, a directory answers its
/// `index.html`). Paths that escape the root (`..`, symlinks pointing outside) are 404.
public struct StaticFiles: Sendable {
    public let root: String
    public let html: Bool

    /// `root` must exist; it is resolved once so later symlink checks compare real paths.
    public init(root: String, html: Bool = false) throws {
        guard let real = realpath(root, nil) else { throw HTTPError(.internalServerError, "Static directory \(root) does not exist") }
        self.root = String(cString: real)
        free(real)
        self.html = html
    }

    /// The response for `relativePath` (already percent-decoded, e.g. a `{path:path}` parameter).
    public func response(for relativePath: String) throws -> HTTPResponse {
        let notFound = HTTPError(.notFound, "Not Found")
        if relativePath.split(separator: "/").contains("..") || relativePath.utf8.contains(0) { throw notFound }
        var candidate = root + "/" + relativePath
        var st = stat()
        guard stat(candidate, &st) == 0 else { throw notFound }
        if st.st_mode & S_IFMT == S_IFDIR {
            guard html else { throw notFound }
            candidate += "/index.html"
            guard stat(candidate, &st) == 0, st.st_mode & S_IFMT == S_IFREG else { throw notFound }
        }
        guard let real = realpath(candidate, nil) else { throw notFound }
        let resolved = String(cString: real)
        free(real)
        guard resolved == root || resolved.hasPrefix(root + "/") else { throw notFound }
        return .file(resolved, contentType: MediaType.guess(filename: resolved))
    }
}
