import DICOM
import DICOMweb
import Foundation
import Imaging
import MONAILabelCore

/// A datastore whose images come from a DICOMweb server: where `/proxy/dicom` relays a browser viewer's requests
/// (the endpoint does the HTTP; this says where and with which client settings).
public protocol DicomWebRelaySource: Datastore {
    var settings: DicomWebSettings { get }
}

/// A DICOMweb service (a PACS such as Orthanc) as a datastore, after upstream's `DICOMWebDatastore` (spec
/// section 3.3). Image ids are SeriesInstanceUIDs of the series matching the search filter; the `final` label
/// of an image is the newest DICOM SEG series referencing it. Everything else (other tags, infos, the datastore
/// document) lives in a `LocalDatastore` cache, which also holds each downloaded series (`<cache>/<series>/`),
/// its NIfTI conversion (`<cache>/<series>.nii.gz`) and each downloaded SEG (`<cache>/labels/final/<seg>/`).
///
/// The PACS being down never takes the server down: listings fall back to the last QIDO answer (or the cache)
/// and `status()` says why; calls that cannot be served from the cache throw `.unavailable`; the next call after
/// the PACS returns works again.
public final class DicomWebDatastore: DicomSegExporting, DicomWebRelaySource, @unchecked Sendable {
    public let settings: DicomWebSettings
    public let client: DICOMwebClient
    /// The local cache; what training children open (read-only) as their datastore.
    public let cache: LocalDatastore

    private let lock = NSLock()
    private var index: RemoteIndex?
    private var lastAttempt: Date?
    private var lastError: String?
    /// SEG series -> the image series it references; a SEG never changes its reference.
    private var segReferences: [String: SegReference] = [:]
    private var segmentNames: [Int: String] = [:]
    private let fetchLocks = KeyedLocks()
    /// One listing refresh at a time (`sharedRefresh`): callers arriving while it runs share its outcome.
    private let flight = NSCondition()
    private var flying = false
    private var flightsStarted = 0
    private var flightsFinished = 0
    private var flightOutcome: Result<RemoteIndex, MONAILabelError>?
    /// When a listing view first asked for the lists (`bestIndex`'s wait for the first listing ends from it).
    private var firstListingAsked: Date?
    /// Series (images and SEGs) whose conversion failed on what the PACS sent, with why; kept in the cache
    /// (`failuresFile`) so that a restart does not convert (and maybe crash) again.
    private var failures: [String: SeriesFailure] = [:]
    private var converter: any DicomConverter = InProcessDicomConverter()

    /// Where `failures` persist, in the cache folder (not a file kind the cache lists).
    static let failuresFile = ".pacs-failing-series.json"

    /// A series that could not be converted: why, and its instance count in the listing then, so that a listing
    /// showing another count (the series changed in the PACS) clears it.
    struct SeriesFailure: Sendable {
        var reason: String
        var instances: Int?
    }

    /// File kinds the cache holds: converted images (`.nii.gz`) and labels as uploaded (`.nii.gz`, `.nii`, `.nrrd`).
    static let cachePatterns = ["*.nii.gz", "*.nii", "*.nrrd"]

    /// A failed listing is retried no sooner than this, so a down PACS does not slow every `/info/`.
    public static let retryAfterFailure: Double = 2

    struct RemoteSeries: Sendable {
        var study: String
        var info: JSONObject
        /// NumberOfSeriesRelatedInstances as listed, when the PACS gives it.
        var instances: Int? = nil
    }

    struct RemoteIndex: Sendable {
        var images: OrderedMap<RemoteSeries>
        /// image series -> its newest SEG series.
        var labels: [String: String]
        var fetchedAt: Date
        /// When `labels` was last asked for: labels change under us (another server saving to the same PACS) far
        /// more often than the image list, so they expire sooner (`settings.labelExpiry`).
        var labelsFetchedAt: Date
    }

    struct SegReference: Sendable {
        var image: String
        /// Series date and time, then content date and time: the newest SEG of an image wins.
        var order: String
    }

    /// Opens (creating) the cache folder; contacts nothing until a listing or a fetch is needed.
    public init(settings: DicomWebSettings) throws {
        self.settings = settings
        client = DICOMwebClient(settings.clientConfiguration)
        try FileOps.makeDirectory(settings.cacheDirectory)
        // Upstream's cache takes the label formats its `_to_id` knows; images are always converted to `.nii.gz`.
        cache = try LocalDatastore(root: settings.cacheDirectory, patterns: Self.cachePatterns, autoReload: false)
        failures = Self.loadFailures(settings.cacheDirectory.appendingPathComponent(Self.failuresFile))
    }

    /// Where conversions run (the server installs an isolated, memory-capped converter process).
    public func setConverter(_ c: any DicomConverter) { withLock { converter = c } }

    /// Series that failed to convert, with why: listed by `status()` so that `/info/` shows them.
    public func failingSeries() -> [String: String] { withLock { failures.mapValues(\.reason) } }

    /// Label names by value, from the app's models, for SEG segments whose label info names none.
    public func setSegmentNames(_ names: [Int: String]) { withLock { segmentNames = names } }

    public var name: String { cache.name }
    public var description: String { "DICOMweb datastore at \(settings.baseURL.absoluteString)" }

    private func withLock<T>(_ body: () throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body()
    }

    // MARK: Remote lists

