import Foundation
import HTTPClient

/// Why a DICOMweb call failed, in the terms a caller acts on.
public struct DICOMwebError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// The PACS cannot be reached or keeps failing (connect errors, timeouts, 5xx after retries): try later.
        case unavailable
        /// The study, series or instance does not exist (404).
        case notFound
        /// The PACS refused the credentials (401, 403).
        case unauthorized
        /// The PACS refused the request (other 4xx; a STOW-RS with failed instances).
        case rejected
        /// The PACS answered something we cannot read.
        case malformedResponse
    }

    public let kind: Kind
    public let message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}

/// Where and how to reach a DICOMweb service.
public struct DICOMwebConfiguration: Sendable {
    /// The service root, e.g. `http://127.0.0.1:8042/dicom-web`.
    public var baseURL: URL
    public var username: String?
    public var password: String?
    /// Extra path segments before `studies`/`series` for QIDO, WADO and STOW (upstream's
    /// `MONAI_LABEL_QIDO_PREFIX`, `..._WADO_PREFIX`, `..._STOW_PREFIX`), without slashes at the ends.
    public var qidoPrefix: String?
    public var wadoPrefix: String?
    public var stowPrefix: String?
    public var http: HTTPClientConfiguration
    /// Attempts per request (1 = no retry); retried on connect failures, and for reads on timeouts and 5xx.
    public var maxAttempts: Int
    /// Delay before the first retry, doubled after each.
    public var initialBackoff: Double
    /// Matches asked for per QIDO-RS request (`limit`); listings page through with `offset` until complete.
    public var pageSize: Int = 1000

    public init(baseURL: URL, username: String? = nil, password: String? = nil,
                http: HTTPClientConfiguration = HTTPClientConfiguration(connectTimeout: 5, readTimeout: 60),
                maxAttempts: Int = 3, initialBackoff: Double = 0.5) {
        self.baseURL = baseURL
        self.username = username
        self.password = password
        self.http = http
        self.maxAttempts = maxAttempts
        self.initialBackoff = initialBackoff
    }
}

/// What a STOW-RS store reported.
public struct StowResult: Sendable, Equatable {
    /// The study's RetrieveURL.
    public var retrieveURL: String?
    /// RetrieveURL of each stored instance (they contain `/series/<uid>/`).
    public var instanceURLs: [String]
    /// SOP Instance UIDs stored.
    public var storedSOPInstanceUIDs: [String]

    /// The SeriesInstanceUID in the first RetrieveURL naming a series (how upstream learns the SEG's series).
    public var seriesInstanceUID: String? {
        for url in instanceURLs + [retrieveURL].compactMap({ $0 }) {
            let parts = url.split(separator: "/")
            if let i = parts.firstIndex(of: "series"), i + 1 < parts.count { return String(parts[i + 1]) }
        }
        return nil
    }
}

/// A DICOMweb client: QIDO-RS search, WADO-RS retrieve and metadata, STOW-RS store (PS3.18). Blocking;
/// safe to share between threads.
public final class DICOMwebClient: Sendable {
    public let configuration: DICOMwebConfiguration
    private let http: HTTPClient
    /// Total HTTP requests sent, for tests and logs that need to see whether a cache was used.
    private let counter = RequestCounter()

    /// The transfer syntax we ask WADO-RS for: explicit VR little endian, which every DICOM reader decodes.
    public static let preferredTransferSyntax = "1.2.840.10008.1.2.1"

    public init(_ configuration: DICOMwebConfiguration) {
        self.configuration = configuration
        http = HTTPClient(configuration: configuration.http)
    }

    public var requestCount: Int { counter.value }

    // MARK: QIDO-RS

    /// `GET {base}/series?{filters}` (or `/studies/{study}/series`): the matching series, every page of them
    /// (see `configuration.pageSize`).
    public func searchSeries(study: String? = nil, filters: [(String, String)] = [], includeFields: [String] = [])
        throws -> [DicomJSONDataset]
    {
        let path = try study.map { "studies/\(try Self.uidPathComponent($0))/series" } ?? "series"
        return try search(path, filters: filters, includeFields: includeFields, key: DicomTag.seriesInstanceUID)
    }

