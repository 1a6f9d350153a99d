import Foundation

/// The identifying header of one DICOM instance: what a datastore needs to file an image or a SEG.
/// Absent optional attributes are empty strings.
public struct DicomInstanceInfo: Sendable, Equatable {
    public var sopInstanceUID: String
    public var sopClassUID: String
    public var seriesInstanceUID: String
    public var studyInstanceUID: String
    public var patientID: String
    public var modality: String
    public var studyDate: String
    public var studyTime: String
    public var seriesDescription: String
    /// For a SEG (or any instance with a ReferencedSeriesSequence): the first referenced series' UID.
    public var referencedSeriesInstanceUID: String?

    public init(
        sopInstanceUID: String, sopClassUID: String, seriesInstanceUID: String, studyInstanceUID: String,
        patientID: String = "", modality: String = "", studyDate: String = "", studyTime: String = "",
        seriesDescription: String = "", referencedSeriesInstanceUID: String? = nil
    ) {
        self.sopInstanceUID = sopInstanceUID
        self.sopClassUID = sopClassUID
        self.seriesInstanceUID = seriesInstanceUID
        self.studyInstanceUID = studyInstanceUID
        self.patientID = patientID
        self.modality = modality
        self.studyDate = studyDate
        self.studyTime = studyTime
        self.seriesDescription = seriesDescription
        self.referencedSeriesInstanceUID = referencedSeriesInstanceUID
    }

    /// The SOP Class UID of DICOM Segmentation Storage.
    public static let segmentationStorageUID = "1.2.840.10008.5.1.4.1.1.66.4"
    /// The SOP Class UID of CT Image Storage.
    public static let ctImageStorageUID = "1.2.840.10008.5.1.4.1.1.2"

    /// Reads the header of a DICOM file. Throws when it is not DICOM or lacks SOPInstanceUID / SeriesInstanceUID.
    public static func read(_ url: URL) throws -> DicomInstanceInfo {
        try read(dataset: DicomDataset(contentsOf: url))
    }

    /// Reads the header of a DICOM file held in memory (e.g. one part of a WADO-RS response).
    public static func read(data: [UInt8]) throws -> DicomInstanceInfo {
        try read(dataset: DicomDataset(bytes: data))
    }

    /// Reads the header of an open dataset.
    public static func read(dataset ds: DicomDataset) throws -> DicomInstanceInfo {
        func s(_ k: String) throws -> String { try ds.string(k) ?? "" }
        let sop = try s("SOPInstanceUID"), series = try s("SeriesInstanceUID")
        guard !sop.isEmpty, !series.isEmpty else {
            throw DicomError("\(ds.origin): not a DICOM instance (no SOPInstanceUID or SeriesInstanceUID)")
        }
        var referenced: String? = nil
        if try ds.itemCount("ReferencedSeriesSequence") > 0 {
            referenced = try ds.string("ReferencedSeriesSequence[0].SeriesInstanceUID").flatMap { $0.isEmpty ? nil : $0 }
        }
        return DicomInstanceInfo(
            sopInstanceUID: sop, sopClassUID: try s("SOPClassUID"), seriesInstanceUID: series,
            studyInstanceUID: try s("StudyInstanceUID"), patientID: try s("PatientID"), modality: try s("Modality"),
            studyDate: try s("StudyDate"), studyTime: try s("StudyTime"), seriesDescription: try s("SeriesDescription"),
            referencedSeriesInstanceUID: referenced)
    }
}
