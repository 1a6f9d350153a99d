import Foundation
import Imaging
import Testing
@testable import DICOM

/// Sequence nesting is bounded before DCMTK's recursive reader sees the bytes (issue 23).
@Suite(.tags(.unit))
struct DicomNestingTests {
    /// A bare explicit VR little endian dataset: PatientID, then a private sequence nested `depth` levels.
    static func nested(depth: Int, explicit: Bool = true, definedLengths: Bool = false) -> [UInt8] {
        let patient: [UInt8] = explicit ? [0x10, 0x00, 0x20, 0x00, 0x4C, 0x4F, 4, 0] + Array("P1  ".utf8)
            : [0x10, 0x00, 0x20, 0x00, 4, 0, 0, 0] + Array("P1  ".utf8)
        func le32(_ n: Int) -> [UInt8] { [UInt8(n & 0xff), UInt8((n >> 8) & 0xff), UInt8((n >> 16) & 0xff), UInt8((n >> 24) & 0xff)] }
        func sequence(_ content: [UInt8]) -> [UInt8] {
            let tag: [UInt8] = [0x09, 0x00, 0x10, 0x10]
            if definedLengths {
                let item = [0xFE, 0xFF, 0x00, 0xE0] + le32(content.count) + content
                return tag + (explicit ? [0x53, 0x51, 0, 0] : []) + le32(item.count) + item
            }
            let item = [0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF] + content + [0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0]
            return tag + (explicit ? [0x53, 0x51, 0, 0] : []) + [0xFF, 0xFF, 0xFF, 0xFF] + item + [0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]
        }
        var inner: [UInt8] = []
        for _ in 0..<depth { inner = sequence(inner) }
        return patient + inner
    }

    @Test func deepSequences_areRefusedBeforeDCMTKReadsThem() throws {
        for (explicit, defined) in [(true, false), (false, false), (true, true), (false, true)] {
            let bytes = Self.nested(depth: 3000, explicit: explicit, definedLengths: defined)
            #expect(throws: DicomError("upload: sequences nested deeper than 64 levels")) {
                try DicomDataset(bytes: bytes, origin: "upload")
            }
        }
    }

    @Test func nestingWithinTheLimit_isRead() throws {
        for explicit in [true, false] {
            let ds = try DicomDataset(bytes: Self.nested(depth: 64, explicit: explicit), origin: "x")
            #expect(try ds.string("PatientID") == "P1")
        }
    }

    @Test func realInstances_passTheScan_asFilesAndBytes() throws {
        let tmp = try TempDir()
        let volume = Volume(spatialShape: [4, 4, 2], data: .int16([Int16](repeating: 7, count: 32)), affine: .identity)
        for syntax in [DicomTransferSyntax.explicitLittle, .implicitLittle, .rle] {
            let files = try DicomSeriesWriter.writeCT(volume: volume, to: tmp.sub("s-\(syntax)"), patientID: "P", transferSyntax: syntax)
            let bytes = Array(try Data(contentsOf: files[0]))
            #expect(bytes.withUnsafeBytes { DicomNesting.deepest($0, limit: 64) } == 0)
            #expect(try DicomDataset(contentsOf: files[0]).string("PatientID") == "P")
        }
    }

    @Test func deepSequenceInAFile_isRefusedNamingIt() throws {
        let tmp = try TempDir()
        let url = tmp.url.appendingPathComponent("deep.dcm")
        try Data(Self.nested(depth: 100)).write(to: url)
        #expect(throws: DicomError("\(url.path): sequences nested deeper than 64 levels")) { try DicomDataset(contentsOf: url) }
    }
}
