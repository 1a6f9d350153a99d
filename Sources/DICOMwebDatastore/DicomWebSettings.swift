import DICOMweb
import Foundation
import HTTPClient
import MONAILabelCore
import OpenSSLKit

/// The `MONAI_LABEL_DICOMWEB_*` settings of a DICOMweb datastore (spec section 3.3).
public struct DicomWebSettings: Sendable {
    /// The DICOMweb root given as `--studies`, e.g. `http://127.0.0.1:8042/dicom-web`.
    public var baseURL: URL
    public var username: String?
    public var password: String?
    /// QIDO filter selecting the image series (`MONAI_LABEL_DICOMWEB_SEARCH_FILTER`, JSON object).
    public var searchFilter: [(String, String)]
    /// Seconds the QIDO lists are reused (`MONAI_LABEL_DICOMWEB_CACHE_EXPIRY`).
    public var cacheExpiry: Double
    /// Seconds the list of SEGs (which images have a final label) is reused by listings
    /// (`MONAI_LABEL_DICOMWEB_LABEL_EXPIRY`, default 30): the bound on how long a label another server saved to
    /// the same PACS stays unseen here. Fetching a final label always asks the PACS.
    public var labelExpiry: Double
    /// `<MONAI_LABEL_DICOMWEB_CACHE_PATH or ~/.cache/monailabel/dicom>/<md5(base url)>`.
    public var cacheDirectory: URL
    public var qidoPrefix: String?
    public var wadoPrefix: String?
    public var stowPrefix: String?
    /// `MONAI_LABEL_DICOMWEB_CONNECT_TIMEOUT`, `MONAI_LABEL_DICOMWEB_READ_TIMEOUT` (seconds).
    public var connectTimeout: Double
    public var readTimeout: Double
    /// `MONAI_LABEL_DICOMWEB_RETRIES`: attempts per request (1 = no retry).
    public var attempts: Int
    /// `MONAI_LABEL_DICOMWEB_VERIFY_TLS` (default true) and `MONAI_LABEL_DICOMWEB_CA_FILE`.
    public var verifyTLS: Bool
    public var caFile: String?
    /// `MONAI_LABEL_DICOMWEB_QIDO_PAGE_SIZE` (default 1000): matches asked for per QIDO-RS request; listings page
    /// through with `offset` (and follow the server's truncation warning) until complete.
    public var qidoPageSize: Int
    /// `MONAI_LABEL_DICOMWEB_FETCH_BY_FRAME` (default false, as upstream): download a series as each instance's
    /// metadata plus its frames (WADO-RS `/frames`) instead of whole instances.
    public var fetchByFrame: Bool
    /// Seconds `/info/` and `/datastore/` wait for the first listing of a fresh server before answering from the
    /// cache (the listing goes on in the background; later listings never make them wait):
    /// `MONAI_LABEL_DICOMWEB_LISTING_WAIT`, default 0.05. Tests that read the first listing at once raise it.
    public var listingWait: Double
    /// Upstream settings given but not applied here, each with why (for the start-up log): today only
    /// `MONAI_LABEL_DICOMWEB_CONVERT_TO_NIFTI=false`, as the README explains.
    public var ignored: [String] = []

    /// True for a `--studies` value that names a DICOMweb service rather than a folder.
    public static func isDicomWeb(_ studies: String) -> Bool {
        let s = studies.lowercased()
        return s.hasPrefix("http://") || s.hasPrefix("https://")
    }

