import HTTPCore
import Testing

/// The building blocks the server and the client share, tested once here.
@Suite(.tags(.unit)) struct HTTPCoreTests {
    private func sizeLine(_ s: String, max: Int = 64) -> ChunkedCoding.SizeLine {
        Array(s.utf8).withUnsafeBytes { ChunkedCoding.parseSizeLine($0, maxLineLength: max) }
    }

    @Test func chunkSizeLine_hexWithExtensions_isTheSizeAndLineLength_badLinesAreInvalid() {
        #expect(sizeLine("1a\r\nrest") == .size(26, lineLength: 4))
        #expect(sizeLine("4 ;ext=1\r\n") == .size(4, lineLength: 10))
        #expect(sizeLine("0\r\n") == .size(0, lineLength: 3))
        #expect(sizeLine("1a") == .needMore)
        #expect(sizeLine("1a\n") == .invalid("Bare LF in chunk size line"))
        #expect(sizeLine("zz\r\n") == .invalid("Invalid chunk size"))
        #expect(sizeLine(String(repeating: "f", count: 16) + "\r\n") == .invalid("Chunk size too large"))
        #expect(sizeLine("4;\u{01}\r\n") == .invalid("Invalid chunk extension"))
        #expect(sizeLine(String(repeating: "1", count: 70), max: 64) == .invalid("Chunk size line too long"))
    }

    @Test func chunkFraming_sizeLineDataCRLF_emptyDataIsNoChunk() {
        #expect(ChunkedCoding.chunk(Array("Wiki".utf8)) == Array("4\r\nWiki\r\n".utf8))
        #expect(ChunkedCoding.chunk([]) == [])
        #expect(ChunkedCoding.lastChunk == Array("0\r\n\r\n".utf8))
    }

    @Test func headerParameters_quotedSemicolonsAndAnyCaseName() {
        let v = "multipart/related; type=\"application/dicom; x\"; Boundary=\"abc def\""
        #expect(HeaderParameters.parse(v).value == "multipart/related")
        #expect(HeaderParameters.parameter("boundary", in: v) == "abc def")
        #expect(HeaderParameters.parameter("type", in: v) == "application/dicom; x")
        #expect(HeaderParameters.parameter("charset", in: v) == nil)
    }

    @Test func headers_lookupIgnoresCase_replaceDropsEveryVariant_equalityKeepsOrder() {
        var h: HTTPHeaders = ["Content-Type": "a", "X-A": "1"]
        h.add("content-type", "b")
        #expect(h["CONTENT-TYPE"] == "a")
        #expect(h.values("Content-Type") == ["a", "b"])
        h.replace("Content-Type", "c")
        #expect(h.values("content-type") == ["c"])
        #expect(h == HTTPHeaders([("X-A", "1"), ("Content-Type", "c")]))
        #expect(h != HTTPHeaders([("Content-Type", "c"), ("X-A", "1")]))
    }

    @Test func multipartBuilder_partsThenCloseDelimiter_readBackByTheMessageParser() throws {
        var b = MultipartBuilder(boundary: "bb")
        b.addPart(headers: [(name: "Content-Type", value: "application/dicom")], body: .bytes([1, 2]))
        b.addPart(headers: [], body: .bytes(Array("x--bb".utf8)))
        let body = try #require(b.bodyBytes)
        #expect(body == Array("--bb\r\nContent-Type: application/dicom\r\n\r\n".utf8) + [1, 2]
            + Array("\r\n--bb\r\n\r\nx--bb\r\n--bb--\r\n".utf8))
        let parts = try MultipartMessage.parse(body, boundary: "bb")
        #expect(parts.map(\.body) == [[1, 2], Array("x--bb".utf8)])
        #expect(parts[0].contentType == "application/dicom")

        var withFile = MultipartBuilder(boundary: "bb")
        withFile.addPart(headers: [], body: .file(path: "/nonexistent", deleteAfter: false))
        #expect(withFile.bodyBytes == nil)
    }
}
