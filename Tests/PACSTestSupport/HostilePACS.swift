import DICOM
import Foundation
import HTTPServer
import Imaging

/// A DICOMweb responder of the tests' own, serving what a real PACS may refuse to store: series built in the
/// test (good ones, and ones that crash, exhaust or confuse a converter). QIDO `/series` lists them (with
/// NumberOfSeriesRelatedInstances; `Modality=SEG` lists the SEG series), `/series/{uid}/metadata` says which image
/// series a SEG references, WADO-RS `/studies/{study}/series/{series}` sends the instances. Shared by the in-process
/// tests (MONAILabelServerTests) and the crash probes against the release binary (CrashProbeTests).
public final class HostilePACS: @unchecked Sendable {
    struct Series {
        var study: String
        var instances: [[UInt8]]
        /// For a SEG: the image series it references.
        var references: String?
    }

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    private let lock = NSLock()
    private var series: [(uid: String, value: Series)] = []
    private var listingDelay = 0.0
    private var listings = 0
    /// Released at the end so a sleeping QIDO handler does not hold the shutdown.
    private let release = DispatchSemaphore(value: 0)
    let server: HTTPServer
    public let port: Int

    public init() throws {
        var router = HTTPRouter()
        var config = HTTPServerConfiguration(host: "127.0.0.1", port: 0)
        config.workerCount = 16
        let box = Box()
        router.get("/dicom-web/series") { req in box.pacs!.search(req, study: nil) }
        router.get("/dicom-web/studies/{study}/series") { req in box.pacs!.search(req, study: req.pathParameters["study"]) }
        router.get("/dicom-web/studies/{study}/series/{series}/metadata") { req in
            let pacs = box.pacs!
            let uid = req.pathParameters["series"] ?? ""
            guard let s = pacs.lock.withLock({ pacs.series.first { $0.uid == uid }?.value }) else {
                return .bytes(Array("{}".utf8), contentType: "application/json", status: .notFound)
            }
            let reference = s.references.map {
                #", "00081115": {"vr": "SQ", "Value": [{"0020000E": {"vr": "UI", "Value": ["\#($0)"]}}]}"#
            } ?? ""
            let item = #"{"0020000E": {"vr": "UI", "Value": ["\#(uid)"]}, "0020000D": {"vr": "UI", "Value": ["\#(s.study)"]}"#
                + #", "00080060": {"vr": "CS", "Value": ["\#(s.references == nil ? "CT" : "SEG")"]}\#(reference)}"#
            return .bytes(Array("[\(item)]".utf8), contentType: "application/dicom+json")
        }
        router.get("/dicom-web/studies/{study}/series/{series}") { req in
            let pacs = box.pacs!
            let uid = req.pathParameters["series"] ?? ""
            guard let s = pacs.lock.withLock({ pacs.series.first { $0.uid == uid }?.value }) else {
                return .bytes(Array("{}".utf8), contentType: "application/json", status: .notFound)
            }
            var body: [UInt8] = []
            for part in s.instances {
                body += Array("--BOUNDARY\r\nContent-Type: application/dicom\r\n\r\n".utf8) + part + Array("\r\n".utf8)
            }
            body += Array("--BOUNDARY--\r\n".utf8)
            return .bytes(body, contentType: #"multipart/related; type="application/dicom"; boundary=BOUNDARY"#)
        }
        server = HTTPServer(configuration: config, router: router)
        try server.start()
        guard let p = server.port else { throw Failure(description: "the test PACS did not bind a port") }
        port = p
        box.pacs = self
    }

    final class Box: @unchecked Sendable { var pacs: HostilePACS? }

    /// QIDO-RS series search: image series (after the configured delay, counted), or with `Modality=SEG` the SEG
    /// series; `study` and `SeriesInstanceUID` narrow it.
    private func search(_ req: HTTPRequest, study: String?) -> HTTPResponse {
        let segs = (req.queryValue("Modality") ?? "") == "SEG"
        let (delay, listed) = lock.withLock { () -> (Double, [(uid: String, value: Series)]) in
            if !segs { listings += 1 }
            return (segs ? 0 : listingDelay, series.filter { ($0.value.references != nil) == segs })
        }
        if delay > 0 { _ = release.wait(timeout: .now() + delay) }
        let wanted = req.queryValue("SeriesInstanceUID")
        let items = listed.filter { (wanted == nil || $0.uid == wanted) && (study == nil || $0.value.study == study) }.map { s in
            #"{"0020000E": {"vr": "UI", "Value": ["\#(s.uid)"]}, "0020000D": {"vr": "UI", "Value": ["\#(s.value.study)"]}, "#
                + #""00080060": {"vr": "CS", "Value": ["\#(segs ? "SEG" : "CT")"]}, "#
                + #""00201209": {"vr": "IS", "Value": [\#(s.value.instances.count)]}}"#
        }
        return .bytes(Array(("[" + items.joined(separator: ",") + "]").utf8), contentType: "application/dicom+json")
    }

    public var studiesURL: String { "http://127.0.0.1:\(port)/dicom-web" }

    /// Serves an image series (replacing one of the same UID).
    public func set(_ uid: String, study: String = HostilePACS.study, instances: [[UInt8]]) {
        put(uid, Series(study: study, instances: instances, references: nil))
    }

    /// Serves a SEG series referencing the image series `image`.
    public func setSEG(_ uid: String, study: String = HostilePACS.study, references image: String, instances: [[UInt8]]) {
        put(uid, Series(study: study, instances: instances, references: image))
    }

    private func put(_ uid: String, _ s: Series) {
        lock.withLock {
            series.removeAll { $0.uid == uid }
            series.append((uid, s))
        }
    }

    public func setListingDelay(_ d: Double) { lock.withLock { listingDelay = d } }
    /// Image-list queries seen (SEG searches not counted).
    public var listingCount: Int { lock.withLock { listings } }

    /// Stops serving (also on release).
    public func shutdown() {
        for _ in 0..<32 { release.signal() }
        server.shutdown(gracePeriod: 0)
        server.wait()
    }

    deinit { shutdown() }

    // MARK: Series

    /// The study every series is placed in unless told otherwise.
    public static let study = "1.2.826.0.1.3680043.99.1"

    /// A small CT series (8x8x3, 1 mm unless `volume` says otherwise), its instances as bytes.
    public static func goodSeries(_ uid: String, in dir: URL, volume: Volume? = nil,
                                  transferSyntax: DicomTransferSyntax = .explicitLittle) throws -> [[UInt8]] {
        let values = (0..<(8 * 8 * 3)).map { Int16($0 % 200) }
        let v = volume ?? Volume(spatialShape: [8, 8, 3], data: .int16(values), affine: .identity)
        let files = try DicomSeriesWriter.writeCT(volume: v, to: dir, patientID: "P", studyInstanceUID: study,
                                                  seriesInstanceUID: uid, transferSyntax: transferSyntax)
        return try files.map { Array(try Data(contentsOf: $0)) }
    }

    /// The good series with `attribute` set to `value` in every instance.
    public static func series(_ uid: String, in dir: URL, setting attribute: String, to value: String) throws -> [[UInt8]] {
        let good = try goodSeries(uid, in: dir)
        return try good.enumerated().map { k, bytes in
            let ds = try DicomDataset(bytes: bytes)
            try ds.set(attribute, value)
            let url = dir.appendingPathComponent("edited-\(k).dcm")
            try ds.save(to: url)
            return Array(try Data(contentsOf: url))
        }
    }

    /// The good series RLE-compressed, each slice's Rows and Columns then rewritten to `size` x `size`: a slice
    /// of about 1 KB declaring (at 65535) 4.3 billion pixels, which DCMTK would pad with zeros to 8.6 GB.
    public static func rleBomb(_ uid: String, in dir: URL, size: UInt16) throws -> [[UInt8]] {
        try goodSeries(uid, in: dir, transferSyntax: .rle).map { bytes in
            var out = bytes
            for tag: [UInt8] in [[0x28, 0x00, 0x10, 0x00, 0x55, 0x53, 0x02, 0x00], [0x28, 0x00, 0x11, 0x00, 0x55, 0x53, 0x02, 0x00]] {
                guard let at = (0...(out.count - tag.count - 2)).first(where: { Array(out[$0..<($0 + tag.count)]) == tag }) else {
                    throw Failure(description: "no Rows / Columns in the RLE slice")
                }
                out[at + 8] = UInt8(size & 0xFF)
                out[at + 9] = UInt8(size >> 8)
            }
            return out
        }
    }

    /// A SEG of the good series `image` (its files written to `dir`) rewritten to declare `frames` frames of 1x1
    /// pixels, with their packed bits: 4 million of them take 500 KB.
    public static func manyFrameSEG(image uid: String, in dir: URL, frames: Int) throws -> [UInt8] {
        let files = try DicomSeriesWriter.writeCT(
            volume: Volume(spatialShape: [8, 8, 3], data: .int16((0..<192).map { Int16($0) }), affine: .identity),
            to: dir.appendingPathComponent("source"), patientID: "P", studyInstanceUID: study, seriesInstanceUID: uid)
        let label = Volume(spatialShape: [8, 8, 3], data: .uint8((0..<192).map { $0 % 5 == 0 ? 1 : 0 }), affine: .identity)
        let seg = dir.appendingPathComponent("seg.dcm")
        try DicomSeg.write(label: label, sourceFiles: files, segments: [], seriesDescription: "hostile", to: seg)
        let ds = try DicomDataset(contentsOf: seg)
        try ds.set("NumberOfFrames", String(frames))
        try ds.set("Rows", "1")
        try ds.set("Columns", "1")
        try ds.setPixelData(littleEndian: [UInt8](repeating: 0xFF, count: (frames + 7) / 8 + (frames + 7) / 8 % 2), bitsAllocated: 8)
        let out = dir.appendingPathComponent("many-frames.dcm")
        try ds.save(to: out)
        return Array(try Data(contentsOf: out))
    }

    /// Explicit VR little endian bytes of a private sequence nesting `depth` levels (undefined lengths), placed
    /// after the pixel data so the rest of the instance stays valid.
    public static func deepSequence(depth: Int) -> [UInt8] {
        let open: [UInt8] = [0xE1, 0x7F, 0x01, 0x10, 0x53, 0x51, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF]  // (7FE1,1001) SQ
        let item: [UInt8] = [0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]
        let itemEnd: [UInt8] = [0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0]
        let seqEnd: [UInt8] = [0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]
        var out: [UInt8] = []
        for _ in 0..<depth { out += open + item }
        for _ in 0..<depth { out += itemEnd + seqEnd }
        return out
    }
}
