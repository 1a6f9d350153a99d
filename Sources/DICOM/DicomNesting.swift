import Foundation

/// A pre-scan of DICOM bytes for sequence nesting, before DCMTK parses them: DCMTK's reader recurses once per
/// nested sequence and item and overflows a 1 MiB thread stack at about 625 levels, so a file from a PACS or an
/// upload nesting deeper would end the process. This scanner walks the element headers iteratively (an explicit
/// stack), skipping values, and refuses more than `maxDepth` nested sequences. It judges nesting only: anything
/// else malformed (truncation, bad lengths) it leaves to DCMTK's own errors.
public enum DicomNesting {
    /// Nested sequences allowed: real objects nest a handful (a SEG's functional groups: 3, RT structures: 5).
    public static let maxDepth = 64

    /// Throws a `DicomError` naming `origin` when `bytes` nest sequences deeper than `maxDepth`.
    public static func check(_ bytes: UnsafeRawBufferPointer, origin: String) throws {
        if let depth = deepest(bytes, limit: maxDepth), depth > maxDepth {
            throw DicomError("\(origin): sequences nested deeper than \(maxDepth) levels")
        }
    }

    /// `check` on a file, read through a memory mapping (values are skipped, not read).
    public static func check(fileAt url: URL) throws {
        let data: Data
        do {
            data = try Data(contentsOf: url, options: .alwaysMapped)
        } catch {
            // Unreadable files get DCMTK's own error.
            return
        }
        try data.withUnsafeBytes { try check($0, origin: url.path) }
    }

    private struct Frame {
        /// Offset where a defined-length sequence or item ends; nil: ends at its delimiter.
        var end: Int?
        var isSequence: Bool
        var explicit: Bool
    }

    /// The deepest sequence nesting seen, stopping as soon as it passes `limit`; nil when the bytes are not
    /// recognisably DICOM.
    static func deepest(_ b: UnsafeRawBufferPointer, limit: Int) -> Int? {
        let n = b.count
        func u16(_ at: Int, _ little: Bool) -> Int {
            little ? Int(b[at]) | Int(b[at + 1]) << 8 : Int(b[at]) << 8 | Int(b[at + 1])
        }
        func u32(_ at: Int, _ little: Bool) -> Int {
            little ? Int(b[at]) | Int(b[at + 1]) << 8 | Int(b[at + 2]) << 16 | Int(b[at + 3]) << 24
                : Int(b[at]) << 24 | Int(b[at + 1]) << 16 | Int(b[at + 2]) << 8 | Int(b[at + 3])
        }
        func isUpper(_ at: Int) -> Bool { b[at] >= 0x41 && b[at] <= 0x5A }
        let undefined = 0xFFFF_FFFF
        let longVRs: Set<String> = ["OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT", "SV", "UV"]

        var pos = 0
        var explicit = true
        var little = true
        if n >= 132, b[128] == 0x44, b[129] == 0x49, b[130] == 0x43, b[131] == 0x4D {
            // Part 10: the meta group (explicit little endian) names the dataset's transfer syntax.
            pos = 132
            var syntax = ""
            while pos + 8 <= n, u16(pos, true) == 0x0002 {
                let element = u16(pos + 2, true)
                guard isUpper(pos + 4), isUpper(pos + 5) else { return nil }
                let vr = String(decoding: [b[pos + 4], b[pos + 5]], as: UTF8.self)
                var len: Int, header: Int
                if longVRs.contains(vr) {
                    guard pos + 12 <= n else { return 0 }
                    len = u32(pos + 8, true)
                    header = 12
                } else {
                    len = u16(pos + 6, true)
                    header = 8
                }
                guard len != undefined, pos + header + len <= n else { return 0 }
                if element == 0x0010 {
                    syntax = String(decoding: UnsafeRawBufferPointer(rebasing: b[(pos + header)..<(pos + header + len)]), as: UTF8.self)
                        .trimmingCharacters(in: CharacterSet(charactersIn: "\0 "))
                }
                pos += header + len
            }
            switch syntax {
            case "1.2.840.10008.1.2": explicit = false
            case "1.2.840.10008.1.2.2": little = false
            // Deflated data cannot be walked without inflating it; DCMTK inflates and parses it.
            case "1.2.840.10008.1.2.1.99": return 0
            default: break
            }
        } else if n >= 8 {
            // A bare dataset: explicit when the bytes after the first tag look like a VR.
            explicit = isUpper(4) && isUpper(5)
        }

        var stack = [Frame(end: n, isSequence: false, explicit: explicit)]
        var sequences = 0
        var deepest = 0
        while true {
            while let top = stack.last, let end = top.end, pos >= end {
                if stack.count == 1 { return deepest }
                if top.isSequence { sequences -= 1 }
                stack.removeLast()
            }
            guard pos + 8 <= n, let top = stack.last else { return deepest }
            let group = u16(pos, little), element = u16(pos + 2, little)
            if group == 0xFFFE {
                let len = u32(pos + 4, little)
                pos += 8
                switch element {
                case 0xE000:
                    stack.append(Frame(end: len == undefined ? nil : min(n, pos + len), isSequence: false, explicit: top.explicit))
                case 0xE00D:
                    if !top.isSequence, stack.count > 1 { stack.removeLast() }
                case 0xE0DD:
                    if !top.isSequence, stack.count > 1 { stack.removeLast() }
                    if let t = stack.last, t.isSequence, stack.count > 1 {
                        stack.removeLast()
                        sequences -= 1
                    }
                default: break
                }
                continue
            }
            var len: Int, header: Int
            var vr = ""
            if top.explicit {
                guard isUpper(pos + 4), isUpper(pos + 5) else { return deepest }
                vr = String(decoding: [b[pos + 4], b[pos + 5]], as: UTF8.self)
                if longVRs.contains(vr) {
                    guard pos + 12 <= n else { return deepest }
                    len = u32(pos + 8, little)
                    header = 12
                } else {
                    len = u16(pos + 6, little)
                    header = 8
                }
            } else {
                len = u32(pos + 4, little)
                header = 8
            }
            pos += header
            let pixelData = group == 0x7FE0 && element == 0x0010
            if pixelData && len == undefined {
                // Encapsulated pixel data: fragments (items of defined length) up to the sequence delimiter.
                while pos + 8 <= n, u16(pos, little) == 0xFFFE {
                    let e = u16(pos + 2, little), l = u32(pos + 4, little)
                    pos += 8
                    if e == 0xE0DD { break }
                    guard l != undefined else { return deepest }
                    pos += l
                }
                continue
            }
            let looksLikeItems = pos + 4 <= n && u16(pos, little) == 0xFFFE && u16(pos + 2, little) == 0xE000
            let isSequence = vr == "SQ" || len == undefined || (!top.explicit && len > 0 && looksLikeItems)
            if isSequence {
                sequences += 1
                deepest = max(deepest, sequences)
                if deepest > limit { return deepest }
                // UN of undefined length holds an implicit-VR sequence (PS3.5 6.2.2).
                stack.append(Frame(end: len == undefined ? nil : min(n, pos + len), isSequence: true,
                                   explicit: vr == "UN" ? false : top.explicit))
            } else {
                guard len <= n - pos else { return deepest }
                pos += len
            }
        }
    }
}