    /// The QIDO lists: the image list re-queried when older than `cacheExpiry`, the SEG list when older than
    /// `labelExpiry`. Throws `.unavailable` when the PACS cannot answer.
    func remoteIndex() throws -> RemoteIndex {
        let fresh = withLock { () -> RemoteIndex? in
            guard let i = index, lastError == nil, Date().timeIntervalSince(i.fetchedAt) < settings.cacheExpiry,
                Date().timeIntervalSince(i.labelsFetchedAt) < settings.labelExpiry
            else { return nil }
            return i
        }
        if let fresh { return fresh }
        guard let idx = try sharedRefresh(wait: nil) else { throw MONAILabelError(.unavailable, "the PACS listing did not finish") }
        return idx
    }

    /// Refreshes the lists once for every caller that arrives while a refresh runs (one query to the PACS, not
    /// one per request), on a background thread; waits for its outcome at most `wait` seconds (nil: until it
    /// ends) and returns nil when the wait ran out.
    private func sharedRefresh(wait: Double?) throws -> RemoteIndex? {
        flight.lock()
        defer { flight.unlock() }
        if !flying {
            flying = true
            flightsStarted += 1
            DispatchQueue.global(qos: .utility).async { [self] in
                let outcome = Result { try refreshLists() }.mapError { $0 as? MONAILabelError ?? Self.domainError($0) }
                flight.lock()
                flying = false
                flightsFinished += 1
                flightOutcome = outcome
                flight.broadcast()
                flight.unlock()
            }
        }
        let mine = flightsStarted
        let deadline = wait.map { Date().addingTimeInterval($0) }
        while flightsFinished < mine {
            if let deadline {
                if !flight.wait(until: deadline) && flightsFinished < mine { return nil }
            } else {
                flight.wait()
            }
        }
        return try flightOutcome?.get()
    }

    /// One refresh of the lists: the image list re-queried when older than `cacheExpiry`, else the SEG list.
    private func refreshLists() throws -> RemoteIndex {
        let cached = withLock { () -> RemoteIndex? in
            guard let i = index, lastError == nil, Date().timeIntervalSince(i.fetchedAt) < settings.cacheExpiry else { return nil }
            return i
        }
        do {
            let idx: RemoteIndex
            if var i = cached {
                if Date().timeIntervalSince(i.labelsFetchedAt) < settings.labelExpiry { return i }
                let asked = Date()
                i.labels = try queryLabels(images: i.images)
                i.labelsFetchedAt = asked
                idx = i
            } else {
                idx = try queryIndex()
            }
            withLock {
                index = idx
                lastError = nil
                lastAttempt = Date()
            }
            forgetChangedFailures(idx)
            return idx
        } catch {
            let e = Self.domainError(error)
            withLock {
                lastError = e.message
                lastAttempt = Date()
            }
            throw e
        }
    }

    /// The lists for read-only views (`/info/`, `/datastore/`, listings): the last known ones at once, refreshed in
    /// the background when expired or after a failure, so a slow or unreachable PACS never holds these requests
    /// up; asked for in place only when never listed. A recent failure is not retried at once.
    private func bestIndex() -> RemoteIndex? {
        let (current, recentFailure, stale) = withLock { () -> (RemoteIndex?, Bool, Bool) in
            let failed = lastError != nil
            let recent = failed && Date().timeIntervalSince(lastAttempt ?? .distantPast) < Self.retryAfterFailure
            let stale = failed || index.map {
                Date().timeIntervalSince($0.fetchedAt) >= settings.cacheExpiry
                    || Date().timeIntervalSince($0.labelsFetchedAt) >= settings.labelExpiry
            } ?? true
            return (index, recent, stale)
        }
        if recentFailure { return current }
        guard let current else {
            // Never listed: a short wait for the (shared) first listing, then the cache's view. The wait ends
            // `listingWait` after the first request asked, so a request that reads the lists several times
            // (`/info/`) does not wait several times.
            let until = withLock { () -> Date in
                let first = firstListingAsked ?? Date()
                firstListingAsked = first
                return first.addingTimeInterval(settings.listingWait)
            }
            _ = try? sharedRefresh(wait: max(0, until.timeIntervalSinceNow))
            return withLock { index }
        }
        if stale { _ = try? sharedRefresh(wait: 0) }
        return current
    }

    private func queryIndex() throws -> RemoteIndex {
        let wanted = [DicomTag.patientID, DicomTag.studyDate, DicomTag.studyTime, DicomTag.modality, Self.instanceCountTag]
        var images = OrderedMap<RemoteSeries>()
        for s in try client.searchSeries(filters: settings.searchFilter, includeFields: wanted) {
            guard let series = s.string(DicomTag.seriesInstanceUID), let study = s.string(DicomTag.studyInstanceUID) else { continue }
            var info = JSONObject()
            info["SeriesInstanceUID"] = .string(series)
            info["StudyInstanceUID"] = .string(study)
            info["Modality"] = .string(s.string(DicomTag.modality) ?? "UNK")
            info["PatientID"] = .string(s.string(DicomTag.patientID) ?? "UNK")
            info["StudyDate"] = .string(s.string(DicomTag.studyDate) ?? "UNK")
            info["StudyTime"] = .string(s.string(DicomTag.studyTime) ?? "UNK")
            info["RetrieveURL"] = .string(s.string(DicomTag.retrieveURL) ?? "UNK")
            let count = s.string(Self.instanceCountTag).flatMap { Int($0.trimmingCharacters(in: .whitespaces)) }
            images[series] = RemoteSeries(study: study, info: info, instances: count)
        }
        let asked = Date()
        let labels = try queryLabels(images: images)
        return RemoteIndex(images: images, labels: labels, fetchedAt: asked, labelsFetchedAt: asked)
    }

