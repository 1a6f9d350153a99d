import CZlib
import Foundation
import Testing
import TestSupport
@testable import ZipArchive

/// Builds zip archives byte by byte, honest or hostile (any field can lie).
struct TestZip {
    struct Entry {
        var name: String
        var data: [UInt8] = []
        /// 0 stored, 8 deflate; other values are written as given (with the data stored).
        var method: UInt16 = 0
        var crc: UInt32?
        var declaredSize: UInt64?
        var declaredCompressed: UInt64?
        var madeBy: UInt16 = 3 << 8 | 20
        var external: UInt32 = 0o100644 << 16
        var flags: UInt16 = 0
        var localName: String?
    }

    var entries: [Entry]
    /// Overrides the end record's entry count.
    var declaredCount: Int?

    /// Raw deflate: zlib's `compress2` output without its 2-byte header and 4-byte Adler-32 trailer.
    static func deflate(_ data: [UInt8]) -> [UInt8] {
        var size = compressBound(uLong(data.count))
        var out = [UInt8](repeating: 0, count: Int(size))
        let status = data.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                compress2(dst.baseAddress, &size, src.baseAddress, uLong(data.count), 9)
            }
        }
        precondition(status == Z_OK)
        return Array(out[2..<(Int(size) - 4)])
    }

    static func crc(_ data: [UInt8]) -> UInt32 {
        UInt32(data.withUnsafeBufferPointer { CZlib.crc32(0, $0.baseAddress, uInt($0.count)) })
    }

    func bytes() -> [UInt8] {
        var out: [UInt8] = []
        var central: [UInt8] = []
        func u16(_ v: UInt16, _ b: inout [UInt8]) { b += [UInt8(v & 0xFF), UInt8(v >> 8)] }
        func u32(_ v: UInt32, _ b: inout [UInt8]) { for i in 0..<4 { b.append(UInt8((v >> (8 * UInt32(i))) & 0xFF)) } }
        for e in entries {
            let payload = e.method == 8 ? Self.deflate(e.data) : e.data
            let crc = e.crc ?? Self.crc(e.data)
            let size = UInt32(e.declaredSize ?? UInt64(e.data.count))
            let compressed = UInt32(e.declaredCompressed ?? UInt64(payload.count))
            let offset = UInt32(out.count)
            let name = Array(e.name.utf8)
            let localName = Array((e.localName ?? e.name).utf8)
            u32(0x0403_4B50, &out); u16(20, &out); u16(e.flags, &out); u16(e.method, &out); u32(0, &out)
            u32(crc, &out); u32(compressed, &out); u32(size, &out); u16(UInt16(localName.count), &out); u16(0, &out)
            out += localName
            out += payload
            u32(0x0201_4B50, &central); u16(e.madeBy, &central); u16(20, &central); u16(e.flags, &central)
            u16(e.method, &central); u32(0, &central); u32(crc, &central); u32(compressed, &central); u32(size, &central)
            u16(UInt16(name.count), &central); u16(0, &central); u16(0, &central); u16(0, &central); u16(0, &central)
            u32(e.external, &central); u32(offset, &central)
            central += name
        }
        let directoryOffset = UInt32(out.count)
        out += central
        let count = UInt16(declaredCount ?? entries.count)
        u32(0x0605_4B50, &out); u16(0, &out); u16(0, &out); u16(count, &out); u16(count, &out)
        u32(UInt32(central.count), &out); u32(directoryOffset, &out); u16(0, &out)
        return out
    }
}