    public init(studies: String, environment: [String: String]) throws {
        guard let url = URL(string: studies), (try? HTTPClientTarget(url)) != nil else {
            throw MONAILabelError.invalid("--studies \(studies) is not a valid http(s) URL of a DICOMweb service")
        }
        baseURL = url
        func env(_ k: String) -> String? {
            guard let v = environment[k]?.trimmingCharacters(in: .whitespaces), !v.isEmpty else { return nil }
            return v
        }
        func number(_ k: String, _ d: Double) throws -> Double {
            guard let v = env(k) else { return d }
            guard let n = Double(v), n > 0 else { throw MONAILabelError.invalid("\(k)=\(v) is not a positive number") }
            return n
        }
        /// Pydantic's booleans, as upstream reads its settings.
        func flag(_ k: String, _ d: Bool) throws -> Bool {
            guard let v = env(k)?.lowercased() else { return d }
            if ["true", "1", "yes", "on"].contains(v) { return true }
            if ["false", "0", "no", "off"].contains(v) { return false }
            throw MONAILabelError.invalid("\(k)=\(v) is not a boolean (true or false)")
        }
        username = env("MONAI_LABEL_DICOMWEB_USERNAME")
        password = env("MONAI_LABEL_DICOMWEB_PASSWORD")
        if let f = env("MONAI_LABEL_DICOMWEB_SEARCH_FILTER") {
            guard let obj = try? JSONValue.parse(f).objectValue else {
                throw MONAILabelError.invalid("MONAI_LABEL_DICOMWEB_SEARCH_FILTER must be a JSON object, got \(f)")
            }
            searchFilter = obj.map { k, v in (k, v.stringValue ?? v.compactString()) }
        } else {
            searchFilter = [("Modality", "CT")]
        }
        cacheExpiry = try number("MONAI_LABEL_DICOMWEB_CACHE_EXPIRY", 7200)
        labelExpiry = min(cacheExpiry, try number("MONAI_LABEL_DICOMWEB_LABEL_EXPIRY", 30))
        listingWait = try number("MONAI_LABEL_DICOMWEB_LISTING_WAIT", 0.05)
        connectTimeout = try number("MONAI_LABEL_DICOMWEB_CONNECT_TIMEOUT", 5)
        readTimeout = try number("MONAI_LABEL_DICOMWEB_READ_TIMEOUT", 120)
        attempts = max(1, Int(try number("MONAI_LABEL_DICOMWEB_RETRIES", 3)))
        verifyTLS = !["false", "0", "no"].contains(env("MONAI_LABEL_DICOMWEB_VERIFY_TLS")?.lowercased() ?? "true")
        caFile = env("MONAI_LABEL_DICOMWEB_CA_FILE")
        let pageSize = try number("MONAI_LABEL_DICOMWEB_QIDO_PAGE_SIZE", 1000)
        guard pageSize >= 1, pageSize <= 100_000, pageSize == pageSize.rounded() else {
            throw MONAILabelError.invalid("MONAI_LABEL_DICOMWEB_QIDO_PAGE_SIZE must be an integer in 1...100000")
        }
        qidoPageSize = Int(pageSize)
        fetchByFrame = try flag("MONAI_LABEL_DICOMWEB_FETCH_BY_FRAME", false)
        if try !flag("MONAI_LABEL_DICOMWEB_CONVERT_TO_NIFTI", true) {
            ignored.append("MONAI_LABEL_DICOMWEB_CONVERT_TO_NIFTI=false is not supported: each series is converted to "
                + "NIfTI once in the cache, and clients receive the same labels and SEGs either way")
        }
        qidoPrefix = env("MONAI_LABEL_QIDO_PREFIX")
        wadoPrefix = env("MONAI_LABEL_WADO_PREFIX")
        stowPrefix = env("MONAI_LABEL_STOW_PREFIX")
        let root = env("MONAI_LABEL_DICOMWEB_CACHE_PATH").map { URL(fileURLWithPath: $0) }
            ?? URL(fileURLWithPath: environment["HOME"] ?? NSHomeDirectory()).appendingPathComponent(".cache/monailabel/dicom")
        cacheDirectory = root.appendingPathComponent(Self.md5Hex(studies))
    }

    var clientConfiguration: DICOMwebConfiguration {
        var c = DICOMwebConfiguration(
            baseURL: baseURL, username: username, password: password,
            http: HTTPClientConfiguration(connectTimeout: connectTimeout, readTimeout: readTimeout,
                                          verifyCertificates: verifyTLS, caFile: caFile),
            maxAttempts: attempts, initialBackoff: 0.5)
        c.qidoPrefix = qidoPrefix
        c.wadoPrefix = wadoPrefix
        c.stowPrefix = stowPrefix
        c.pageSize = qidoPageSize
        return c
    }

    /// Upstream names the cache folder by the MD5 of the URL; so do we, so both find the same folder.
    static func md5Hex(_ s: String) -> String {
        Digest.hex(Digest.md5(Array(s.utf8)))
    }
}

/// Where a DICOMweb request from a browser viewer (OHIF) is relayed: the PACS this datastore reads, with its
/// service prefixes and credentials. The endpoint layer does the HTTP; this only says where and as whom.
public struct DicomWebRelayTarget: Sendable, Equatable {
    /// The full upstream URL, query included.
    public let url: URL
    /// Basic-auth credentials, only when both are configured (as upstream's `proxy.py`).
    public let username: String?
    public let password: String?
}

extension DicomWebSettings {
    /// The client settings (timeouts, TLS verification, CA file) the relay connects with, the datastore's own.
    public var relayHTTPConfiguration: HTTPClientConfiguration { clientConfiguration.http }

    /// The DICOMweb services a viewer reaches through the relay.
    public enum RelayService: String, Sendable, CaseIterable { case qido, wado, stow }

    /// The upstream target for `service` and `path` (the raw, still percent-encoded path after the service, e.g.
    /// `studies/1.2/series`) and `query` (raw, without `?`), following upstream's rule: the service's prefix
    /// goes first, except that a QIDO path ending in `metadata` takes the WADO prefix (some OHIF versions ask
    /// QIDO for metadata). Unlike upstream the query is kept: QIDO filters and paging live there.
    /// Nil when the path holds a `.`/`..` segment (a relay must not reach the PACS outside its DICOMweb root) or
    /// is not a valid URL.
    public func relayTarget(service: RelayService, path: String, query: String?) -> DicomWebRelayTarget? {
        for segment in path.split(separator: "/", omittingEmptySubsequences: false) {
            let decoded = segment.removingPercentEncoding ?? String(segment)
            if decoded == "." || decoded == ".." || decoded.contains("/") || decoded.contains("\\") { return nil }
        }
        var prefix: String?
        switch service {
        case .qido: prefix = path.hasSuffix("metadata") ? wadoPrefix : qidoPrefix
        case .wado: prefix = wadoPrefix
        case .stow: prefix = stowPrefix
        }
        var server = baseURL.absoluteString
        while server.hasSuffix("/") { server.removeLast() }
        var text = server + "/"
        if let p = prefix, !p.isEmpty { text += p + "/" }
        text += path
        if let q = query, !q.isEmpty { text += "?" + q }
        guard let url = URL(string: text) else { return nil }
        let bothSet = !(username ?? "").isEmpty && !(password ?? "").isEmpty
        return DicomWebRelayTarget(url: url, username: bothSet ? username : nil, password: bothSet ? password : nil)
    }
}
