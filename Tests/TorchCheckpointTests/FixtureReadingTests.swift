import Foundation
import Testing
@testable import TorchCheckpoint

/// One tensor as Python (zipfile + CPython's pickle machine + numpy, see
/// `scripts/checkpoint_expectations.py`) saw it.
struct ExpectedTensor {
    var name: String
    var dtype: String
    var shape: [Int]
    var sha256: String
    var byteCount: Int

    init(_ row: Any) throws {
        guard let row = row as? [Any], row.count >= 4, let name = row[0] as? String, let dtype = row[1] as? String,
              let shape = row[2] as? [Int], let sha = row[3] as? String else {
            throw FixtureMissing(path: "well-formed tensor row in expectations")
        }
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.sha256 = sha
        self.byteCount = row.count > 4 ? (row[4] as? Int ?? -1) : -1
    }

    func check(_ actual: (name: String, tensor: StoredTensor), _ file: String) {
        #expect(actual.name == name, "\(file): key order")
        #expect(actual.tensor.dtype.rawValue == dtype, "\(file) \(name): dtype")
        #expect(actual.tensor.shape == shape, "\(file) \(name): shape")
        if byteCount >= 0 { #expect(actual.tensor.bytes.count == byteCount, "\(file) \(name): byte count") }
        #expect(SHA256.hex(actual.tensor.bytes) == sha256, "\(file) \(name): sha256 of values")
    }
}

struct FixtureExpectations {
    var wrappedIn: String?
    var extra: [String: Any]
    var tensors: [ExpectedTensor]
    var metadata: [(module: String, version: Int?)]

