import Foundation
import Testing
@testable import HTTPServer

private let monaiBoundary = "----------lImIt_of_THE_fIle_eW_$"

/// MONAI Label's client encoding (`client.py` `encode_multipart_formdata`): fixed boundary, CRLF.
private func monaiBody(fields: [(String, String)], files: [(String, String, [UInt8])]) -> [UInt8] {
    var out: [UInt8] = []
    for (k, v) in fields {
        out += Array("--\(monaiBoundary)\r\nContent-Disposition: form-data; name=\"\(k)\"\r\n\r\n\(v)\r\n".utf8)
    }
    for (k, name, data) in files {
        out += Array("--\(monaiBoundary)\r\nContent-Disposition: form-data; name=\"\(k)\"; filename=\"\(name)\"\r\nContent-Type: application/octet-stream\r\n\r\n".utf8)
        out += data + [13, 10]
    }
    out += Array("--\(monaiBoundary)--\r\n".utf8)
    return out
}

private func parseAll(_ body: [UInt8], boundary: String, step: Int) -> (parts: [(MultipartPartHead, [UInt8])], error: String?) {
    guard var parser = MultipartParser(boundary: boundary) else { return ([], "bad boundary") }
    var parts: [(MultipartPartHead, [UInt8])] = []
    var current: (MultipartPartHead, [UInt8])?
    var start = 0
    var available = 0
    while true {
        available = min(body.count, available + step)
        let isFinal = available == body.count
        while true {
            let (action, consumed) = body.withUnsafeBytes { parser.next(UnsafeRawBufferPointer(rebasing: $0[start..<available]), isFinal: isFinal) }
            let base = start
            start += consumed
            switch action {
            case .needMore:
                if consumed > 0 { continue }
            case .partHead(let h): current = (h, []); continue
            case .partData(let r): current?.1 += body[(base + r.lowerBound)..<(base + r.upperBound)]; continue
            case .partEnd:
                if let c = current { parts.append(c) }
                current = nil
                continue
            case .end: return (parts, nil)
            case .error(let e): return (parts, e)
            }
            break
        }
        if isFinal { return (parts, "ended without close delimiter") }
    }
}