    /// image series -> its newest SEG series, from a QIDO search for SEGs (plus the metadata of SEGs not seen
    /// before, to learn what they reference).
    private func queryLabels(images: OrderedMap<RemoteSeries>) throws -> [String: String] {
        try newestSEGs(client.searchSeries(filters: [("Modality", "SEG")]), images: images).mapValues(\.seg)
    }

    /// For each image of `images`, the newest of the SEG series `found` (a QIDO answer) that references it.
    private func newestSEGs(_ found: [DicomJSONDataset], images: OrderedMap<RemoteSeries>) throws
        -> [String: (seg: String, order: String)]
    {
        var best: [String: (seg: String, order: String)] = [:]
        for s in found {
            guard let seg = s.string(DicomTag.seriesInstanceUID), let study = s.string(DicomTag.studyInstanceUID) else { continue }
            var ref = withLock { segReferences[seg] }
            if ref == nil {
                do {
                    ref = try segReference(study: study, seg: seg)
                } catch let e as DICOMwebError where e.kind == .notFound {
                    // Deleted between the search and now: not a label, and no reason to fail the listing.
                    continue
                }
                if let r = ref { withLock { segReferences[seg] = r } }
            }
            guard let r = ref, images[r.image] != nil else { continue }
            if let b = best[r.image], b.order > r.order || (b.order == r.order && b.seg > seg) { continue }
            best[r.image] = (seg, r.order)
        }
        return best
    }

    /// The lists with the final label of `image` as the PACS has it now: one QIDO search for the SEGs of its study
    /// (a SEG joins its source's study, ours and upstream's alike), so a label another server just saved is seen
    /// without listing every SEG of the PACS.
    private func indexWithFreshLabel(of image: String) throws -> RemoteIndex {
        var idx = try remoteIndex()
        guard let study = idx.images[image]?.study else { return idx }
        let found: [DicomJSONDataset]
        do {
            found = try client.searchSeries(study: study, filters: [("Modality", "SEG")])
        } catch {
            throw pacsFailure(error)
        }
        // Only a newer SEG replaces the listing's: one kept in another study is still the listing's to find.
        guard let newest = try newestSEGs(found, images: idx.images)[image], newest.seg != idx.labels[image] else { return idx }
        if let current = idx.labels[image], let known = withLock({ segReferences[current] }),
           (known.order, current) > (newest.order, newest.seg) {
            return idx
        }
        idx.labels[image] = newest.seg
        withLock { index?.labels[image] = newest.seg }
        return idx
    }

    /// The image series a SEG references, from its WADO-RS metadata; nil for a SEG that references none.
    private func segReference(study: String, seg: String) throws -> SegReference? {
        guard let first = try client.seriesMetadata(study: study, series: seg).first,
            let image = first.sequence(DicomTag.referencedSeriesSequence).first?.string(DicomTag.seriesInstanceUID)
        else { return nil }
        let order = ["00080021", "00080031", "00080023", "00080033"].map { first.string($0) ?? "" }.joined(separator: "|")
        return SegReference(image: image, order: order)
    }

    // MARK: Queries

    public func status() -> DatastoreStatus {
        var s = cache.status()
        if let idx = bestIndex() {
            s.total = idx.images.count
            s.completed = idx.images.keys.filter { idx.labels[$0] != nil }.count
        }
        if let e = withLock({ lastError }) { s.error = e }
        s.failing = failingSeries()
        return s
    }

    public func json() -> JSONValue { cache.json() }
    public func compactJSON() -> [UInt8] { cache.compactJSON() }

    public func listImages() -> [String] { bestIndex()?.images.keys ?? cache.listImages() }

    public func labeledImages() -> [String] {
        guard let idx = bestIndex() else { return cache.labeledImages() }
        return idx.images.keys.filter { idx.labels[$0] != nil }
    }

    public func unlabeledImages() -> [String] {
        guard let idx = bestIndex() else { return cache.unlabeledImages() }
        return idx.images.keys.filter { idx.labels[$0] == nil }
    }

    /// Upstream syncs every remote SEG into the cache first, so training sees the PACS's labels; when the PACS
    /// is down, the cache's pairs.
    public func datalist() -> [DatalistItem] {
        if let idx = try? remoteIndex() {
            for image in idx.images.keys where idx.labels[image] != nil {
                _ = try? fetchLabel(image, tag: LabelTag.final, fresh: false)
            }
            for id in cache.labeledImages() where idx.labels[id] == nil {
                // A final label whose SEG left the PACS is no longer final.
                if cache.labelInfo(id, tag: LabelTag.final)?["SeriesInstanceUID"] != nil {
                    try? cache.removeLabel(id, tag: LabelTag.final)
                }
            }
        }
        return cache.datalist()
    }

    public func imageURI(_ id: String) -> String? { (try? fetchImage(id)) ?? cache.imageURI(id) }

    /// A final label is what the PACS holds now: the SEGs of the image's study are asked for again (not the
    /// listing's copy), so a label another server saved is served at once.
    public func labelURI(_ id: String, tag: String) -> String? {
        (try? fetchLabel(id, tag: tag, fresh: true)) ?? cache.labelURI(id, tag: tag)
    }

    public func imageInfo(_ id: String) -> JSONObject? {
        if let i = cache.imageInfo(id) { return i }
        return withLock { index?.images[id]?.info }
    }

