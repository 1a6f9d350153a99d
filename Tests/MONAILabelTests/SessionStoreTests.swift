import Foundation
import TestSupport
import Testing
@testable import MONAILabel
@testable import MONAILabelCore

@Test(.tags(.unit)) func create_singleFile_keepsBaseNameAndCapsExpiry() throws {
    let tmp = TempDir()
    let store = try SessionStore(root: tmp.url.appendingPathComponent("sessions"), globalExpiry: 3600)
    let f = tmp.write("up/x", [1, 2, 3])
    let info = try store.create(files: [UploadedFile(path: f, fileName: "/home/me/upl_02.nii.gz")], expiry: 600)
    #expect(info.image == info.path + "/upl_02.nii.gz")
    #expect(info.expiry == 600)
    #expect(try Data(contentsOf: URL(fileURLWithPath: info.image)) == Data([1, 2, 3]))
    let long = try store.create(files: [UploadedFile(path: f, fileName: "a.nii.gz")], expiry: 99999)
    #expect(long.expiry == 3600)
    #expect(info.name.count == 36)
    #expect(Array(info.name)[14] == "1", "a version-1 UUID like upstream's uuid1()")
}

@Test(.tags(.unit)) func create_severalFiles_makesAFolder() throws {
    let tmp = TempDir()
    let store = try SessionStore(root: tmp.url.appendingPathComponent("sessions"))
    let a = tmp.write("a", [1]), b = tmp.write("b", [2])
    let info = try store.create(files: [UploadedFile(path: a, fileName: "upl_00.nii.gz"), UploadedFile(path: b, fileName: "upl_01.nii.gz")])
    #expect(FileOps.isDirectory(info.image))
    #expect(FileOps.listDirectory(info.image).sorted() == ["upl_00.nii.gz", "upl_01.nii.gz"])
}

@Test(.tags(.unit)) func get_updateTS_removeAndUnknownIds() throws {
    let tmp = TempDir()
    let store = try SessionStore(root: tmp.url.appendingPathComponent("sessions"))
    let f = tmp.write("a", [1])
    let info = try store.create(files: [UploadedFile(path: f, fileName: "a.nii.gz")])
    #expect(store.get(info.name) == info)
    #expect(store.get("nope") == nil)
    #expect(store.get("../sessions") == nil)
    #expect(store.remove("../../etc") == nil)
    #expect(store.remove(info.name) == info)
    #expect(store.get(info.name) == nil)
    #expect(!FileManager.default.fileExists(atPath: info.path))
}

@Test(.tags(.unit)) func purge_removesExpiredSessions() throws {
    let tmp = TempDir()
    let root = tmp.url.appendingPathComponent("sessions")
    let store = try SessionStore(root: root)
    let f = tmp.write("a", [1])
    let info = try store.create(files: [UploadedFile(path: f, fileName: "a.nii.gz")])
    var old = info
    old.lastAccessTS -= 7200
    try FileOps.atomicWrite(old.json.compactBytes(), to: URL(fileURLWithPath: info.path).appendingPathComponent("meta.info"))
    #expect(store.purgeExpired() == 1)
    #expect(store.get(info.name) == nil)
}

@Test(.tags(.unit)) func uncompress_tarArchive_unpacksIntoFolder() throws {
    let tmp = TempDir()
    _ = tmp.write("src/one.nii.gz", [1])
    _ = tmp.write("src/two.nii.gz", [2])
    let tar = try runProcess(URL(fileURLWithPath: "/usr/bin/tar"),
                             ["-czf", tmp.url.appendingPathComponent("a.tar.gz").path, "-C", tmp.url.appendingPathComponent("src").path, "."])
    try #require(tar.status == 0, "\(tar.output)")
    let store = try SessionStore(root: tmp.url.appendingPathComponent("sessions"))
    let info = try store.create(
        files: [UploadedFile(path: tmp.url.appendingPathComponent("a.tar.gz"), fileName: "a.tar.gz")], uncompress: true)
    #expect(FileOps.listDirectory(info.image).sorted() == ["one.nii.gz", "two.nii.gz"])
}

@Test(.tags(.unit)) func uncompress_garbage_isRefusedAndLeavesNothing() throws {
    let tmp = TempDir()
    let store = try SessionStore(root: tmp.url.appendingPathComponent("sessions"))
    let f = tmp.write("bad.zip", Array("not a zip".utf8))
    #expect(throws: MONAILabelError.self) {
        try store.create(files: [UploadedFile(path: f, fileName: "bad.zip")], uncompress: true)
    }
    #expect(FileOps.listDirectory(store.root.path).isEmpty)
}

@Test(.tags(.unit)) func isExpired_hugeExpiryFromDisk_doesNotOverflow() {
    let forever = SessionInfo(name: "s", path: "/x", image: "i", now: 1_000, expiry: Int.max)
    #expect(!forever.isExpired(now: 2_000))
    let negative = SessionInfo(name: "s", path: "/x", image: "i", now: -10, expiry: Int.min)
    #expect(negative.isExpired(now: 0))
}