    /// `GET {base}/studies?{filters}`, every page.
    public func searchStudies(filters: [(String, String)] = [], includeFields: [String] = []) throws -> [DicomJSONDataset] {
        try search("studies", filters: filters, includeFields: includeFields, key: DicomTag.studyInstanceUID)
    }

    /// A QIDO-RS search read page by page with `limit`/`offset` (PS3.18 8.3.4.4): a server may answer fewer
    /// matches than exist (its own maximum, or ours), and says so in a `Warning` header. The next page is asked
    /// for while a page comes back full or with that warning; pages are merged by `key` (a UID), and paging stops
    /// when a page brings nothing new, so a server that ignores `offset` ends the loop instead of repeating it.
    private func search(_ path: String, filters: [(String, String)], includeFields: [String], key: String) throws
        -> [DicomJSONDataset]
    {
        var base = filters
        for f in includeFields { base.append(("includefield", f)) }
        let pageSize = max(1, configuration.pageSize)
        var results: [DicomJSONDataset] = []
        var seen = Set<String>()
        var offset = 0
        while results.count < Self.maxSearchResults {
            let url = try endpoint(configuration.qidoPrefix, path,
                                   query: base + [("limit", String(pageSize)), ("offset", String(offset))])
            let r = try request("GET", url, accept: "application/dicom+json", idempotent: true)
            if r.status == 204 { break }
            try check(r, url: url)
            let page = try DicomJSONDataset.parseArray(r.body)
            var fresh = 0
            for ds in page {
                // A match without the key (a malformed answer) is kept once per page position.
                let id = ds.string(key) ?? "#\(offset + fresh)"
                if seen.insert(id).inserted {
                    results.append(ds)
                    fresh += 1
                }
            }
            let truncated = r.headers["Warning"].map(Self.isTruncationWarning) ?? false
            if fresh == 0 || (page.count < pageSize && !truncated) { break }
            offset += page.count
        }
        return results
    }

    /// Matches beyond which a listing stops paging (a bound on memory whatever the server answers).
    public static let maxSearchResults = 1_000_000

    /// Whether a `Warning` header says there are more results than answered (PS3.18: `299 {service}: "The number
    /// of results exceeded the maximum supported by the server. Additional results can be requested."`).
    static func isTruncationWarning(_ value: String) -> Bool {
        let v = value.lowercased()
        return v.contains("additional results") || v.contains("exceeded the maximum") || v.contains("truncat")
    }

    // MARK: WADO-RS

    /// `GET {base}/studies/{study}/series/{series}/metadata`: one dataset per instance, without bulk data.
    public func seriesMetadata(study: String, series: String) throws -> [DicomJSONDataset] {
        let url = try endpoint(configuration.wadoPrefix,
                               "studies/\(try Self.uidPathComponent(study))/series/\(try Self.uidPathComponent(series))/metadata")
        let r = try request("GET", url, accept: "application/dicom+json", idempotent: true)
        try check(r, url: url)
        return try DicomJSONDataset.parseArray(r.body)
    }

    /// `GET {base}/studies/{study}/series/{series}`: the Part-10 bytes of every instance. Asks for explicit VR
    /// little endian; a server that cannot transcode is asked again for any transfer syntax.
    public func retrieveSeries(study: String, series: String) throws -> [[UInt8]] {
        let url = try endpoint(configuration.wadoPrefix,
                               "studies/\(try Self.uidPathComponent(study))/series/\(try Self.uidPathComponent(series))")
        let r = try getMultipart(url, partType: "application/dicom")
        try check(r, url: url)
        let contentType = r.headers["Content-Type"] ?? ""
        // Upstream rewrites a non-multipart content type to multipart/related; we do the same by looking for
        // the boundary wherever the server put it.
        guard let boundary = MultipartRelated.parameter("boundary", in: contentType) ?? Self.sniffBoundary(r.body) else {
            if r.body.count > 132, Array(r.body[128..<132]) == Array("DICM".utf8) { return [r.body] }
            throw DICOMwebError(.malformedResponse, "WADO-RS answer for series \(series) is not multipart (\(contentType))")
        }
        return try MultipartRelated.parse(r.body, boundary: boundary).map(\.body).filter { !$0.isEmpty }
    }