@Suite(.tags(.unit)) struct ZipArchiveTests {
    static func open(_ zip: TestZip, limits: ZipLimits = ZipLimits(), _ tmp: TempDir) throws -> ZipArchive {
        try ZipArchive(url: tmp.write("a.zip", zip.bytes()), limits: limits)
    }

    /// The refusal message of opening (and extracting) `zip`, "" when it passes.
    static func refusal(_ zip: TestZip, limits: ZipLimits = ZipLimits()) -> String {
        let tmp = TempDir()
        do {
            let archive = try open(zip, limits: limits, tmp)
            let root = tmp.url.appendingPathComponent("out")
            try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
            try archive.extract(into: root)
            return ""
        } catch let e as ZipError {
            return e.message
        } catch {
            return "unexpected error \(error)"
        }
    }

    static let text = Array("{\"hello\": \"bundle\"}\n".utf8)
    /// 1.5 MiB that deflate shrinks only a little.
    static let noisy: [UInt8] = {
        var g = SplitMix(seed: 7)
        return (0..<(3 << 19)).map { _ in UInt8(truncatingIfNeeded: g.next() % 64) }
    }()

    @Test func extract_storedDeflatedAndFolderMembers_writesTheirBytes() throws {
        let tmp = TempDir()
        let archive = try Self.open(TestZip(entries: [
            .init(name: "b/"), .init(name: "b/configs/x.json", data: Self.text),
            .init(name: "b/models/model.pt", data: Self.noisy, method: 8), .init(name: "b/empty/"),
        ]), tmp)
        #expect(archive.members.map(\.path) == ["b", "b/configs/x.json", "b/models/model.pt", "b/empty"])
        let root = tmp.url.appendingPathComponent("out")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        try archive.extract(into: root)
        #expect(Array(try Data(contentsOf: root.appendingPathComponent("b/configs/x.json"))) == Self.text)
        #expect(Array(try Data(contentsOf: root.appendingPathComponent("b/models/model.pt"))) == Self.noisy)
        var isDir: ObjCBool = false
        #expect(FileManager.default.fileExists(atPath: root.appendingPathComponent("b/empty").path, isDirectory: &isDir) && isDir.boolValue)
    }

    @Test(arguments: [
        ("../evil.txt", "'..' component"), ("a/../../evil.txt", "'..' component"), ("/etc/evil", "absolute path"),
        ("C:/evil", "drive-letter"), ("a\\..\\evil", "backslashes"), ("a/./b", "'.' component"), ("a//b", "empty path component"),
        ("a/\u{1}b", "control characters"),
    ])
    func open_nameLeavingTheDestination_isRefusedSayingWhy(name: String, reason: String) {
        let message = Self.refusal(TestZip(entries: [.init(name: "ok.txt", data: Self.text), .init(name: name, data: Self.text)]))
        #expect(message.contains(reason), "\(message)")
    }

    @Test func open_symbolicLinkOrDevice_isRefused() {
        let link = Self.refusal(TestZip(entries: [.init(name: "b/link", data: Array("/etc/passwd".utf8), external: 0o120777 << 16)]))
        #expect(link.contains("b/link: symbolic links are not allowed"), "\(link)")
        let fifo = Self.refusal(TestZip(entries: [.init(name: "b/pipe", external: 0o010644 << 16)]))
        #expect(fifo.contains("special files"), "\(fifo)")
    }

    @Test func open_highlyCompressedMember_isRefusedBeforeInflating() {
        let message = Self.refusal(TestZip(entries: [.init(name: "zeros.bin", data: [UInt8](repeating: 0, count: 8 << 20), method: 8)]))
        #expect(message.contains("zeros.bin: compression ratio"), "\(message)")
        #expect(message.contains("exceeds the 100:1 allowed"))
    }

    @Test func extract_memberInflatingPastItsDeclaredSize_isStopped() {
        // Declared 1000 bytes (under the ratio check's floor), inflates to 2 MiB.
        let message = Self.refusal(TestZip(entries: [
            .init(name: "liar.bin", data: [UInt8](repeating: 0, count: 2 << 20), method: 8, crc: 0, declaredSize: 1000),
        ]))
        #expect(message.contains("liar.bin: inflates past its declared 1000 bytes"), "\(message)")
    }

    @Test func open_totalSizeOverTheLimit_isRefused() {
        var limits = ZipLimits()
        limits.maxTotalBytes = 30
        let message = Self.refusal(TestZip(entries: [.init(name: "a", data: Self.text), .init(name: "b", data: Self.text)]), limits: limits)
        #expect(message.contains("inflates to more than the 30 bytes allowed"), "\(message)")
    }

    @Test func open_truncatedArchive_isRefused() throws {
        let whole = TestZip(entries: [.init(name: "b/model.pt", data: Self.noisy, method: 8)]).bytes()
        for cut in [whole.count / 2, whole.count - 1, 10] {
            let tmp = TempDir()
            let url = tmp.write("cut.zip", Array(whole.prefix(cut)))
            let error = #expect(throws: ZipError.self) { try ZipArchive(url: url) }
            let message = error?.message ?? ""
            #expect(message.contains("truncated") || message.contains("too short"), "\(cut): \(message)")
        }
    }

    @Test func extract_badCRC_isRefused() {
        let message = Self.refusal(TestZip(entries: [.init(name: "x.json", data: Self.text, crc: 0x1234_5678)]))
        #expect(message.contains("x.json: CRC-32 mismatch"), "\(message)")
        let deflated = Self.refusal(TestZip(entries: [.init(name: "m.pt", data: Self.noisy, method: 8, crc: 0x1234_5678)]))
        #expect(deflated.contains("m.pt: CRC-32 mismatch"), "\(deflated)")
    }

    @Test func extract_corruptDeflateStream_isRefused() throws {
        var bytes = TestZip(entries: [.init(name: "m.pt", data: Self.noisy, method: 8)]).bytes()
        // Damage the compressed data (after the 30-byte local header and the 4-byte name).
        for i in 40..<200 { bytes[i] ^= 0x5A }
        let tmp = TempDir()
        let archive = try ZipArchive(url: tmp.write("bad.zip", bytes))
        let root = tmp.url.appendingPathComponent("out")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        let error = #expect(throws: ZipError.self) { try archive.extract(into: root) }
        #expect(error?.message.hasPrefix("m.pt: ") == true, "\(String(describing: error))")
    }

    @Test func open_tooManyEntries_isRefusedBeforeReadingThem() {
        var limits = ZipLimits()
        limits.maxEntries = 3
        let entries = (0..<4).map { TestZip.Entry(name: "f\($0)", data: Self.text) }
        #expect(Self.refusal(TestZip(entries: entries), limits: limits).contains("4 entries, more than the 3 allowed"))
        // An end record that claims more entries than its central directory can hold.
        let lying = Self.refusal(TestZip(entries: entries, declaredCount: 5000))
        #expect(lying.contains("claims 5000 entries"), "\(lying)")
        let many = Self.refusal(TestZip(entries: entries, declaredCount: 60000))
        #expect(many.contains("60000 entries, more than the 10000 allowed"), "\(many)")
    }

    @Test func open_duplicateNamesAndFileFolderClashes_areRefused() {
        let twice = Self.refusal(TestZip(entries: [.init(name: "a", data: Self.text), .init(name: "a", data: Self.text)]))
        #expect(twice.contains("a is listed twice"), "\(twice)")
        let clash = Self.refusal(TestZip(entries: [.init(name: "a", data: Self.text), .init(name: "a/b", data: Self.text)]))
        #expect(clash.contains("a/b: a is a file in the archive, not a folder"), "\(clash)")
    }

    @Test func open_overlappingMembersAndMismatchedLocalNames_areRefused() {
        // The first member's declared data runs over the second one (the overlapping-files zip bomb).
        let secondLength = 30 + 1 + Self.text.count
        let overlap = Self.refusal(TestZip(entries: [
            .init(name: "a", data: Self.text, declaredSize: UInt64(Self.text.count + secondLength),
                  declaredCompressed: UInt64(Self.text.count + secondLength)),
            .init(name: "b", data: Self.text),
        ]))
        #expect(overlap.contains("a and b overlap"), "\(overlap)")
        let renamed = Self.refusal(TestZip(entries: [.init(name: "safe.txt", data: Self.text, localName: "../evil.txt")]))
        #expect(renamed.contains("safe.txt: the local header names another file"), "\(renamed)")
    }

    @Test func open_encryptedOrUnknownMethod_isRefused() {
        #expect(Self.refusal(TestZip(entries: [.init(name: "s", data: Self.text, flags: 1)])).contains("s: encrypted"))
        #expect(Self.refusal(TestZip(entries: [.init(name: "z", data: Self.text, method: 12)])).contains("compression method 12"))
    }

    @Test func open_notAZip_saysSo() throws {
        let tmp = TempDir()
        let error = #expect(throws: ZipError.self) { try ZipArchive(url: tmp.write("x.zip", Array(repeating: 7, count: 100))) }
        #expect(error?.message == "not a zip archive")
    }

    /// Seeded random damage (overwritten bytes, cut tails) to an honest archive: every outcome is a clean
    /// extraction or a `ZipError`, never a trap or another error, and nothing is written outside the destination.
    @Test func openAndExtract_randomlyDamagedArchives_succeedOrThrowZipError() throws {
        let small = Array(Self.noisy.prefix(20_000))
        let whole = TestZip(entries: [
            .init(name: "b/"), .init(name: "b/configs/x.json", data: Self.text),
            .init(name: "b/models/m.pt", data: small, method: 8), .init(name: "b/y.json", data: Self.text, method: 8),
        ]).bytes()
        var g = SplitMix(seed: 19)
        var refused = 0
        for _ in 0..<300 {
            var bytes = whole
            for _ in 0...(g.next() % 4) {
                bytes[Int(g.next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: g.next())
            }
            if g.next() % 8 == 0 { bytes.removeLast(Int(g.next() % UInt64(bytes.count))) }
            let tmp = TempDir()
            let root = tmp.url.appendingPathComponent("out")
            try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
            do {
                try ZipArchive(url: tmp.write("f.zip", bytes)).extract(into: root)
            } catch is ZipError {
                refused += 1
            }
            #expect(Set(try FileManager.default.contentsOfDirectory(atPath: tmp.url.path)) == ["f.zip", "out"])
        }
        #expect(refused > 100)
    }
}
