import Foundation
import Testing
@testable import MONAILabel
@testable import MONAILabelCore

@Test(.tags(.unit)) func parse_keepsKeyOrderAndIntFloatDistinction() throws {
    let v = try JSONValue.parse(#"{"b": 1, "a": 2.5, "c": [true, null, "x\n\u00e9"]}"#)
    #expect(v.objectValue?.keys == ["b", "a", "c"])
    #expect(v["b"] == .int(1))
    #expect(v["a"] == .double(2.5))
    #expect(v["c"]?.arrayValue?[2] == .string("x\né"))
}

@Test(.tags(.unit)) func serialise_compactAndPythonFormats() throws {
    let v: JSONValue = ["label_names": ["spleen": 1], "total": 3.82, "e": [1, 2]]
    #expect(v.compactString() == #"{"label_names":{"spleen":1},"total":3.82,"e":[1,2]}"#)
    #expect(String(decoding: v.pythonDumpsBytes(), as: UTF8.self)
        == #"{"label_names": {"spleen": 1}, "total": 3.82, "e": [1, 2]}"#)
}

@Test(.tags(.unit)) func serialise_prettyMatchesUpstreamDatastoreFile() throws {
    let url = Fixtures.shared.appendingPathComponent("reference/upstream-studies/datastore_v2.json")
    let data = try #require(FileManager.default.contents(atPath: url.path), "missing fixture \(url.path)")
    let v = try JSONValue.parse(Array(data))
    #expect(v.prettyBytes(indent: 2) == Array(data))
}

@Test(.tags(.unit)) func formatDouble_followsPythonRepr() {
    let cases: [(Double, String)] = [
        (1.0, "1.0"), (0.58, "0.58"), (1e-05, "1e-05"), (0.0001, "0.0001"), (1e16, "1e+16"),
        (1e15, "1000000000000000.0"), (123456789.125, "123456789.125"), (-2.5e-07, "-2.5e-07"), (0, "0.0"),
        (1.5e300, "1.5e+300"), (0.1 + 0.2, "0.30000000000000004"),
    ]
    for (d, s) in cases { #expect(JSONValue.formatDouble(d) == s, "\(d)") }
}

@Test(.tags(.unit)) func parse_rejectsMalformedAndDeepInput() {
    for bad in ["{bad json", "[1,]", "01", "\"\u{01}\"", "{\"a\" 1}", "", "[1] 2"] {
        #expect(throws: JSONParseError.self) { try JSONValue.parse(bad) }
    }
    let deep = String(repeating: "[", count: 10000) + String(repeating: "]", count: 10000)
    #expect(throws: JSONParseError.self) { try JSONValue.parse(deep) }
}

@Test(.tags(.unit)) func orderedMap_setExistingKeyKeepsPosition() {
    var m: JSONObject = ["a": 1, "b": 2]
    m["a"] = 3
    m["c"] = 4
    m["b"] = nil
    #expect(m.keys == ["a", "c"])
    #expect(m["a"] == .int(3))
}