    /// A WADO-RS GET of multipart/related `partType` parts, asking for explicit VR little endian first and, from a
    /// server that cannot transcode (406 or 400), for any transfer syntax.
    private func getMultipart(_ url: URL, partType: String) throws -> HTTPClientResponse {
        let any = "multipart/related; type=\"\(partType)\""
        let r = try request("GET", url, accept: any + "; transfer-syntax=\(Self.preferredTransferSyntax)", idempotent: true)
        guard r.status == 406 || r.status == 400 else { return r }
        return try request("GET", url, accept: any, idempotent: true)
    }

    /// `GET {base}/studies/{study}/series/{series}/instances/{instance}/frames/{list}`: the raw pixel bytes of each
    /// frame asked for, in order (uncompressed little endian; a server that cannot transcode is asked again for
    /// any octet-stream). Throws `.malformedResponse` when frames come compressed (a content type other than
    /// `application/octet-stream`) or their count differs.
    public func retrieveFrames(study: String, series: String, instance: String, frames: [Int]) throws -> [[UInt8]] {
        guard !frames.isEmpty, frames.allSatisfy({ $0 >= 1 }) else {
            throw DICOMwebError(.rejected, "frame numbers start at 1")
        }
        let list = frames.map(String.init).joined(separator: ",")
        let url = try endpoint(configuration.wadoPrefix,
                               "studies/\(try Self.uidPathComponent(study))/series/\(try Self.uidPathComponent(series))"
                                   + "/instances/\(try Self.uidPathComponent(instance))/frames/\(list)")
        let r = try getMultipart(url, partType: "application/octet-stream")
        try check(r, url: url)
        let contentType = r.headers["Content-Type"] ?? ""
        guard let boundary = MultipartRelated.parameter("boundary", in: contentType) ?? Self.sniffBoundary(r.body) else {
            throw DICOMwebError(.malformedResponse, "WADO-RS frames of instance \(instance) are not multipart (\(contentType))")
        }
        let parts = try MultipartRelated.parse(r.body, boundary: boundary)
        for p in parts {
            let type = (p.contentType ?? "application/octet-stream").lowercased()
            guard type.hasPrefix("application/octet-stream") else {
                throw DICOMwebError(.malformedResponse, "frames of instance \(instance) came as \(type), not uncompressed")
            }
        }
        guard parts.count == frames.count else {
            throw DICOMwebError(.malformedResponse, "asked for \(frames.count) frame(s) of instance \(instance), got \(parts.count)")
        }
        return parts.map(\.body)
    }

    /// The boundary of a multipart body whose Content-Type lacks one: the first line, when it is `--token`.
    static func sniffBoundary(_ body: [UInt8]) -> String? {
        guard body.count > 4, body[0] == 45, body[1] == 45, let nl = body.prefix(200).firstIndex(of: 10) else { return nil }
        var line = String(decoding: body[2..<nl], as: UTF8.self)
        if line.hasSuffix("\r") { line.removeLast() }
        return line.isEmpty ? nil : line
    }

    // MARK: STOW-RS

    /// `POST {base}/studies` with the instances as `application/dicom` parts. Throws `.rejected` when the
    /// server reports failed instances.
    public func store(instances: [[UInt8]]) throws -> StowResult {
        let url = try endpoint(configuration.stowPrefix, "studies")
        let (contentType, body) = MultipartRelated.build(dicomInstances: instances)
        var headers = HTTPHeaders()
        headers.add("Content-Type", contentType)
        let r = try request("POST", url, accept: "application/dicom+json", headers: headers, body: body, idempotent: false)
        try check(r, url: url)
        let ds = try DicomJSONDataset.parseArray(r.body).first ?? DicomJSONDataset()
        let failed = ds.sequence(DicomTag.failedSOPSequence)
        if !failed.isEmpty {
            let reasons = failed.map { "\($0.string(DicomTag.referencedSOPInstanceUID) ?? "?") (reason \($0.string(DicomTag.failureReason) ?? "?"))" }
            throw DICOMwebError(.rejected, "the PACS refused \(failed.count) instance(s): \(reasons.joined(separator: ", "))")
        }
        let refs = ds.sequence(DicomTag.referencedSOPSequence)
        return StowResult(retrieveURL: ds.string(DicomTag.retrieveURL),
                          instanceURLs: refs.compactMap { $0.string(DicomTag.retrieveURL) },
                          storedSOPInstanceUIDs: refs.compactMap { $0.string(DicomTag.referencedSOPInstanceUID) })
    }