    public func labelInfo(_ id: String, tag: String) -> JSONObject? { cache.labelInfo(id, tag: tag) }
    public func imageFileName(_ id: String) -> String? { cache.imageFileName(id) }
    public func labelFileName(_ id: String, tag: String) -> String? { cache.labelFileName(id, tag: tag) }

    public func labelsByImage(_ id: String) -> OrderedMap<String> {
        var out = cache.labelsByImage(id)
        if withLock({ index?.labels[id] }) != nil { out[LabelTag.final] = id }
        return out
    }

    // MARK: Fetching

    /// The series as NIfTI in the cache: converted once, later calls touch no network.
    public func fetchImage(_ id: String) throws -> String { try hidingServerPaths { try convertedImage(id) } }

    /// Every image is a series the PACS sent.
    public var imagesFromUpstream: Bool { true }

    private func convertedImage(_ id: String) throws -> String {
        if let p = cachedImage(id) { return p }
        guard (try? DICOMwebClient.uidPathComponent(id)) != nil else {
            throw MONAILabelError.notFound("Image \(id) not found: not a DICOM UID")
        }
        try refuseIfFailing(id, what: "series")
        return try fetchLocks.with(id) {
            if let p = cachedImage(id) { return p }
            try refuseIfFailing(id, what: "series")
            let (files, study) = try downloadImageSeries(id)
            let tmp = settings.cacheDirectory.appendingPathComponent(FileOps.tempPrefix + UUID().uuidString + ".nii.gz")
            defer { try? FileManager.default.removeItem(at: tmp) }
            let request: JSONValue = ["op": "series", "files": .array(files.map { .string($0.path) }), "out": .string(tmp.path)]
            let header = try convert(request, series: id, what: "series", action: "cannot be converted to a volume")
            var info = withLock { index?.images[id]?.info } ?? JSONObject()
            func put(_ k: String, _ v: String) { info[k] = .string(v.isEmpty ? "UNK" : v) }
            func field(_ k: String) -> String { header[k]?.stringValue ?? "" }
            put("SeriesInstanceUID", id)
            put("StudyInstanceUID", field("StudyInstanceUID").isEmpty ? study : field("StudyInstanceUID"))
            for k in ["StudyDate", "StudyTime", "Modality", "PatientID"] { put(k, field(k)) }
            if info["RetrieveURL"] == nil { put("RetrieveURL", "") }
            try cache.addImage(id: id, file: tmp, fileName: id + ".nii.gz", info: info)
            guard let p = cache.imageURI(id) else { throw MONAILabelError.io("series \(id) vanished from the cache") }
            return p
        }
    }

    private func cachedImage(_ id: String) -> String? {
        guard let p = cache.imageURI(id), FileOps.isRegularFile(p), !dicomFiles(seriesDirectory(id)).isEmpty else { return nil }
        return p
    }

    private func seriesDirectory(_ id: String) -> URL { settings.cacheDirectory.appendingPathComponent(id) }

    private func dicomFiles(_ dir: URL) -> [URL] {
        FileOps.listDirectory(dir.path).filter { $0.hasSuffix(".dcm") }.sorted().map { dir.appendingPathComponent($0) }
    }

    /// The series' instances in `<cache>/<series>/` (downloaded unless already there) and its study.
    private func downloadImageSeries(_ id: String) throws -> (files: [URL], study: String) {
        let study = try studyOf(id)
        let dir = seriesDirectory(id)
        let have = dicomFiles(dir)
        if !have.isEmpty { return (have, study) }
        return (try download(study: study, series: id, into: dir, byFrame: settings.fetchByFrame), study)
    }

    /// StudyInstanceUID of a series: from the lists, else one QIDO query. `.notFound` when the PACS lacks it.
    private func studyOf(_ series: String) throws -> String {
        if let s = withLock({ index?.images[series]?.study }) { return s }
        let found: [DicomJSONDataset]
        do {
            found = try client.searchSeries(filters: [("SeriesInstanceUID", series)])
        } catch {
            throw pacsFailure(error)
        }
        guard let study = found.first?.string(DicomTag.studyInstanceUID) else {
            throw MONAILabelError.notFound("Image \(series) not found in the PACS")
        }
        return study
    }

    /// WADO-RS retrieve into a staging folder renamed to `dir` once complete, so a crash mid-download never
    /// leaves a partial series that later looks cached. Whole instances, or with `fetchByFrame` each instance's
    /// metadata and frames (as upstream for images; a SEG's packed 1-bit frames always come as whole instances).
    private func download(study: String, series: String, into dir: URL, byFrame: Bool = false) throws -> [URL] {
        let parent = dir.deletingLastPathComponent()
        try FileOps.makeDirectory(parent)
        let staging = parent.appendingPathComponent(FileOps.tempPrefix + UUID().uuidString)
        try FileOps.makeDirectory(staging)
        var moved = false
        defer { if !moved { try? FileManager.default.removeItem(at: staging) } }
        if byFrame {
            try downloadByFrame(study: study, series: series, into: staging)
        } else {
            let parts: [[UInt8]]
            do {
                parts = try client.retrieveSeries(study: study, series: series)
            } catch {
                throw pacsFailure(error)
            }
            guard !parts.isEmpty else { throw MONAILabelError.notFound("series \(series) has no instances in the PACS") }
            // Named by position, not parsed here: what the PACS sent is read only by the converter process.
            for (k, bytes) in parts.enumerated() {
                try FileOps.atomicWrite(bytes, to: staging.appendingPathComponent(String(format: "instance-%05d.dcm", k)))
            }
        }
        try? FileManager.default.removeItem(at: dir)
        guard rename(staging.path, dir.path) == 0 else {
            throw MONAILabelError.io("cannot move the downloaded series \(series) into the cache: \(String(cString: strerror(errno)))")
        }
        moved = true
        FileOps.fsyncDirectory(parent)
        return dicomFiles(dir)
    }

