import Foundation
import HTTPClient
import MONAILabel

/// Where the MONAI bundles `--conf models` names come from when they are not in `<app>/model/` (upstream 0.8.5's
/// `get_bundle_models` over MONAI's `monai.bundle.download`): the source (`--conf zoo_source`, else
/// `MONAI_ZOO_SOURCE`, else `BUNDLE_DOWNLOAD_SRC`, else `monaihosting`), the GitHub release for the `github` source
/// (`--conf zoo_repo`, else `MONAI_ZOO_REPO`, `owner/repo/tag`), the GitHub token for its API (`--conf auth_token`,
/// else `MONAI_ZOO_AUTH_TOKEN`) and ours, `MONAI_ZOO_BASE_URL`: a mirror (or a test server) that replaces the
/// source's base URL, paths unchanged.
public struct ZooSettings: Sendable, Equatable {
    public static let sources = ["monaihosting", "ngc", "github"]
    public static let defaultRepo = "Project-MONAI/model-zoo/hosting_storage_v1"
    /// MONAI's `MONAI_HOSTING_BASE_URL` and `NGC_BASE_URL`.
    public static let monaiHostingBase = "https://api.ngc.nvidia.com/v2/models/nvidia/monaihosting"
    public static let ngcBase = "https://api.ngc.nvidia.com/v2/models/nvidia/monaitoolkit"
    public static let githubAPIBase = "https://api.github.com"
    public static let githubBase = "https://github.com"
    /// Upstream's `MAINTAINED_BUNDLES` (`utils/others/modelzoo_list.py`): what the `monaihosting` source accepts.
    public static let maintainedBundles = [
        "pancreas_ct_dints_segmentation", "prostate_mri_anatomy", "renalStructures_UNEST_segmentation",
        "spleen_ct_segmentation", "spleen_deepedit_annotation", "swin_unetr_btcv_segmentation",
        "wholeBrainSeg_Large_UNEST_segmentation", "lung_nodule_ct_detection", "wholeBody_ct_segmentation", "vista2d",
    ]

    public var source: String
    public var repo: String
    public var authToken: String?
    public var baseURL: String?

    public init(conf: [String: String], environment: [String: String]) throws {
        func value(_ v: String?) -> String? {
            v.map { $0.trimmingCharacters(in: .whitespaces) }.flatMap { $0.isEmpty ? nil : $0 }
        }
        source = value(conf["zoo_source"]) ?? value(environment["MONAI_ZOO_SOURCE"])
            ?? value(environment["BUNDLE_DOWNLOAD_SRC"]) ?? "monaihosting"
        guard Self.sources.contains(source) else {
            throw MONAILabelError.invalid("MONAI zoo source '\(source)' (--conf zoo_source / MONAI_ZOO_SOURCE / "
                + "BUNDLE_DOWNLOAD_SRC) is not supported; use one of \(Self.sources.joined(separator: ", "))")
        }
        repo = value(conf["zoo_repo"]) ?? value(environment["MONAI_ZOO_REPO"]) ?? Self.defaultRepo
        if source == "github" {
            let parts = repo.split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count == 3, parts.allSatisfy({ !$0.isEmpty && Self.isSafeName($0) }) else {
                throw MONAILabelError.invalid("MONAI zoo repo '\(repo)' (--conf zoo_repo / MONAI_ZOO_REPO) must be owner/repo/release_tag")
            }
        }
        authToken = value(conf["auth_token"]) ?? value(environment["MONAI_ZOO_AUTH_TOKEN"])
        baseURL = value(environment["MONAI_ZOO_BASE_URL"]).map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 }
        if let b = baseURL {
            guard let u = URL(string: b), ["http", "https"].contains(u.scheme?.lowercased() ?? ""), u.host != nil else {
                throw MONAILabelError.invalid("MONAI_ZOO_BASE_URL must be an http(s) URL, not '\(b)'")
            }
        }
    }

    /// Letters, digits, `_`, `-`, `.`, `+` and not a `.`/`..` component: safe in a URL path and as a file name.
    static func isSafeName(_ s: some StringProtocol) -> Bool {
        !s.isEmpty && s != "." && s != ".." && s.utf8.count <= 200
            && s.unicodeScalars.allSatisfy { $0.isASCII && (CharacterSet.alphanumerics.contains($0) || "_-.+".unicodeScalars.contains($0)) }
    }
}

/// A bundle as `--conf models` names it: `name` (the latest version) or `name_vX.Y.Z` (that version, kept in its
/// own folder `model/name_vX.Y.Z`, as upstream moves it).
public struct ZooBundle: Sendable, Equatable {
    /// The `--conf models` entry, which is also its folder under `model/`.
    public var entry: String
    public var name: String
    public var version: String?

    public init(entry: String) {
        self.entry = entry
        name = entry
        version = nil
        // Upstream's `(?P<name>.+)_v(?P<version>\d+\.\d+\.\d+)`.
        if let r = entry.range(of: "_v", options: .backwards), r.lowerBound > entry.startIndex {
            let v = entry[r.upperBound...]
            let parts = v.split(separator: ".", omittingEmptySubsequences: false)
            if parts.count == 3, parts.allSatisfy({ !$0.isEmpty && $0.allSatisfy(\.isASCII) && $0.allSatisfy(\.isNumber) }) {
                name = String(entry[..<r.lowerBound])
                version = String(v)
            }
        }
    }
}

