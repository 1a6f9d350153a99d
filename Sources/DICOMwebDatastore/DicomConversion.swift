import DICOM
import Foundation
import Imaging
import MONAILabelCore

/// Runs the datastore's DICOM conversions (a series to NIfTI, a SEG onto its image). The server installs one
/// that runs each in a separate, memory-capped and timed process (`IsolatedDicomConverter` in the server), so
/// that a series which crashes, aborts or exhausts DCMTK cannot end the server; `InProcessDicomConverter` runs
/// them in place (tests, tools).
public protocol DicomConverter: Sendable {
    /// Runs one `DicomConversion` request and returns its answer; a failure of the data is `.badUpstream`.
    func run(_ request: JSONValue) throws -> JSONValue
}

/// Conversions in the calling process: no protection from crashes in DCMTK.
public struct InProcessDicomConverter: DicomConverter {
    public init() {}
    public func run(_ request: JSONValue) throws -> JSONValue { try DicomConversion.perform(request) }
}

/// The conversions as requests and answers in JSON (paths, never voxels), so they can run in another process.
public enum DicomConversion {
    /// Longest excerpt of a DICOM error kept in a detail: DCMTK quotes values it refuses, and what a PACS
    /// sent (a 300,000-value position) must not come back whole.
    static let excerpt = 300

    /// Spacing of a converted volume must lie in this range (mm): outside it no viewer or transform can use
    /// the volume, and NIfTI readers refuse some of these values.
    static let spacingRange = 1e-4...1e5

    /// `{"op": "series", "files": [...], "out": path}` -> the first slice's header fields;
    /// `{"op": "seg", "seg": path, "image": path, "refs": [...], "out": path, "names": {value: name}}` ->
    /// `{"segments": [{"name", "idx"}]}`. Failures of the data throw `.badUpstream` with a short reason.
    public static func perform(_ request: JSONValue) throws -> JSONValue {
        let paths = { (key: String) -> [URL] in (request[key]?.arrayValue ?? []).compactMap(\.stringValue).map(URL.init(fileURLWithPath:)) }
        guard let op = request["op"]?.stringValue, let out = request["out"]?.stringValue else {
            throw MONAILabelError.io("malformed conversion request")
        }
        switch op {
        case "series":
            let loaded: (volume: Volume, info: DicomInstanceInfo)
            do {
                loaded = try DicomSeries.load(files: paths("files"))
            } catch {
                throw MONAILabelError(.badUpstream, short(error))
            }
            try checkGeometry(loaded.volume)
            try NIfTI.write(loaded.volume, to: URL(fileURLWithPath: out))
            let i = loaded.info
            return ["StudyInstanceUID": .string(i.studyInstanceUID), "StudyDate": .string(i.studyDate),
                    "StudyTime": .string(i.studyTime), "Modality": .string(i.modality), "PatientID": .string(i.patientID)]
        case "seg":
            guard let seg = request["seg"]?.stringValue, let image = request["image"]?.stringValue else {
                throw MONAILabelError.io("malformed conversion request")
            }
            var names: [Int: String] = [:]
            for (k, v) in request["names"]?.objectValue ?? [:] { if let i = Int(k), let n = v.stringValue { names[i] = n } }
            let decoded: (label: Volume, segments: [DicomSegment])
            do {
                let reference = try NIfTI.read(URL(fileURLWithPath: image))
                decoded = try DicomSeg.read(file: URL(fileURLWithPath: seg), onto: reference, referenceFiles: paths("refs"))
            } catch {
                throw MONAILabelError(.badUpstream, short(error))
            }
            let valueOf = { (s: DicomSegment) -> Int in
                names.first { $0.value.caseInsensitiveCompare(s.name) == .orderedSame }?.key ?? s.value
            }
            try NIfTI.write(relabel(decoded.label, segments: decoded.segments, valueOf: valueOf), to: URL(fileURLWithPath: out))
            return ["segments": .array(decoded.segments.map { ["name": .string($0.name), "idx": .int(valueOf($0))] })]
        default:
            throw MONAILabelError.io("unknown conversion '\(op)'")
        }
    }

    /// A volume the rest of the server can use: a finite affine whose voxel sizes are neither degenerate nor
    /// absurd (PixelSpacing 1e308 or 1e-300 would be written as an unreadable NIfTI, or resample to a grid of
    /// billions of voxels).
    static func checkGeometry(_ v: Volume) throws {
        guard v.affine.isFinite else {
            throw MONAILabelError(.badUpstream, "the series' geometry is not finite (position, orientation or spacing)")
        }
        for (axis, s) in v.spacing.enumerated() where !spacingRange.contains(s) {
            throw MONAILabelError(.badUpstream, "voxel spacing \(s) mm along axis \(axis) is outside "
                + "\(spacingRange.lowerBound)...\(spacingRange.upperBound) mm")
        }
    }

    /// An error's text cut to `excerpt` characters.
    static func short(_ error: Error) -> String { short("\(error)") }

    /// `text` cut to `excerpt` characters.
    static func short(_ text: String) -> String {
        return text.count <= excerpt ? text : String(text.prefix(excerpt)) + "... (\(text.count) characters)"
    }

    /// A SEG numbers its segments 1...N; each gets back the label value its name has in the app's models.
    static func relabel(_ label: Volume, segments: [DicomSegment], valueOf: (DicomSegment) -> Int) -> Volume {
        let map = Dictionary(segments.map { ($0.value, valueOf($0)) }, uniquingKeysWith: { a, _ in a })
        guard map.contains(where: { $0.key != $0.value }) else { return label }
        var out = label
        let values = label.data.asFloat().map { v -> Float in
            guard v != 0, let i = v.labelInteger else { return 0 }
            return Float(map[i] ?? i)
        }
        out.data = VoxelData.converting(values, to: (map.values.max() ?? 0) > 255 ? .uint16 : .uint8)
        return out
    }
}