    static func all() throws -> [String: FixtureExpectations] {
        let data = try Data(contentsOf: try Fixtures.resource("fixture-expectations.json"))
        guard let root = try JSONSerialization.jsonObject(with: data) as? [String: [String: Any]] else {
            throw FixtureMissing(path: "fixture-expectations.json (not an object)")
        }
        return try root.mapValues { entry in
            FixtureExpectations(
                wrappedIn: entry["wrapped_in"] as? String,
                extra: entry["extra"] as? [String: Any] ?? [:],
                tensors: try (entry["tensors"] as? [Any] ?? []).map(ExpectedTensor.init),
                metadata: (entry["metadata"] as? [[Any]] ?? []).map { ($0.first as? String ?? "?", $0.last as? Int) })
        }
    }
}

@Suite(.tags(.unit)) struct FixtureReadingTests {
    @Test func fixtures_everyCheckpointHasIndependentExpectations() throws {
        let files = try Fixtures.monaiCheckpoints().map(\.lastPathComponent)
        #expect(files.count == 10, "expected 5 networks x (.small.pt, .small.ckpt.pt) in \(Fixtures.monai.path)")
        #expect(Set(files) == Set(try FixtureExpectations.all().keys), "regenerate with scripts/checkpoint_expectations.py")
    }

    @Test func readCheckpoint_monaiFixtures_everyKeyShapeAndValueMatchesPython() throws {
        let expectations = try FixtureExpectations.all()
        let files = try Fixtures.monaiCheckpoints()
        #expect(!files.isEmpty, "no MONAI fixtures found in \(Fixtures.monai.path)")
        for url in files {
            let file = url.lastPathComponent
            guard let expected = expectations[file] else {
                Issue.record("no expectations for \(file)")
                continue
            }
            let value = try Checkpoint.read(contentsOf: url)
            let stateDict = try Checkpoint.stateDict(in: value)
            #expect(stateDict.count == expected.tensors.count, "\(file): number of tensors")
            for (actual, want) in zip(stateDict, expected.tensors) { want.check(actual, file) }

            guard case .dict(let top) = value else {
                Issue.record("\(file): top level is not a dict")
                continue
            }
            let sdDict: PickleDict?
            if let key = expected.wrappedIn {
                #expect(!top.ordered, "\(file): the wrapper is a plain dict")
                #expect(top.entries.count == 1 + expected.extra.count)
                for (k, v) in expected.extra {
                    if let n = v as? Int { #expect(top[k] == .int(n), "\(file): \(k)") }
                }
                if case .dict(let inner)? = top[key] { sdDict = inner } else { sdDict = nil }
            } else {
                sdDict = top
            }
            #expect(sdDict?.ordered == true, "\(file): state dict is an OrderedDict")
            // `_metadata` arrives through BUILD; keep it as Python saw it.
            if case .dict(let meta)? = sdDict?.metadata {
                #expect(meta.entries.count == expected.metadata.count, "\(file): _metadata entries")
                for (entry, want) in zip(meta.entries, expected.metadata) {
                    #expect(entry.key == .string(want.module))
                    #expect(entry.value["version"] == want.version.map { .int($0) })
                }
            } else {
                Issue.record("\(file): _metadata missing")
            }
        }
    }

    @Test func stateDict_ptAndCkptOfOneNetwork_holdIdenticalTensorsInOrder() throws {
        let files = try Fixtures.monaiCheckpoints().filter { $0.lastPathComponent.hasSuffix(".small.pt") }
        #expect(files.count == 5)
        for pt in files {
            let ckpt = pt.deletingPathExtension().appendingPathExtension("ckpt.pt")
            let bare = try Checkpoint.stateDict(from: pt)
            let wrapped = try Checkpoint.stateDict(from: ckpt, key: "model")
            #expect(bare.map(\.name) == wrapped.map(\.name), "\(pt.lastPathComponent)")
            #expect(bare.map(\.tensor) == wrapped.map(\.tensor), "\(pt.lastPathComponent)")
            #expect(try Checkpoint.read(contentsOf: ckpt)["epoch"] == .int(7))
        }
    }

    @Test func stateDict_smallFixtures_ranksAgreeWithManifestFullConfigs() throws {
        let data = try Data(contentsOf: Fixtures.monai.appendingPathComponent("manifest.json"))
        guard let manifest = try JSONSerialization.jsonObject(with: data) as? [String: Any],
              let networks = manifest["networks"] as? [String: [String: Any]] else {
            throw FixtureMissing(path: "fixtures/monai/manifest.json networks")
        }
        #expect(networks.count == 5)
        for (name, network) in networks {
            let full = (network["full_state_dict"] as? [[Any]] ?? []).compactMap { row -> (String, [Int])? in
                guard let key = row.first as? String, let shape = row.last as? [Int] else { return nil }
                return (key, shape)
            }
            let fullRanks = Dictionary(full.map { ($0.0, $0.1.count) }, uniquingKeysWith: { a, _ in a })
            let small = try Checkpoint.stateDict(from: Fixtures.monai.appendingPathComponent("\(name).small.pt"))
            let shared = small.filter { fullRanks[$0.name] != nil }
            // The small configs drop some levels, but most keys are common to both.
            #expect(shared.count * 2 > small.count, "\(name): few keys in common with the full config")
            for entry in shared {
                #expect(entry.tensor.shape.count == fullRanks[entry.name], "\(name) \(entry.name): rank")
            }
        }
    }

    @Test func readCheckpoint_torchWrittenViews_matchPyTorchContiguousValues() throws {
        let data = try Data(contentsOf: try Fixtures.resource("torch-views.json"))
        guard let root = try JSONSerialization.jsonObject(with: data) as? [String: Any], let rows = root["tensors"] as? [Any] else {
            throw FixtureMissing(path: "torch-views.json")
        }
        let expected = try rows.map(ExpectedTensor.init)
        let value = try Checkpoint.read(contentsOf: try Fixtures.resource("torch-views.pt"))
        let tensors = try Checkpoint.stateDict(in: value, key: "tensors")
        #expect(tensors.count == expected.count)
        for (actual, want) in zip(tensors, expected) { want.check(actual, "torch-views.pt") }
        #expect(value["epoch"] == .int(7))
        #expect(value["big"] == .int(1 << 40))
        #expect(value["negative"] == .int(-3))
        #expect(value["name"] == .string("spleen"))
        #expect(value["flags"] == .list([.bool(true), .bool(false), .none]))
        #expect(value["shape"] == .tuple([1, 2, 3, 4, 5].map { .int($0) }))
    }

    @Test func sha256_knownVectors_match() {
        #expect(SHA256.hex([]) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(SHA256.hex(Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(SHA256.hex(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8))
            == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        // Several blocks; value from Python's hashlib.
        #expect(SHA256.hex((0..<1000).map { UInt8($0 % 251) }) == "4e4c294b331f7a2099a379bec34b9f9fc03dc46ab465d998f4d683da53487e6d")
    }
}
