import Foundation
import Testing
@testable import TorchCheckpoint

/// Pickles that would run code under `pickle.load` must be refused by name, and nothing may run.
@Suite(.tags(.unit)) struct MaliciousPickleTests {
    /// A pickle that, under Python's pickle, would call `module.name("touch <canary>")`.
    private func commandPickle(_ module: String, _ name: String, canary: URL, stackGlobal: Bool = false) -> PickleBytes {
        var p = PickleBytes(protocol: stackGlobal ? 4 : 2)
        if stackGlobal {
            p.shortString(module)
            p.shortString(name)
            p.op(0x93)
        } else {
            p.global(module, name)
        }
        p.string("touch \(canary.path)")
        p.op(0x85)
        p.reduce()
        p.stop()
        return p
    }

    @Test(arguments: [
        ("os", "system", false), ("posix", "system", false), ("builtins", "eval", false), ("builtins", "exec", false),
        ("subprocess", "Popen", true), ("subprocess", "check_output", true), ("os", "system", true),
        ("__builtin__", "eval", false), ("torch", "load", false), ("collections", "namedtuple", false),
    ])
    func readCheckpoint_maliciousGlobal_isRefusedByNameAndNotExecuted(module: String, name: String, stackGlobal: Bool) throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let canary = dir.file("executed")
        let file = dir.file("evil.pt")
        try writeCheckpoint(pickle: commandPickle(module, name, canary: canary, stackGlobal: stackGlobal), to: file)
        let message = expectFailure(.forbiddenGlobal, reading: file)
        #expect(message.contains("\(module).\(name)"))
        #expect(!FileManager.default.fileExists(atPath: canary.path))
    }

    @Test func readCheckpoint_maliciousGlobalAfterValidTensors_isRefused() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        var p = PickleBytes()
        p.op(0x7D)
        p.mark()
        p.string("weight")
        p.tensor("FloatStorage", key: "0", numel: 2, size: [2], stride: [1])
        p.string("payload")
        p.global("os", "system")
        p.string("true")
        p.op(0x85)
        p.reduce()
        p.op(0x75)
        p.stop()
        let file = dir.file("evil.pt")
        try writeCheckpoint(pickle: p, storages: [("0", floatBytes([1, 2]))], to: file)
        #expect(expectFailure(.forbiddenGlobal, reading: file).contains("os.system"))
    }

    @Test func readCheckpoint_instAndObjOpcodes_areRefused() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        var inst = PickleBytes()
        inst.mark()
        inst.string("id")
        inst.op(0x69, Array("os\nsystem\n".utf8))
        inst.stop()
        let instFile = dir.file("inst.pt")
        try writeCheckpoint(pickle: inst, to: instFile)
        #expect(expectFailure(.unsupportedOpcode, reading: instFile).contains("INST"))

        var obj = PickleBytes()
        obj.mark()
        obj.global("collections", "OrderedDict")
        obj.op(0x6F)
        obj.stop()
        let objFile = dir.file("obj.pt")
        try writeCheckpoint(pickle: obj, to: objFile)
        #expect(expectFailure(.unsupportedOpcode, reading: objFile).contains("OBJ"))
    }

    @Test func readCheckpoint_reduceOnNonCallable_isRefused() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        // A storage class is allowed as a name in persistent ids, but never as something to call.
        var storageCall = PickleBytes()
        storageCall.global("torch", "FloatStorage")
        storageCall.op(0x29)
        storageCall.reduce()
        storageCall.stop()
        let file = dir.file("call-storage.pt")
        try writeCheckpoint(pickle: storageCall, to: file)
        #expect(expectFailure(.forbiddenGlobal, reading: file).contains("torch.FloatStorage"))

        var stringCall = PickleBytes()
        stringCall.string("os.system")
        stringCall.op(0x29)
        stringCall.reduce()
        stringCall.stop()
        let file2 = dir.file("call-string.pt")
        try writeCheckpoint(pickle: stringCall, to: file2)
        expectFailure(.forbiddenGlobal, reading: file2)
    }

    @Test func readCheckpoint_buildOnNonDict_andForeignPersistentId_areRefused() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        var build = PickleBytes()
        build.op(0x5D)
        build.op(0x7D)
        build.op(0x62)
        build.stop()
        let buildFile = dir.file("build.pt")
        try writeCheckpoint(pickle: build, to: buildFile)
        expectFailure(.forbiddenGlobal, reading: buildFile)

        var pid = PickleBytes()
        pid.mark()
        pid.string("module")
        pid.string("os")
        pid.tuple()
        pid.op(0x51)
        pid.stop()
        let pidFile = dir.file("pid.pt")
        try writeCheckpoint(pickle: pid, to: pidFile)
        expectFailure(.forbiddenGlobal, reading: pidFile)
    }

    @Test func readCheckpoint_torchScriptArchive_isRefusedWithHint() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        var p = PickleBytes()
        p.global("__torch__.monai.networks.nets.unet", "UNet")
        p.op(0x29)
        p.op(0x81)
        p.stop()
        let file = dir.file("model.ts")
        try writeCheckpoint(pickle: p, to: file)
        #expect(expectFailure(.forbiddenGlobal, reading: file).contains("TorchScript"))
    }
}
