import Foundation
import Imaging

/// Writing a volume as a series of single-frame DICOM images.
public enum DicomSeriesWriter {
    /// Writes `volume` (3D, one channel) as a CT Image Storage series, one file per slice named `slice_NNNN.dcm`
    /// (k-th along the volume's third axis), so that `DicomSeries.load` gives back the same affine and values.
    ///
    /// Geometry: the RAS affine becomes LPS; its first two columns give ImageOrientationPatient and PixelSpacing
    /// (column i of the volume is the image column, j the row), slice k is at origin + k * third column (an
    /// oblique or sheared affine is kept exactly; the first two columns must be orthogonal).
    ///
    /// Values are stored as signed 16-bit integers with RescaleSlope / RescaleIntercept: integer volumes that fit
    /// after subtracting -1024 are stored exactly with intercept -1024 (the CT convention), other integer volumes
    /// that fit int16 with intercept 0; anything else is scaled linearly over the int16 range (lossy, to within
    /// (max - min) / 65535). The SOP class is CT Image Storage whatever `modality` says. Study and series UIDs are
    /// generated unless given; `patientName` defaults to `patientID`; slices are encoded in parallel.
    ///
    /// - Returns: the written files, in slice order.
    @discardableResult
    public static func writeCT(
        volume: Volume, to directory: URL, patientID: String, patientName: String? = nil,
        studyInstanceUID: String? = nil, seriesInstanceUID: String? = nil, seriesDescription: String = "",
        seriesNumber: Int = 1, studyDate: String = "20240101", studyTime: String = "120000", modality: String = "CT",
        transferSyntax: DicomTransferSyntax = .explicitLittle
    ) throws -> [URL] {
        guard volume.spatialShape.count == 3, volume.channels == 1 else {
            throw DicomError("a DICOM series holds a 3D single-channel volume, got shape \(volume.shape)")
        }
        let (cols, rows, n) = (volume.spatialShape[0], volume.spatialShape[1], volume.spatialShape[2])
        guard cols <= Int(UInt16.max), rows <= Int(UInt16.max), cols > 0, rows > 0, n > 0 else {
            throw DicomError("slices of \(cols)x\(rows) cannot be DICOM images")
        }
        let a = volume.affine
        guard a.isFinite else { throw DicomError("the volume's affine is not finite") }
        // RAS to LPS.
        let ci: Vec3 = (-a[0, 0], -a[1, 0], a[2, 0]), cj: Vec3 = (-a[0, 1], -a[1, 1], a[2, 1])
        let ck: Vec3 = (-a[0, 2], -a[1, 2], a[2, 2]), origin: Vec3 = (-a[0, 3], -a[1, 3], a[2, 3])
        let si = norm(ci), sj = norm(cj)
        guard si > 0, sj > 0, abs(dot(ci, cj)) < 1e-6 * si * sj else {
            throw DicomError("the volume's first two axes are not orthogonal: no DICOM image plane")
        }
        let rowDir = scale(ci, 1 / si), colDir = scale(cj, 1 / sj)
        let normal = cross(rowDir, colDir)
        let thickness = abs(dot(ck, normal))
        guard thickness > 0 else { throw DicomError("the volume's slices do not advance along their normal") }
        let iop = [rowDir.0, rowDir.1, rowDir.2, colDir.0, colDir.1, colDir.2].map(decimalString).joined(separator: "\\")

        let values = volume.data.asFloat()
        let (slope, intercept) = try storage(values)
        let study = try studyInstanceUID ?? makeDicomUID()
        let series = try seriesInstanceUID ?? makeDicomUID()
        let frameOfReference = try makeDicomUID()
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)

        let urls = (0..<n).map { directory.appendingPathComponent(String(format: "slice_%04d.dcm", $0)) }
        try concurrentSlices(n) { k in
            let ds = try DicomDataset()
            let ipp = add(origin, scale(ck, Double(k)))
            let fields: [(String, String)] = [
                ("SpecificCharacterSet", "ISO_IR 100"),
                ("ImageType", "ORIGINAL\\PRIMARY\\AXIAL"),
                ("SOPClassUID", DicomInstanceInfo.ctImageStorageUID),
                ("SOPInstanceUID", try makeDicomUID()),
                ("StudyDate", studyDate), ("StudyTime", studyTime),
                ("ContentDate", studyDate), ("ContentTime", studyTime),
                ("AccessionNumber", ""), ("Modality", modality), ("Laterality", ""), ("PatientPosition", "HFS"), ("Manufacturer", "MONAI Consortium"),
                ("ReferringPhysicianName", ""), ("SeriesDescription", seriesDescription),
                ("PatientName", patientName ?? patientID), ("PatientID", patientID),
                ("PatientBirthDate", ""), ("PatientSex", ""),
                ("SliceThickness", decimalString(thickness)), ("KVP", ""),
                ("StudyInstanceUID", study), ("SeriesInstanceUID", series),
                ("StudyID", "1"), ("SeriesNumber", String(seriesNumber)), ("AcquisitionNumber", "1"),
                ("InstanceNumber", String(k + 1)),
                ("ImagePositionPatient", [ipp.0, ipp.1, ipp.2].map(decimalString).joined(separator: "\\")),
                ("ImageOrientationPatient", iop),
                ("FrameOfReferenceUID", frameOfReference), ("PositionReferenceIndicator", ""),
                ("SliceLocation", decimalString(dot(ipp, normal))),
                ("SamplesPerPixel", "1"), ("PhotometricInterpretation", "MONOCHROME2"),
                ("Rows", String(rows)), ("Columns", String(cols)),
                ("PixelSpacing", "\(decimalString(sj))\\\(decimalString(si))"),
                ("BitsAllocated", "16"), ("BitsStored", "16"), ("HighBit", "15"), ("PixelRepresentation", "1"),
                ("RescaleIntercept", decimalString(intercept)), ("RescaleSlope", decimalString(slope)),
                ("RescaleType", "HU"),
            ]
            for (key, value) in fields { try ds.set(key, value) }
            var pixels = [Int16](repeating: 0, count: rows * cols)
            for j in 0..<rows {
                for i in 0..<cols {
                    let v = (Double(values[(i * rows + j) * n + k]) - intercept) / slope
                    pixels[j * cols + i] = Int16(max(-32768, min(32767, v.rounded())))
                }
            }
            try ds.setPixels(pixels)
            try ds.save(to: urls[k], transferSyntax: transferSyntax)
        }
        return urls
    }

    /// RescaleSlope and RescaleIntercept that store `values` in int16.
    static func storage(_ values: [Float]) throws -> (slope: Double, intercept: Double) {
        guard let lo = values.min(), let hi = values.max(), lo.isFinite, hi.isFinite else {
            throw DicomError("the volume holds no finite values")
        }
        let integral = values.allSatisfy { $0 == $0.rounded() }
        if integral && Double(lo) + 1024 >= -32768 && Double(hi) + 1024 <= 32767 { return (1, -1024) }
        if integral && lo >= -32768 && hi <= 32767 { return (1, 0) }
        let slope = hi > lo ? (Double(hi) - Double(lo)) / 65535 : 1
        return (slope, Double(lo) + 32768 * slope)
    }
}
