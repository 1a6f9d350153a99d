import Foundation

/// What compressed (encapsulated) pixel data can possibly decode to, by transfer syntax, so that a slice whose
/// header declares more pixels than its data can hold is refused before DCMTK decodes it. DCMTK fills what a short
/// stream lacks with zeros: a 1 KB RLE slice declaring 65535 x 65535 pixels would decode to 8.6 GB of nothing.
///
/// Each bound is the densest coding the syntax allows (no real encoder reaches it):
/// - RLE: a 2-byte run packet repeats one byte 128 times, so the decoded bytes are at most 64 times the data.
/// - JPEG lossless (processes 14 and 14 SV1): every sample's difference takes a Huffman code of at least 1 bit,
///   so at most 8 samples per byte.
/// - JPEG DCT (baseline, extended, progressive): every 8 x 8 block of 64 samples takes at least the 1-bit Huffman
///   code of its DC difference, so at most 512 samples per byte.
/// - JPEG-LS: a run-mode bit can stand for 2^15 samples (the largest run length of its J table), so at most
///   262,144 samples per byte. A weak bound: `MONAI_LABEL_MAX_VOXELS`, checked on the series before decoding,
///   holds what it admits.
/// Syntaxes that DCMTK's free edition cannot decode (JPEG 2000, HTJ2K, MPEG, HEVC, and any other encapsulated
/// syntax) are refused outright, before DCMTK is asked: they have no decoder here.
enum EncapsulatedPixels {
    /// How a syntax's data bounds its decoded size.
    enum Bound: Equatable {
        /// Not encapsulated: the pixel data is stored as it is (DCMTK reads deflated datasets while parsing).
        case native
        /// Decoded bytes are at most this many times the encoded bytes.
        case bytesPerByte(Int, name: String)
        /// Decoded samples are at most this many times the encoded bytes.
        case samplesPerByte(Int, name: String)
        /// No decoder here.
        case undecodable(name: String)
    }

    static let native: Set<String> = ["", "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2",
                                      "1.2.840.10008.1.2.1.99"]
    static let jpegLossless: Set<String> = ["1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70"]
    /// Baseline, extended, and the retired DCT processes DCMTK still decodes (spectral selection, progressive).
    static let jpegDCT: Set<String> = ["1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.53",
                                       "1.2.840.10008.1.2.4.55"]
    static let jpegLS: Set<String> = ["1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"]
    static let rle = "1.2.840.10008.1.2.5"

    static func bound(transferSyntax uid: String) -> Bound {
        if native.contains(uid) { return .native }
        if uid == rle { return .bytesPerByte(64, name: "RLE") }
        if jpegLossless.contains(uid) { return .samplesPerByte(8, name: "JPEG lossless") }
        if jpegDCT.contains(uid) { return .samplesPerByte(512, name: "JPEG") }
        if jpegLS.contains(uid) { return .samplesPerByte(262_144, name: "JPEG-LS") }
        if uid.hasPrefix("1.2.840.10008.1.2.4.9") || uid.hasPrefix("1.2.840.10008.1.2.4.20") {
            return .undecodable(name: "JPEG 2000")
        }
        return .undecodable(name: "transfer syntax \(uid.prefix(64))")
    }

    /// Refuses pixel data declaring `samples` samples (`decoded` bytes once decoded) whose encapsulated data (at
    /// most `ds.encodedSize` bytes) cannot hold them, or whose syntax has no decoder here; native data passes.
    /// Callers bound `samples` by `MONAI_LABEL_MAX_VOXELS` first, so the products below cannot overflow.
    static func check(_ ds: DicomDataset, samples: Int, decoded: Int) throws {
        switch bound(transferSyntax: try ds.transferSyntaxUID()) {
        case .native:
            return
        case .undecodable(let name):
            throw DicomError("\(ds.origin): pixel data in \(name) cannot be decoded here (supported: uncompressed, RLE, "
                + "JPEG, JPEG lossless and JPEG-LS)")
        case .bytesPerByte(let ratio, let name):
            guard let size = ds.encodedSize, decoded > size * ratio + headerSlack else { return }
            throw DicomError("\(ds.origin): \(name) data of \(size) bytes cannot hold \(decoded) bytes of pixels "
                + "(at most \(ratio) times its size)")
        case .samplesPerByte(let ratio, let name):
            guard let size = ds.encodedSize, samples > size * ratio + headerSlack else { return }
            throw DicomError("\(ds.origin): \(name) data of \(size) bytes cannot hold \(decoded) bytes of pixels "
                + "(\(samples) samples; \(name) codes at most \(ratio) samples per byte)")
        }
    }

    /// Allowance for a tiny image whose headers outweigh its pixels.
    static let headerSlack = 4096
}
