import Foundation

/// One dataset of the DICOM JSON model (PS3.18 F.2) as QIDO-RS and WADO-RS metadata return it:
/// `{"0020000E": {"vr": "UI", "Value": ["1.2..."]}, ...}`.
public struct DicomJSONDataset: Sendable, Equatable {
    public enum Value: Sendable, Equatable {
        case string(String)
        case number(Double)
        case dataset(DicomJSONDataset)
    }

    public struct Attribute: Sendable, Equatable {
        public var vr: String
        public var values: [Value]
    }

    /// Attributes by upper-case 8-hex-digit tag.
    public var attributes: [String: Attribute]

    public init(attributes: [String: Attribute] = [:]) { self.attributes = attributes }

    /// Parses one dataset object.
    public init(json: Any) throws {
        guard let obj = json as? [String: Any] else { throw DICOMwebError(.malformedResponse, "a DICOM JSON dataset is not an object") }
        var attrs: [String: Attribute] = [:]
        for (tag, raw) in obj {
            guard let a = raw as? [String: Any] else { continue }
            let vr = a["vr"] as? String ?? ""
            var values: [Value] = []
            for v in a["Value"] as? [Any] ?? [] {
                if let s = v as? String {
                    values.append(.string(s))
                } else if let n = v as? NSNumber {
                    values.append(.number(n.doubleValue))
                } else if vr == "SQ" {
                    values.append(.dataset(try DicomJSONDataset(json: v)))
                } else if let pn = v as? [String: Any], let alpha = pn["Alphabetic"] as? String {
                    values.append(.string(alpha))
                }
            }
            attrs[tag.uppercased()] = Attribute(vr: vr, values: values)
        }
        attributes = attrs
    }

    /// Parses a response body: a JSON array of datasets (an empty body is an empty array, as some servers
    /// answer 204 to a search without matches).
    public static func parseArray(_ body: [UInt8]) throws -> [DicomJSONDataset] {
        if body.allSatisfy({ $0 == 32 || $0 == 10 || $0 == 13 || $0 == 9 }) { return [] }
        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: Data(body))
        } catch {
            throw DICOMwebError(.malformedResponse, "the response is not JSON: \(String(decoding: body.prefix(200), as: UTF8.self))")
        }
        if let arr = json as? [Any] { return try arr.map { try DicomJSONDataset(json: $0) } }
        return [try DicomJSONDataset(json: json)]
    }

    /// The first value of `tag` as text (numbers formatted without a needless ".0").
    public func string(_ tag: String) -> String? {
        switch attributes[tag.uppercased()]?.values.first {
        case .string(let s): return s
        case .number(let n): return n == n.rounded() && abs(n) < 1e15 ? String(Int(n)) : String(n)
        default: return nil
        }
    }

    /// All text values of `tag`.
    public func strings(_ tag: String) -> [String] {
        (attributes[tag.uppercased()]?.values ?? []).compactMap { if case .string(let s) = $0 { return s } else { return nil } }
    }

    /// The items of a sequence attribute.
    public func sequence(_ tag: String) -> [DicomJSONDataset] {
        (attributes[tag.uppercased()]?.values ?? []).compactMap { if case .dataset(let d) = $0 { return d } else { return nil } }
    }
}

/// Tags the DICOMweb layer reads, by keyword.
public enum DicomTag {
    public static let studyInstanceUID = "0020000D"
    public static let seriesInstanceUID = "0020000E"
    public static let sopInstanceUID = "00080018"
    public static let sopClassUID = "00080016"
    public static let modality = "00080060"
    public static let patientID = "00100020"
    public static let studyDate = "00080020"
    public static let studyTime = "00080030"
    public static let seriesDescription = "0008103E"
    public static let seriesNumber = "00200011"
    public static let retrieveURL = "00081190"
    public static let referencedSOPSequence = "00081199"
    public static let failedSOPSequence = "00081198"
    public static let referencedSOPInstanceUID = "00081155"
    public static let referencedSeriesSequence = "00081115"
    public static let failureReason = "00081197"
}
