import Foundation

/// Serves a prebuilt single-page web app (a bundler's output folder) the way browsers want it: files stream from
/// disk, content-hashed bundles are cached for a year, everything else is revalidated (`no-cache` with an `ETag`
/// answered by 304), a `name.gz` made beside a file is sent instead when the client accepts gzip, and a path that
/// names no file answers the app's `index.html` so client-side routes (`/ohif/viewer?...`) load the app.
///
/// A missing asset (a path whose last segment has a known static extension such as `.js` or `.wasm`) is 404
/// rather than `index.html`: a browser handed HTML for a script reports a misleading syntax error.
public struct WebAppFiles: Sendable {
    /// The folder, resolved to its real path.
    public let root: String
    /// Headers added to every file answer (e.g. cross-origin isolation headers an app needs).
    public var extraHeaders: HTTPHeaders

    /// The `Cache-Control` of content-hashed files: their name changes whenever their bytes do.
    public static let immutableCaching = "public, max-age=31536000, immutable"
    /// The `Cache-Control` of everything else: the browser may keep it but must revalidate (cheap with the ETag).
    public static let revalidateCaching = "no-cache"

    /// Throws 404 when `root` is not a folder.
    public init(root: String, extraHeaders: HTTPHeaders = HTTPHeaders()) throws {
        var st = stat()
        guard let real = realpath(root, nil) else { throw HTTPError(.notFound, "Not Found") }
        self.root = String(cString: real)
        free(real)
        guard stat(self.root, &st) == 0, st.st_mode & S_IFMT == S_IFDIR else { throw HTTPError(.notFound, "Not Found") }
        self.extraHeaders = extraHeaders
    }

    /// True when a file name carries a content hash: a dot-separated part of at least 16 hex digits, as webpack
    /// names chunks (`1185.bundle.63d4a7234e943a3bc2ab.js`, `031089e563a18ada8441.wasm`).
    public static func isContentHashed(_ name: String) -> Bool {
        name.split(separator: ".").dropLast().contains { part in
            part.utf8.count >= 16 && part.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) }
        }
    }

    /// True when `Accept-Encoding` admits gzip (a `q=0` refuses it).
    public static func acceptsGzip(_ headers: HTTPHeaders) -> Bool {
        for value in headers.values("Accept-Encoding") {
            for item in value.split(separator: ",") {
                let parts = item.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
                guard let coding = parts.first, coding == "gzip" || coding == "*" else { continue }
                let q = parts.dropFirst().first { $0.hasPrefix("q=") }.flatMap { Double($0.dropFirst(2)) } ?? 1
                if q > 0 { return true }
            }
        }
        return false
    }

    /// The answer for `relativePath` (percent-decoded, no leading slash) given the request's headers.
    public func response(for relativePath: String, requestHeaders: HTTPHeaders) throws -> HTTPResponse {
        let notFound = HTTPError(.notFound, "Not Found")
        let segments = relativePath.split(separator: "/")
        if segments.contains("..") || relativePath.utf8.contains(0) { throw notFound }
        let path: String
        if let found = regularFile(segments.joined(separator: "/")) {
            path = found
        } else {
            if let last = segments.last, last.contains("."),
                MediaType.guess(filename: String(last)) != "application/octet-stream",
                !last.hasSuffix(".html")
            {
                throw notFound
            }
            guard let index = regularFile("index.html") else { throw notFound }
            path = index
        }
        return fileResponse(path, requestHeaders: requestHeaders)
    }

    /// The real path of the regular file `relative` under the root (or its `index.html` when a folder), nil when
    /// there is none or it resolves outside the root.
    private func regularFile(_ relative: String) -> String? {
        var candidate = relative.isEmpty ? root : root + "/" + relative
        var st = stat()
        guard stat(candidate, &st) == 0 else { return nil }
        if st.st_mode & S_IFMT == S_IFDIR {
            candidate += "/index.html"
            guard stat(candidate, &st) == 0 else { return nil }
        }
        guard st.st_mode & S_IFMT == S_IFREG, let real = realpath(candidate, nil) else { return nil }
        let resolved = String(cString: real)
        free(real)
        return resolved.hasPrefix(root + "/") ? resolved : nil
    }

    private func fileResponse(_ path: String, requestHeaders: HTTPHeaders) -> HTTPResponse {
        let name = String(path.split(separator: "/").last ?? "")
        var headers = HTTPHeaders()
        var contentType = MediaType.guess(filename: name)
        if contentType.hasPrefix("text/") || contentType == "application/json" { contentType += "; charset=utf-8" }
        headers.add("Content-Type", contentType)
        headers.add("Cache-Control", Self.isContentHashed(name) ? Self.immutableCaching : Self.revalidateCaching)
        headers.add("Vary", "Accept-Encoding")
        for h in extraHeaders { headers.add(h.name, h.value) }

        // The pre-compressed sibling only counts when it is at least as new as the file it stands for.
        var sent = path
        var st = stat()
        _ = stat(path, &st)
        var gz = stat()
        if Self.acceptsGzip(requestHeaders), stat(path + ".gz", &gz) == 0, gz.st_mode & S_IFMT == S_IFREG,
            gz.st_mtim.tv_sec >= st.st_mtim.tv_sec
        {
            sent = path + ".gz"
            headers.add("Content-Encoding", "gzip")
        }
        // The ETag names the bytes on the wire, so the gzip variant has its own.
        let tag = "\"\(String(st.st_size, radix: 16))-\(String(st.st_mtim.tv_sec, radix: 16))\(sent == path ? "" : "-gz")\""
        headers.add("ETag", tag)
        if let match = requestHeaders["If-None-Match"],
            match.split(separator: ",").contains(where: { [tag, "*"].contains($0.trimmingCharacters(in: .whitespaces)) })
        {
            return HTTPResponse(status: HTTPStatus(304), headers: headers, body: .empty)
        }
        return HTTPResponse(status: .ok, headers: headers, body: .file(path: sent, deleteAfter: false))
    }
}