    /// Instances rebuilt from the series' metadata and each instance's frames (WADO-RS `/frames`), written into
    /// `staging` and synced.
    private func downloadByFrame(study: String, series: String, into staging: URL) throws {
        let metadata: [DicomJSONDataset]
        do {
            metadata = try client.seriesMetadata(study: study, series: series)
        } catch {
            throw pacsFailure(error)
        }
        guard !metadata.isEmpty else { throw MONAILabelError.notFound("series \(series) has no instances in the PACS") }
        for m in metadata {
            guard let sop = m.string(DicomTag.sopInstanceUID), (try? DICOMwebClient.uidPathComponent(sop)) != nil else {
                throw MONAILabelError(.badUpstream, "unexpected answer from the PACS: an instance of series \(series) has no valid SOPInstanceUID")
            }
            let frames: [[UInt8]]
            let instance: DicomDataset
            do {
                let numbers = try FrameFetch.frameNumbers(m)
                do {
                    frames = try client.retrieveFrames(study: study, series: series, instance: sop, frames: numbers)
                } catch {
                    throw pacsFailure(error)
                }
                instance = try FrameFetch.instance(metadata: m, frames: frames)
            } catch let e as MONAILabelError {
                throw e
            } catch {
                throw MONAILabelError(.badUpstream, "instance \(sop) of series \(series) cannot be rebuilt from its frames: \(DicomConversion.short(describe(error)))")
            }
            let file = staging.appendingPathComponent(sop + ".dcm")
            try instance.save(to: file)
            let fd = open(file.path, O_RDONLY)
            if fd >= 0 {
                _ = fsync(fd)
                close(fd)
            }
        }
    }

    /// `final`: the newest SEG in the PACS decoded onto the image grid (downloaded once per SEG); other tags and
    /// images without a remote SEG: the cache.
    /// With `fresh`, the image's SEGs are asked for first (`labelURI`); otherwise the listing's SEG list serves.
    public func fetchLabel(_ id: String, tag: String, fresh: Bool) throws -> String? {
        try hidingServerPaths { try decodedLabel(id, tag: tag, fresh: fresh) }
    }

    /// What `GET /datastore/label` serves: the label as `labelURI` finds it (the image's SEGs asked for first), but
    /// a SEG that cannot be decoded is that SEG's 502, and a PACS that cannot be reached a 503, not a missing label.
    public func fetchLabel(_ id: String, tag: String) throws -> String? {
        try fetchLabel(id, tag: tag, fresh: true)
    }

    private func decodedLabel(_ id: String, tag: String, fresh: Bool) throws -> String? {
        guard tag == LabelTag.final else { return cache.labelURI(id, tag: tag) }
        let idx: RemoteIndex
        do {
            idx = fresh ? try indexWithFreshLabel(of: id) : try remoteIndex()
        } catch {
            // Serve what we have; only a label we never fetched needs the PACS.
            if let p = cache.labelURI(id, tag: tag) { return p }
            throw error
        }
        guard let seg = idx.labels[id] else { return cache.labelURI(id, tag: tag) }
        if let p = cachedFinal(id, seg: seg) { return p }
        return try fetchLocks.with(id) {
            if let p = cachedFinal(id, seg: seg) { return p }
            let imagePath = try fetchImage(id)
            guard let study = idx.images[id]?.study else { throw MONAILabelError.notFound("Image \(id) not found in the PACS") }
            let segDir = settings.cacheDirectory.appendingPathComponent("labels/final/\(seg)")
            var segFiles = dicomFiles(segDir)
            if segFiles.isEmpty { segFiles = try download(study: study, series: seg, into: segDir) }
            guard let segFile = segFiles.first else { throw MONAILabelError.notFound("SEG series \(seg) has no instances") }
            try refuseIfFailing(seg, what: "SEG series")
            let tmp = settings.cacheDirectory.appendingPathComponent(FileOps.tempPrefix + UUID().uuidString + ".nii.gz")
            defer { try? FileManager.default.removeItem(at: tmp) }
            var names = JSONObject()
            for (k, v) in withLock({ segmentNames }) { names[String(k)] = .string(v) }
            let request: JSONValue = [
                "op": "seg", "seg": .string(segFile.path), "image": .string(imagePath),
                "refs": .array(dicomFiles(seriesDirectory(id)).map { .string($0.path) }), "out": .string(tmp.path),
                "names": .object(names),
            ]
            let decoded = try convert(request, series: seg, what: "SEG series", action: "cannot be decoded onto series \(id)")
            var info = JSONObject()
            info["SeriesInstanceUID"] = .string(seg)
            info["Modality"] = "SEG"
            info["StudyInstanceUID"] = .string(study)
            info["label_info"] = decoded["segments"] ?? .array([])
            try cache.saveLabel(imageID: id, file: tmp, fileName: id + ".nii.gz", tag: LabelTag.final, info: info)
            return cache.labelURI(id, tag: tag)
        }
    }