@Suite(.tags(.unit)) struct MultipartTests {
    @Test func monaiClientBoundaryWithDollar_isParsed_atEverySplit() {
        let data: [UInt8] = (0..<3000).map { UInt8($0 % 251) } + Array("\r\n--\(monaiBoundary.dropLast())".utf8) + [13, 10, 45]
        let body = monaiBody(fields: [("params", #"{"label_tag":"final"}"#)], files: [("file", "/home/u/ct 01.nii.gz", data)])
        for step in [1, 7, 64, 100_000] {
            let (parts, error) = parseAll(body, boundary: monaiBoundary, step: step)
            #expect(error == nil, "step \(step)")
            #expect(parts.count == 2)
            #expect(parts.first?.0.name == "params")
            #expect(parts.first?.0.filename == nil)
            #expect(parts.first.map { String(decoding: $0.1, as: UTF8.self) } == #"{"label_tag":"final"}"#)
            #expect(parts.last?.0.filename == "/home/u/ct 01.nii.gz")
            #expect(parts.last?.0.contentType == "application/octet-stream")
            #expect(parts.last?.1 == data)
        }
    }

    @Test func boundaryFromContentType_acceptsQuotedAndDollar() {
        #expect(MultipartParser.boundary(fromContentType: "multipart/form-data; boundary=\(monaiBoundary)") == monaiBoundary)
        #expect(MultipartParser.boundary(fromContentType: "multipart/form-data; boundary=\"a b\"; charset=x") == "a b")
        #expect(MultipartParser.boundary(fromContentType: "multipart/form-data") == nil)
    }

    @Test func windowsPathFilename_isKeptVerbatim_escapedQuoteUnescaped() {
        let body = Array("--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"C:\\data\\ct.nii.gz\"\r\n\r\nx\r\n--b\r\nContent-Disposition: form-data; name=\"f2\"; filename=\"a\\\"b.nii\"\r\n\r\ny\r\n--b--".utf8)
        let (parts, error) = parseAll(body, boundary: "b", step: 1000)
        #expect(error == nil)
        #expect(parts.map(\.0.filename) == ["C:\\data\\ct.nii.gz", "a\"b.nii"])
    }

    @Test func filenameStar_wins() {
        let body = Array("--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x\"; filename*=utf-8''%C3%A9t%C3%A9.nii.gz\r\n\r\nx\r\n--b--\r\n".utf8)
        #expect(parseAll(body, boundary: "b", step: 5).parts.first?.0.filename == "été.nii.gz")
    }

    @Test func preambleAndEpilogue_areIgnored() {
        let body = Array("junk\r\n--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--b--\r\ntrailing junk".utf8)
        let (parts, error) = parseAll(body, boundary: "b", step: 3)
        #expect(error == nil)
        #expect(parts.map { String(decoding: $0.1, as: UTF8.self) } == ["1"])
    }

    @Test func truncatedBody_isAnError() {
        let body = Array("--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1234".utf8)
        #expect(parseAll(body, boundary: "b", step: 2).error != nil)
    }

    @Test func partWithoutName_isAnError() {
        let body = Array("--b\r\nContent-Disposition: form-data\r\n\r\n1\r\n--b--".utf8)
        #expect(parseAll(body, boundary: "b", step: 100).error != nil)
    }

    @Test func formReader_spooledBody_spillsFilesToTempFiles_andCleansUp() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mp-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let big: [UInt8] = (0..<700_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let body = monaiBody(fields: [("params", "{}")], files: [("file", "C:\\scans\\ct.nii.gz", big), ("label", "l.nrrd", [1, 2, 3])])
        let bodyPath = dir + "/body"
        _ = FileManager.default.createFile(atPath: bodyPath, contents: Data(body))
        let context = HTTPRequestContext(temporaryDirectory: dir)
        var headers = HTTPHeaders()
        headers.add("Content-Type", "multipart/form-data; boundary=\(monaiBoundary)")
        let req = HTTPRequest(method: .post, target: "/x", path: "/x", headers: headers, body: .file(path: bodyPath, length: body.count), context: context)
        let form = try req.form()
        #expect(form.value("params") == "{}")
        let file = try #require(form.file("file"))
        #expect(file.filename == "C:\\scans\\ct.nii.gz")
        #expect(file.size == big.count)
        #expect(FileManager.default.contents(atPath: file.path).map(Array.init) == big)
        #expect(form.file("label")?.size == 3)
        context.cleanUp()
        #expect(!FileManager.default.fileExists(atPath: file.path))
    }

    @Test func urlencodedForm_isDecoded() throws {
        var headers = HTTPHeaders()
        headers.add("Content-Type", "application/x-www-form-urlencoded")
        let req = HTTPRequest(method: .put, target: "/", path: "/", headers: headers, body: .bytes(Array("info=%7B%22a%22%3A1%7D&x=a+b".utf8)))
        let form = try req.form()
        #expect(form.value("info") == #"{"a":1}"#)
        #expect(form.value("x") == "a b")
    }

    @Test func responseBuilder_matchesRequestsToolbeltLayout() throws {
        let dir = FileManager.default.temporaryDirectory.path
        let path = dir + "/mpresp-\(UUID().uuidString).nii.gz"
        _ = FileManager.default.createFile(atPath: path, contents: Data([9, 8, 7]))
        defer { try? FileManager.default.removeItem(atPath: path) }
        var b = MultipartResponseBuilder()
        #expect(b.boundary.count == 32)
        #expect(b.boundary.allSatisfy { $0.isHexDigit })
        b.addField(name: "params", value: Array(#"{"a": 1}"#.utf8), contentType: "application/json")
        b.addFile(name: "image", filename: "tmpab.nii.gz", path: path)
        let r = b.response()
        #expect(r.headers["Content-Type"] == "multipart/form-data; boundary=\(b.boundary)")
        guard case .segments(let segs) = r.body else {
            Issue.record("expected segments")
            return
        }
        var bytes: [UInt8] = []
        for s in segs {
            switch s {
            case .bytes(let x): bytes += x
            case .file(let p, _): bytes += Array(FileManager.default.contents(atPath: p) ?? Data())
            }
        }
        let expected = "--\(b.boundary)\r\nContent-Disposition: form-data; name=\"params\"\r\nContent-Type: application/json\r\n\r\n{\"a\": 1}\r\n"
            + "--\(b.boundary)\r\nContent-Disposition: form-data; name=\"image\"; filename=\"tmpab.nii.gz\"\r\nContent-Type: application/octet-stream\r\n\r\n\u{09}\u{08}\u{07}\r\n"
            + "--\(b.boundary)--\r\n"
        #expect(bytes == Array(expected.utf8))
        // And our own parser reads it back.
        let (parts, error) = parseAll(bytes, boundary: b.boundary, step: 4)
        #expect(error == nil)
        #expect(parts.map(\.0.name) == ["params", "image"])
    }
}