/// Downloads MONAI bundles from the zoo with the pretrained fetcher's machinery (resumable `.part` files, progress
/// in the log, the SHA-256 checked where the source publishes one: GitHub release assets' `digest`) and installs
/// them with `BundleArchive`. URLs are MONAI's (`monai/bundle/scripts.py`): monaihosting
/// `<base>/<name lower>/versions/<v>/files/<name>_v<v>.zip` with the latest version from `<base>/<name lower>`
/// (`model.latestVersionIdStr`); NGC `<base>/monai_<name lower>/versions/<v>/zip` with the latest from
/// `<base>/monai_<name lower>/versions/` (newest `createdDate`; MONAI's own compatibility check against its
/// version is not made here); GitHub `https://github.com/<owner>/<repo>/releases/download/<tag>/<name>_v<v>.zip`
/// with the versions from the release's assets (`api.github.com/repos/<owner>/<repo>/releases/tags/<tag>`).
public struct ZooDownloader: Sendable {
    public var settings: ZooSettings
    public var fetcher: PretrainedFetcher
    /// For the small JSON answers (versions, assets): bounded.
    var metadataClient = HTTPClient(configuration: HTTPClientConfiguration(readTimeout: 30, maxResponseBytes: 16 << 20))
    var log: @Sendable (String) -> Void

    public init(settings: ZooSettings, log: @escaping @Sendable (String) -> Void) {
        self.settings = settings
        self.log = log
        fetcher = PretrainedFetcher(log: log)
    }

    /// Start-up, for an app that serves bundles: downloads and installs every bundle `--conf models` names by name
    /// (not by path) that `<app>/model/` lacks. A bundle that cannot be had stops the start with a message saying
    /// why and how to install it without internet.
    public static func fetchMissing(appDir: URL, conf: [String: String], environment: [String: String], log: Logger) throws {
        guard try AppDefinition.load(appDir: appDir).bundleModels else { return }
        let modelDir = appDir.appendingPathComponent("model")
        let entries = (conf["models"] ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty && !$0.contains("/") && !FileOps.isDirectory(modelDir.appendingPathComponent($0).path) }
        guard !entries.isEmpty else { return }
        let downloader = ZooDownloader(settings: try ZooSettings(conf: conf, environment: environment), log: { log.info($0) })
        for entry in entries {
            let bundle = ZooBundle(entry: entry)
            do {
                try downloader.install(bundle, modelDir: modelDir)
            } catch {
                throw MONAILabelError.invalid("bundle '\(entry)' is not in the app's model folder and could not be "
                    + "downloaded from the MONAI model zoo (\(downloader.settings.source)): \(error). Without internet, "
                    + "download the bundle's zip elsewhere and run `monailabel models --import <zip> --app \(appDir.path)`, "
                    + "or unpack the bundle into model/\(entry)")
            }
        }
    }

    /// Downloads `bundle` and installs it as `<modelDir>/<entry>`; returns the folder.
    @discardableResult
    public func install(_ bundle: ZooBundle, modelDir: URL) throws -> URL {
        guard ZooSettings.isSafeName(bundle.entry), !bundle.entry.hasPrefix(".") else {
            throw MONAILabelError.invalid("'\(bundle.entry)' is not a bundle name of the zoo")
        }
        let (version, url, sha256) = try resolve(bundle)
        try FileOps.makeDirectory(modelDir)
        let zip = modelDir.appendingPathComponent("\(bundle.name)_v\(version).zip")
        log("+++ Adding Bundle from Zoo: \(bundle.entry) (\(bundle.name) \(version)) from \(url.absoluteString)")
        let bytes = try fetcher.fetch(PretrainedDownload(model: bundle.entry, url: url, destination: zip, sha256: sha256))
        // The archive is not kept: a refused one must not be retried from disk, an installed one is not needed.
        defer { try? FileOps.removeFile(zip) }
        let folder = try BundleArchive.install(zip: zip, modelDir: modelDir, name: bundle.entry, requireServable: false)
        log("Bundle \(bundle.entry): \(zip.lastPathComponent) (\(bytes) bytes"
            + (sha256 == nil ? "" : ", SHA-256 checked") + ") extracted into model/\(bundle.entry)")
        return folder
    }

