import CDicom
import Foundation

/// Errors of reading, converting or writing DICOM.
public struct DicomError: Error, CustomStringConvertible, Sendable, Equatable {
    /// What went wrong, naming the file or attribute concerned.
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Transfer syntaxes that the writers can produce (all lossless).
public enum DicomTransferSyntax: Sendable, CaseIterable {
    /// Explicit VR Little Endian, 1.2.840.10008.1.2.1.
    case explicitLittle
    /// Implicit VR Little Endian, 1.2.840.10008.1.2.
    case implicitLittle
    /// RLE Lossless, 1.2.840.10008.1.2.5.
    case rle
    /// JPEG-LS Lossless, 1.2.840.10008.1.2.4.80.
    case jpegLSLossless
    /// JPEG Lossless, first-order prediction (process 14, selection value 1), 1.2.840.10008.1.2.4.70.
    case jpegLossless

    var c: mld_transfer_syntax {
        switch self {
        case .explicitLittle: return MLD_XFER_EXPLICIT_LITTLE
        case .implicitLittle: return MLD_XFER_IMPLICIT_LITTLE
        case .rle: return MLD_XFER_RLE
        case .jpegLSLossless: return MLD_XFER_JPEG_LS_LOSSLESS
        case .jpegLossless: return MLD_XFER_JPEG_LOSSLESS
        }
    }
}

/// Runs a shim call, turning MLD_ERROR into a `DicomError` (prefixed by `context` when given) and returning
/// whether the attribute was found.
@discardableResult
func check(_ context: String? = nil, _ body: (UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> mld_status) throws -> Bool {
    var err: UnsafeMutablePointer<CChar>? = nil
    let status = body(&err)
    defer { mld_string_free(err) }
    switch status {
    case MLD_OK: return true
    case MLD_NOT_FOUND: return false
    default:
        let message = err.map { String(cString: $0) } ?? "DICOM operation failed"
        throw DicomError(context.map { "\($0): \(message)" } ?? message)
    }
}

/// A new globally unique DICOM UID.
public func makeDicomUID() throws -> String {
    var uid: UnsafeMutablePointer<CChar>? = nil
    try check { mld_generate_uid(&uid, $0) }
    defer { mld_string_free(uid) }
    return uid.map { String(cString: $0) } ?? ""
}

/// One DICOM dataset (a Part-10 file read from disk or memory, or one being built), owned by exactly this object.
/// Not thread-safe: use one from one task at a time.
///
/// Attributes are addressed by DCMTK paths: a keyword (`"PatientID"`), a tag (`"(0010,0020)"`), or items of
/// sequences by index (`"ReferencedSeriesSequence[0].SeriesInstanceUID"`).
public final class DicomDataset: @unchecked Sendable {
    let handle: OpaquePointer
    /// Where it was read from, for messages.
    public let origin: String
    /// Bytes of the file or buffer it was read from (nil for one built here): an upper bound on its encapsulated
    /// pixel data, checked against what the slice declares before anything is decoded.
    public let encodedSize: Int?

    /// Reads a DICOM file (Part-10 with its meta header, or a bare dataset).
    /// Files nesting sequences deeper than `DicomNesting.maxDepth` are refused before DCMTK reads them.
    public init(contentsOf url: URL) throws {
        try DicomNesting.check(fileAt: url)
        var h: OpaquePointer? = nil
        try check { mld_file_open(url.path, &h, $0) }
        guard let h else { throw DicomError("\(url.path): not a readable DICOM file") }
        handle = h
        origin = url.path
        encodedSize = (try? FileManager.default.attributesOfItem(atPath: url.path))?[.size] as? Int
    }

    /// Parses a DICOM file held in memory.
    public init(bytes: [UInt8], origin: String = "DICOM data") throws {
        try bytes.withUnsafeBytes { try DicomNesting.check($0, origin: origin) }
        var h: OpaquePointer? = nil
        try check(origin) { err in bytes.withUnsafeBufferPointer { mld_file_parse($0.baseAddress, $0.count, &h, err) } }
        guard let h else { throw DicomError("\(origin): not a readable DICOM file") }
        handle = h
        self.origin = origin
        encodedSize = bytes.count
    }

    /// An empty dataset to fill and save.
    public init() throws {
        var h: OpaquePointer? = nil
        try check { mld_file_create(&h, $0) }
        guard let h else { throw DicomError("cannot create a DICOM dataset") }
        handle = h
        origin = "new dataset"
        encodedSize = nil
    }

    deinit { mld_file_free(handle) }

    /// The attribute's value (multiple values joined by `\`), trimmed of DICOM padding; nil when absent.
    public func string(_ path: String) throws -> String? {
        var value: UnsafeMutablePointer<CChar>? = nil
        guard try check(origin, { mld_file_get_string(handle, path, &value, $0) }) else { return nil }
        defer { mld_string_free(value) }
        return value.map { String(cString: $0).trimmingCharacters(in: .whitespaces.union(CharacterSet(charactersIn: "\0"))) }
    }

    /// The attribute's values as numbers; nil when absent or empty, an error when a value is not a number.
    public func numbers(_ path: String) throws -> [Double]? {
        guard let s = try string(path) else { return nil }
        return try Self.numbers(s, path: path, origin: origin)
    }

    /// `text` (DICOM values joined by backslashes) as numbers; nil when empty. The error quotes at most an
    /// excerpt: a value may be megabytes long.
    static func numbers(_ text: String, path: String, origin: String) throws -> [Double]? {
        guard !text.isEmpty else { return nil }
        return try text.split(separator: "\\", omittingEmptySubsequences: false).map { part in
            guard let v = Double(part.trimmingCharacters(in: .whitespaces)), v.isFinite else {
                let quoted = text.count <= 80 ? text : String(text.prefix(80)) + "... (\(text.utf8.count) bytes)"
                throw DicomError("\(origin): \(path) holds \"\(quoted)\", not numbers")
            }
            return v
        }
    }

    /// The value at `path` inside each item of the sequence at `sequence`, read in one pass (linear in the
    /// items, where `string("Seq[i].path")` for each i is quadratic); nil for an item that lacks it.
    public func itemStrings(_ sequence: String, _ path: String) throws -> [String?] {
        var values: UnsafeMutablePointer<CChar>? = nil
        var n = 0
        guard try check(origin, { mld_file_get_item_strings(handle, sequence, path, &values, &n, $0) }) else { return [] }
        defer { mld_string_free(values) }
        guard n > 0, let values else { return [] }
        let parts = String(cString: values).split(separator: "\u{1E}", omittingEmptySubsequences: false)
        return parts.map { $0 == "\u{1F}" ? nil : String($0).trimmingCharacters(in: .whitespaces.union(CharacterSet(charactersIn: "\0"))) }
    }

    /// `itemStrings` as numbers (nil for an item without the value or with an empty one).
    public func itemNumbers(_ sequence: String, _ path: String) throws -> [[Double]?] {
        try itemStrings(sequence, path).map { s in try s.flatMap { try Self.numbers($0, path: "\(sequence)[].\(path)", origin: origin) } }
    }

    /// The attribute's first value as an integer; nil when absent.
    public func int(_ path: String) throws -> Int? {
        guard let v = try numbers(path)?.first else { return nil }
        guard v == v.rounded(), abs(v) < 1e15 else { throw DicomError("\(origin): \(path) is \(v), not an integer") }
        return Int(v)
    }

    /// The number of items of a sequence; 0 when absent.
    public func itemCount(_ path: String) throws -> Int {
        var n = 0
        guard try check(origin, { mld_file_count_items(handle, path, &n, $0) }) else { return 0 }
        return n
    }

    /// Sets an attribute from its DICOM string form, creating sequence items on its path.
    public func set(_ path: String, _ value: String) throws {
        try check(origin) { mld_file_put_string(handle, path, value, $0) }
    }

    /// The transfer syntax UID the dataset was read in.
    public func transferSyntaxUID() throws -> String {
        var uid: UnsafeMutablePointer<CChar>? = nil
        try check(origin) { mld_file_transfer_syntax(handle, &uid, $0) }
        defer { mld_string_free(uid) }
        return uid.map { String(cString: $0) } ?? ""
    }

    /// The native (decompressed, machine byte order) pixel bytes, owned by this dataset: valid while it lives and
    /// until its pixel data changes. Nil when there is no pixel data.
    func pixelBytes() throws -> UnsafeRawBufferPointer? {
        var data: UnsafePointer<UInt8>? = nil
        var length = 0
        guard try check(origin, { mld_file_pixels(handle, &data, &length, $0) }) else { return nil }
        return UnsafeRawBufferPointer(start: data, count: length)
    }

    /// Frees the pixel data (compressed and decompressed) once it has been copied out; `pixelBytes()` then
    /// finds none.
    func dropPixels() { mld_file_drop_pixels(handle) }

    /// Calls `body` with `pixelBytes()`.
    func withPixelBytes<R>(_ body: (UnsafeRawBufferPointer?) throws -> R) throws -> R {
        try withExtendedLifetime(self) { try body(pixelBytes()) }
    }

    /// Stores 16-bit uncompressed pixel data.
    func setPixels(_ values: [Int16]) throws {
        try check(origin) { err in values.withUnsafeBytes { mld_file_put_pixels(handle, $0.baseAddress, $0.count, 16, err) } }
    }

    /// Stores raw pixel bytes as OB (8-bit samples, or packed 1-bit SEG frames).
    func setPixelBytes(_ bytes: [UInt8]) throws {
        try check(origin) { err in bytes.withUnsafeBytes { mld_file_put_pixels(handle, $0.baseAddress, $0.count, 8, err) } }
    }

    /// Stores uncompressed pixel data given as little-endian bytes of `bitsAllocated` (8 or 16) bit samples, as
    /// WADO-RS frames arrive (a dataset rebuilt from metadata and frames).
    public func setPixelData(littleEndian bytes: [UInt8], bitsAllocated: Int) throws {
        guard bitsAllocated == 8 || bitsAllocated == 16 else {
            throw DicomError("\(origin): \(bitsAllocated)-bit pixel data cannot be stored (8 or 16 bits)")
        }
        // 16-bit samples go in as host-order words; every platform Swift runs this on is little endian.
        try check(origin) { err in
            bytes.withUnsafeBytes { mld_file_put_pixels(handle, $0.baseAddress, $0.count, Int32(bitsAllocated), err) }
        }
    }

    /// Writes a Part-10 file in `transferSyntax`.
    public func save(to url: URL, transferSyntax: DicomTransferSyntax = .explicitLittle) throws {
        try check { mld_file_save(handle, url.path, transferSyntax.c, $0) }
    }
}