    private func cachedFinal(_ id: String, seg: String) -> String? {
        guard cache.labelInfo(id, tag: LabelTag.final)?["SeriesInstanceUID"]?.stringValue == seg,
            let p = cache.labelURI(id, tag: LabelTag.final), FileOps.isRegularFile(p)
        else { return nil }
        return p
    }

    // MARK: Mutations

    public func addImage(id: String, file: URL, fileName: String, info: JSONObject) throws -> String {
        throw MONAILabelError(.notEnabled, "images of a DICOMweb datastore come from the PACS: store the series there (STOW-RS)")
    }

    public func removeImage(_ id: String) throws {
        throw MONAILabelError(.notEnabled, "images of a DICOMweb datastore are removed in the PACS, not here")
    }

    /// `final`: the label becomes a DICOM SEG on the image series, stored in the PACS with STOW-RS, then kept in
    /// the cache with the SEG's UIDs in its info. Other tags: the cache only.
    public func saveLabel(imageID: String, file: URL, fileName: String, tag: String, info: JSONObject) throws -> String {
        try hidingServerPaths(upload: [file], as: fileName) {
            try storeLabel(imageID: imageID, file: file, fileName: fileName, tag: tag, info: info)
        }
    }

    private func storeLabel(imageID: String, file: URL, fileName: String, tag: String, info: JSONObject) throws -> String {
        let imagePath = try fetchImage(imageID)
        if fileName.lowercased().hasSuffix(".bin") {
            // OHIF's raw buffer, as upstream takes it: a NIfTI on the image's grid, then saved like any label.
            let staged = try labelFromBuffer(file, imagePath: imagePath)
            defer { try? FileManager.default.removeItem(at: staged) }
            let name = String(fileName.dropLast(4)) + ".nii.gz"
            return try storeLabel(imageID: imageID, file: staged, fileName: name, tag: tag, info: info)
        }
        guard tag == LabelTag.final else {
            return try cache.saveLabel(imageID: imageID, file: file, fileName: fileName, tag: tag, info: info)
        }
        let labelInfo = info["label_info"]?.arrayValue ?? []
        let staging = settings.cacheDirectory.appendingPathComponent(FileOps.tempPrefix + UUID().uuidString)
        try FileOps.makeDirectory(staging)
        defer { try? FileManager.default.removeItem(at: staging) }
        let segURL = staging.appendingPathComponent("seg.dcm")
        let seg = try writeSEG(imageID: imageID, labelFile: file, fileName: fileName, labelInfo: labelInfo, to: segURL)
        guard let bytes = FileManager.default.contents(atPath: segURL.path) else { throw MONAILabelError.io("cannot read back the SEG written for \(imageID)") }
        let stored: StowResult
        do {
            stored = try client.store(instances: [Array(bytes)])
        } catch {
            throw pacsFailure(error)
        }
        let segSeries = seg.seriesInstanceUID.isEmpty ? (stored.seriesInstanceUID ?? "") : seg.seriesInstanceUID
        // Keep the SEG we just stored: reading the label back needs no download.
        let segDir = settings.cacheDirectory.appendingPathComponent("labels/final/\(segSeries)")
        try FileOps.makeDirectory(segDir)
        try FileOps.atomicCopy(from: segURL, to: segDir.appendingPathComponent(seg.sopInstanceUID + ".dcm"))
        var merged = info
        merged["SeriesInstanceUID"] = .string(segSeries)
        merged["Modality"] = "SEG"
        merged["PatientID"] = .string(seg.patientID.isEmpty ? "UNK" : seg.patientID)
        merged["StudyInstanceUID"] = .string(seg.studyInstanceUID)
        let id = try cache.saveLabel(imageID: imageID, file: file, fileName: fileName, tag: tag, info: merged)
        // Ordered like SEGs learnt from the PACS (their dates and times), so that a newer SEG stored by another
        // server wins over this one.
        let written = try? DicomDataset(contentsOf: segURL)
        let order = ["SeriesDate", "SeriesTime", "ContentDate", "ContentTime"]
            .map { name in (try? written?.string(name)) ?? "" }.joined(separator: "|")
        withLock {
            segReferences[segSeries] = SegReference(image: imageID, order: order)
            index?.labels[imageID] = segSeries
        }
        return id
    }

    /// Writes a label of the image series as a DICOM SEG at `url` (what `/infer?output=dicom_seg` returns and
    /// a final label becomes). Segment names come from `labelInfo`, else the app's label names; the series
    /// description from `labelInfo[0].model_name`, else "MONAILabel", as upstream.
    @discardableResult
    public func writeSEG(imageID: String, labelFile: URL, fileName: String, labelInfo: [JSONValue], to url: URL) throws
        -> DicomInstanceInfo
    {
        _ = try fetchImage(imageID)
        let label = try loadUpload(labelFile, fileName: fileName)
        let description = labelInfo.first?.objectValue?["model_name"]?.stringValue ?? "MONAILabel"
        do {
            return try DicomSeg.write(label: label, sourceFiles: dicomFiles(seriesDirectory(imageID)),
                                      segments: segmentsFor(label, labelInfo: labelInfo), seriesDescription: description, to: url)
        } catch {
            throw MONAILabelError.invalid("the label cannot be stored as a DICOM SEG of series \(imageID): \(describe(error, upload: [labelFile], as: fileName))")
        }
    }