    /// The version to fetch, its archive's URL and SHA-256 where the source publishes one.
    func resolve(_ bundle: ZooBundle) throws -> (version: String, url: URL, sha256: String?) {
        let name = bundle.name
        switch settings.source {
        case "monaihosting":
            guard ZooSettings.maintainedBundles.contains(name) else {
                throw MONAILabelError.invalid("'\(name)' is not a bundle MONAI Label supports from the zoo; available: "
                    + ZooSettings.maintainedBundles.joined(separator: ", "))
            }
            let base = settings.baseURL ?? ZooSettings.monaiHostingBase
            let version = try bundle.version ?? checkedVersion(
                try getJSON("\(base)/\(name.lowercased())")["model"]?["latestVersionIdStr"]?.stringValue, from: base)
            return (version, try url("\(base)/\(name.lowercased())/versions/\(version)/files/\(name)_v\(version).zip"), nil)
        case "ngc":
            let ngcName = (name.hasPrefix("monai_") ? name : "monai_\(name)").lowercased()
            let base = settings.baseURL ?? ZooSettings.ngcBase
            let version = try bundle.version ?? newestNGCVersion("\(base)/\(ngcName)/versions/")
            return (version, try url("\(base)/\(ngcName)/versions/\(version)/zip"), nil)
        default:
            let parts = settings.repo.split(separator: "/").map(String.init)
            let (owner, repo, tag) = (parts[0], parts[1], parts[2])
            var headers = HTTPHeaders()
            headers.add("Accept", "application/vnd.github+json")
            if let token = settings.authToken { headers.add("Authorization", "Bearer \(token)") }
            let api = settings.baseURL ?? ZooSettings.githubAPIBase
            let release = try getJSON("\(api)/repos/\(owner)/\(repo)/releases/tags/\(tag)", headers: headers)
            let prefix = "\(name)_v"
            var assets: [String: String?] = [:]
            for a in release["assets"]?.arrayValue ?? [] {
                guard let file = a["name"]?.stringValue, file.hasPrefix(prefix), file.hasSuffix(".zip") else { continue }
                let v = String(file.dropFirst(prefix.count).dropLast(4))
                guard ZooSettings.isSafeName(v) else { continue }
                let digest = a["digest"]?.stringValue.flatMap { d in
                    d.lowercased().hasPrefix("sha256:") ? String(d.dropFirst(7)).lowercased() : nil
                }
                assets[v] = .some(digest)
            }
            guard let version = bundle.version ?? assets.keys.max(by: { Self.versionOrder($0, $1) }) else {
                throw MONAILabelError.notFound("the release \(settings.repo) has no \(name)_v*.zip")
            }
            guard let digest = assets[version] else {
                throw MONAILabelError.notFound("the release \(settings.repo) has no \(name)_v\(version).zip; versions: "
                    + assets.keys.sorted { Self.versionOrder($0, $1) }.joined(separator: ", "))
            }
            let base = settings.baseURL ?? ZooSettings.githubBase
            return (version, try url("\(base)/\(owner)/\(repo)/releases/download/\(tag)/\(name)_v\(version).zip"), digest)
        }
    }

    /// The version with the latest `createdDate` in NGC's version list at `endpoint`.
    private func newestNGCVersion(_ endpoint: String) throws -> String {
        let listed = try getJSON(endpoint)["modelVersions"]?.arrayValue ?? []
        let newest = listed.compactMap { v -> (date: String, id: String)? in
            guard let id = v["versionId"]?.stringValue, let date = v["createdDate"]?.stringValue else { return nil }
            return (date, id)
        }.max { $0.date < $1.date }
        return try checkedVersion(newest?.id, from: endpoint)
    }

    /// Numeric order of dotted versions (`0.10.0` after `0.9.0`), text order for what is not a number.
    static func versionOrder(_ a: String, _ b: String) -> Bool {
        let x = a.split(separator: "."), y = b.split(separator: ".")
        for (p, q) in zip(x, y) where p != q {
            if let i = Int(p), let j = Int(q) { return i < j }
            return p < q
        }
        return x.count < y.count
    }

    private func checkedVersion(_ v: String?, from base: String) throws -> String {
        guard let v, ZooSettings.isSafeName(v) else {
            throw MONAILabelError.invalid("\(base) did not answer a usable latest version")
        }
        return v
    }

    private func url(_ text: String) throws -> URL {
        guard let u = URL(string: text) else { throw MONAILabelError.invalid("'\(text)' is not a valid URL") }
        return u
    }

    /// A small JSON answer; statuses and connection failures become messages that say what to do.
    func getJSON(_ text: String, headers: HTTPHeaders = HTTPHeaders()) throws -> JSONValue {
        let u = try url(text)
        let response: HTTPClientResponse
        do { response = try metadataClient.get(u, headers: headers) } catch let e as HTTPClientError {
            throw MONAILabelError(.unavailable, e.isConnectFailure
                ? "cannot connect to \(u.host ?? "the zoo") (offline?): \(e.message)" : "\(u.absoluteString): \(e.message)")
        }
        switch response.status {
        case 200: break
        case 404: throw MONAILabelError.notFound("not found in the zoo (HTTP 404 from \(u.absoluteString))")
        case 401, 403:
            throw MONAILabelError(.unavailable, "HTTP \(response.status) \(response.reason) from \(u.absoluteString)"
                + (settings.source == "github" ? " (GitHub's rate limit? set MONAI_ZOO_AUTH_TOKEN to a GitHub token)" : ""))
        default: throw MONAILabelError(.unavailable, "HTTP \(response.status) \(response.reason) from \(u.absoluteString)")
        }
        do { return try JSONValue.parse(response.body) } catch {
            throw MONAILabelError.invalid("\(u.absoluteString) did not answer JSON")
        }
    }
}