    // MARK: Plumbing

    /// A UID as a path segment; refuses anything that is not digits and dots (no path tricks via ids).
    public static func uidPathComponent(_ uid: String) throws -> String {
        guard !uid.isEmpty, uid.count <= 64, uid.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }) else {
            throw DICOMwebError(.notFound, "'\(uid.prefix(80))' is not a DICOM UID")
        }
        return uid
    }

    private func endpoint(_ prefix: String?, _ path: String, query: [(String, String)] = []) throws -> URL {
        var base = configuration.baseURL.absoluteString
        while base.hasSuffix("/") { base.removeLast() }
        if let p = prefix?.trimmingCharacters(in: CharacterSet(charactersIn: "/")), !p.isEmpty { base += "/" + p }
        var s = base + "/" + path
        if !query.isEmpty {
            var allowed = CharacterSet.alphanumerics
            allowed.insert(charactersIn: "-._~*")
            s += "?" + query.map { k, v in
                "\(k.addingPercentEncoding(withAllowedCharacters: allowed) ?? k)=\(v.addingPercentEncoding(withAllowedCharacters: allowed) ?? v)"
            }.joined(separator: "&")
        }
        guard let url = URL(string: s) else { throw DICOMwebError(.malformedResponse, "cannot build a URL from \(s)") }
        return url
    }

    /// Sends with retries and exponential backoff. Connect failures are always retried (nothing reached the
    /// server); read timeouts, cut connections and 5xx only for idempotent requests.
    private func request(_ method: String, _ url: URL, accept: String, headers extra: HTTPHeaders = HTTPHeaders(),
                         body: [UInt8] = [], idempotent: Bool) throws -> HTTPClientResponse
    {
        var headers = extra
        headers.add("Accept", accept)
        if let u = configuration.username, !u.isEmpty {
            headers.add("Authorization", basicAuthorization(user: u, password: configuration.password ?? ""))
        }
        var delay = configuration.initialBackoff
        var attempt = 1
        while true {
            counter.increment()
            do {
                let r = try http.send(method: method, url: url, headers: headers, body: body)
                if r.status >= 500 && idempotent && attempt < configuration.maxAttempts {
                    attempt += 1
                    Thread.sleep(forTimeInterval: delay)
                    delay *= 2
                    continue
                }
                return r
            } catch let e as HTTPClientError {
                let retriable = e.isConnectFailure || (idempotent && [.readTimeout, .connectionClosed].contains(e.kind))
                if retriable && attempt < configuration.maxAttempts {
                    attempt += 1
                    Thread.sleep(forTimeInterval: delay)
                    delay *= 2
                    continue
                }
                switch e.kind {
                case .invalidURL, .malformedResponse, .responseTooLarge:
                    throw DICOMwebError(.malformedResponse, "DICOMweb \(method) \(url.absoluteString): \(e.message)")
                default:
                    throw DICOMwebError(.unavailable,
                        "PACS unreachable at \(configuration.baseURL.absoluteString) (\(e.message); \(attempt) attempt(s))")
                }
            }
        }
    }

    private func check(_ r: HTTPClientResponse, url: URL) throws {
        guard !(200..<300).contains(r.status) else { return }
        let detail = r.text.prefix(300).trimmingCharacters(in: .whitespacesAndNewlines)
        let what = "\(url.absoluteString) answered \(r.status)\(detail.isEmpty ? "" : ": \(detail)")"
        switch r.status {
        case 404: throw DICOMwebError(.notFound, what)
        case 401, 403: throw DICOMwebError(.unauthorized, what)
        case 500...: throw DICOMwebError(.unavailable, "PACS error: \(what)")
        default: throw DICOMwebError(.rejected, what)
        }
    }
}

final class RequestCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0

    func increment() {
        lock.lock()
        n += 1
        lock.unlock()
    }

    var value: Int {
        lock.lock()
        defer { lock.unlock() }
        return n
    }
}