    public func exportDicomSeg(imageID: String, labelFile: URL, fileName: String, labelInfo: [JSONValue], to url: URL) throws {
        try writeSEG(imageID: imageID, labelFile: labelFile, fileName: fileName, labelInfo: labelInfo, to: url)
    }

    public func removeLabel(_ id: String, tag: String) throws { try cache.removeLabel(id, tag: tag) }

    public func updateImageInfo(_ id: String, info: JSONObject) throws { try cache.updateImageInfo(id, info: info) }

    public func updateLabelInfo(_ id: String, tag: String, info: JSONObject) throws {
        try cache.updateLabelInfo(id, tag: tag, info: info)
    }

    /// Forgets the QIDO lists (the next listing asks the PACS) and reconciles the cache.
    public func refresh() {
        withLock {
            index?.fetchedAt = .distantPast
            index?.labelsFetchedAt = .distantPast
        }
        cache.refresh()
    }

    // MARK: Failing series

    /// NumberOfSeriesRelatedInstances, asked for in the listing so a changed series is noticed.
    static let instanceCountTag = "00201209"

    /// Runs a conversion on the converter. A failure of the data (`.badUpstream`: what DCMTK refused, a crash,
    /// an out-of-memory kill or a timeout of the converter process) is remembered for `series` and answered as a
    /// 502 naming it; anything else (our own I/O) passes through.
    private func convert(_ request: JSONValue, series: String, what: String, action: String) throws -> JSONValue {
        let c = withLock { converter }
        do {
            return try c.run(request)
        } catch let e as MONAILabelError where e.kind == .badUpstream {
            let reason = describe(e)
            remember(series, reason: reason)
            throw MONAILabelError(.badUpstream, "\(what) \(series) \(action): \(reason)")
        } catch let e as MONAILabelError {
            throw MONAILabelError(e.kind, "\(what) \(series) \(action): \(describe(e))")
        } catch {
            throw MONAILabelError.io("\(what) \(series) \(action): \(describe(error))")
        }
    }

    /// A 502 for a series remembered as failing, without converting it again.
    private func refuseIfFailing(_ series: String, what: String) throws {
        guard let f = withLock({ failures[series] }) else { return }
        throw MONAILabelError(.badUpstream, "\(what) \(series) is not usable: \(f.reason) (remembered; tried again "
            + "once the series changes in the PACS)")
    }

    private func remember(_ series: String, reason: String) {
        let snapshot = withLock { () -> [String: SeriesFailure] in
            failures[series] = SeriesFailure(reason: reason, instances: index?.images[series]?.instances)
            return failures
        }
        saveFailures(snapshot)
    }

    /// Clears the failures of series whose instance count in `idx` differs from the count when they failed
    /// (the series changed in the PACS), with their downloaded instances, so the next request tries again.
    private func forgetChangedFailures(_ idx: RemoteIndex) {
        let (changed, learnt, snapshot) = withLock { () -> ([String], Bool, [String: SeriesFailure]) in
            var changed: [String] = [], learnt = false
            for (series, f) in failures {
                guard let now = idx.images[series]?.instances else { continue }
                if let then = f.instances {
                    if then != now { changed.append(series) }
                } else {
                    // Failed before any listing gave its count: the count now is the one it failed with.
                    failures[series]?.instances = now
                    learnt = true
                }
            }
            for s in changed { failures[s] = nil }
            return (changed, learnt, failures)
        }
        guard !changed.isEmpty || learnt else { return }
        for s in changed { try? FileManager.default.removeItem(at: seriesDirectory(s)) }
        saveFailures(snapshot)
    }

    private func saveFailures(_ failures: [String: SeriesFailure]) {
        var o = JSONObject()
        for (k, f) in failures.sorted(by: { $0.key < $1.key }) {
            o[k] = ["reason": .string(f.reason), "instances": f.instances.map { .int($0) } ?? .null]
        }
        try? FileOps.atomicWrite(JSONValue.object(o).compactBytes(), to: settings.cacheDirectory.appendingPathComponent(Self.failuresFile))
    }

    private static func loadFailures(_ url: URL) -> [String: SeriesFailure] {
        guard let data = FileManager.default.contents(atPath: url.path), let v = try? JSONValue.parse([UInt8](data)),
            let o = v.objectValue
        else { return [:] }
        var out: [String: SeriesFailure] = [:]
        for (k, e) in o {
            guard let reason = e["reason"]?.stringValue else { continue }
            out[k] = SeriesFailure(reason: reason, instances: e["instances"]?.intValue)
        }
        return out
    }

    // MARK: Helpers

    /// Reads an uploaded label whose temporary name lacks the extension that `fileName` carries (libnifti picks
    /// gzip or not by the name): through a hard link with that extension in the cache, or a copy where the upload
    /// lies on another file system; never through a symbolic link. A failure's detail names the client's file,
    /// never a server path.
    private func loadUpload(_ file: URL, fileName: String) throws -> Volume {
        guard let ext = ImageIO.fileExtension(of: fileName) ?? ImageIO.fileExtension(of: file.lastPathComponent) else {
            throw MONAILabelError.invalid("unsupported label file '\(fileName)': expected one of \(ImageIO.extensions.joined(separator: ", "))")
        }
        let named = settings.cacheDirectory.appendingPathComponent(FileOps.tempPrefix + UUID().uuidString + ext)
        defer { try? FileManager.default.removeItem(at: named) }
        do {
            if link(file.path, named.path) != 0 { try FileManager.default.copyItem(at: file, to: named) }
            return try ImageIO.load(named)
        } catch {
            throw MONAILabelError.invalid("the label '\(fileName)' cannot be read: \(describe(error, upload: [named, file], as: fileName))")
        }
    }

    /// A `.bin` label upload (uint8 voxels of the image, first axis fastest, as upstream's `binary_to_image`
    /// reads it) as a temporary `.nii.gz` in the cache with the image's shape and affine.
    private func labelFromBuffer(_ file: URL, imagePath: String) throws -> URL {
        let image = try NIfTI.read(URL(fileURLWithPath: imagePath))
        guard let size = FileOps.fileSize(file.path), size == Int64(image.voxelCount) else {
            throw MONAILabelError.invalid("the label buffer has \(FileOps.fileSize(file.path) ?? 0) bytes; the image "
                + "\(image.spatialShape) has \(image.voxelCount) voxels (one uint8 each)")
        }
        guard let data = FileManager.default.contents(atPath: file.path), data.count == image.voxelCount else {
            throw MONAILabelError.io("cannot read the uploaded label buffer")
        }
        let label = Volume(spatialShape: image.spatialShape,
                           data: NPYArray.fortranToC(.uint8([UInt8](data)), shape: image.spatialShape), affine: image.affine)
        let staged = settings.cacheDirectory.appendingPathComponent(FileOps.tempPrefix + UUID().uuidString + ".nii.gz")
        do {
            try NIfTI.write(label, to: staged)
        } catch {
            try? FileManager.default.removeItem(at: staged)
            throw MONAILabelError.io("cannot stage the label buffer: \(describe(error))")
        }
        return staged
    }

    /// Segment names: upstream's `label_info` entries matched by `idx` / `labelID` / `label`, else by position;
    /// then the app's label names; else `Segment_<v>`.
    func segmentsFor(_ label: Volume, labelInfo: [JSONValue]) -> [DicomSegment] {
        var present = Set<Int>()
        for v in label.data.asFloat() where v != 0 { if let i = v.labelInteger { present.insert(i) } }
        let names = withLock { segmentNames }
        let entries = labelInfo.compactMap(\.objectValue)
        return present.sorted().enumerated().map { position, v in
            let byValue = entries.first { e in
                ["idx", "labelID", "label"].contains { k in e[k]?.intValue == v || e[k]?.stringValue == String(v) }
            }
            let entry = byValue ?? (position < entries.count && entries.allSatisfy { $0["idx"] == nil && $0["labelID"] == nil && $0["label"] == nil }
                ? entries[position] : nil)
            let name = entry?["name"]?.stringValue ?? names[v] ?? "Segment_\(v)"
            let color = entry?["color"]?.arrayValue?.compactMap(\.intValue)
            return DicomSegment(value: v, name: name, color: color?.count == 3 ? color : nil)
        }
    }

    /// An error's text for a detail that reaches the client: the cache folder and an upload's temporary path
    /// (absolute server paths) become `<cache>` and the client's file name.
    private func describe(_ error: Error, upload: [URL] = [], as fileName: String = "") -> String {
        var text = "\(error)"
        for u in upload { text = text.replacingOccurrences(of: u.path, with: fileName) }
        return text.replacingOccurrences(of: settings.cacheDirectory.path, with: "<cache>")
    }

    /// Runs `body`, rewriting the message of a `MONAILabelError` it throws as `describe` does: what reaches the
    /// client never carries the cache's or an upload's absolute path, whichever layer below wrote it.
    private func hidingServerPaths<T>(upload: [URL] = [], as fileName: String = "", _ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let e as MONAILabelError {
            throw MONAILabelError(e.kind, describe(e, upload: upload, as: fileName))
        }
    }

    /// Maps a failure and, when the PACS is unreachable, remembers it so `status()` reports it and the next
    /// listing asks the PACS again.
    private func pacsFailure(_ error: Error) -> MONAILabelError {
        let e = Self.domainError(error)
        if e.kind == .unavailable {
            withLock {
                lastError = e.message
                lastAttempt = Date()
            }
        }
        return e
    }

    /// A DICOMweb failure in the domain's terms: unreachable -> `.unavailable` (503), missing -> `.notFound`.
    static func domainError(_ error: Error) -> MONAILabelError {
        if let e = error as? MONAILabelError { return e }
        guard let e = error as? DICOMwebError else { return MONAILabelError.io("\(error)") }
        switch e.kind {
        case .unavailable: return MONAILabelError(.unavailable, e.message)
        case .notFound: return MONAILabelError.notFound(e.message)
        case .unauthorized:
            return MONAILabelError(.unavailable, "the PACS refused our credentials (MONAI_LABEL_DICOMWEB_USERNAME / _PASSWORD): \(e.message)")
        case .rejected: return MONAILabelError(.badUpstream, "the PACS refused the request: \(e.message)")
        case .malformedResponse: return MONAILabelError(.badUpstream, "unexpected answer from the PACS: \(e.message)")
        }
    }
}

/// One lock per key, so two requests for the same series download it once while other series proceed.
/// Recursive: fetching a label fetches its image under the same key.
final class KeyedLocks: @unchecked Sendable {
    private let lock = NSLock()
    private var locks: [String: NSRecursiveLock] = [:]

    func with<T>(_ key: String, _ body: () throws -> T) rethrows -> T {
        lock.lock()
        let l = locks[key] ?? NSRecursiveLock()
        locks[key] = l
        lock.unlock()
        l.lock()
        defer { l.unlock() }
        return try body()
    }
}
