import Foundation
import Testing
@testable import MONAILabel
@testable import MONAILabelCore

private func copyUpstreamStudies(to dir: URL) throws -> URL {
    let src = Fixtures.shared.appendingPathComponent("reference/upstream-studies")
    let dst = dir.appendingPathComponent("studies")
    try FileManager.default.copyItem(at: src, to: dst)
    // Fixture files are read-only in shared/; the store needs to write.
    let e = FileManager.default.enumerator(atPath: dst.path)
    while let p = e?.nextObject() as? String {
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: dst.appendingPathComponent(p).path)
    }
    try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: dst.path)
    return dst
}

@Test(.tags(.unit)) func open_upstreamStudies_everyImageAndLabelIntactAndFileUntouched() throws {
    let tmp = TempDir()
    let root = try copyUpstreamStudies(to: tmp.url)
    let before = try Data(contentsOf: root.appendingPathComponent("datastore_v2.json"))
    let ds = try LocalDatastore(root: root)
    #expect(ds.listImages() == ["spleen_05", "spleen_01", "spleen_04", "spleen_00", "spleen_03", "spleen_02", "uploaded_case"])
    let s = ds.status()
    #expect(s.total == 7)
    #expect(s.completed == 3)
    #expect(s.labelTags["final"] == 3)
    #expect(s.labelTags["original"] == 1)
    #expect(s.labelTags["review"] == 1)
    #expect(ds.labelInfo("spleen_04", tag: "original")?["model"] == .string("segmentation_spleen"))
    #expect(ds.imageInfo("spleen_05")?["strategy"]?["last"]?["client_id"] == .null)
    let after = try Data(contentsOf: root.appendingPathComponent("datastore_v2.json"))
    #expect(before == after, "opening an upstream store must not rewrite it")
    #expect(ds.labelURI("spleen_00", tag: "final") == root.appendingPathComponent("labels/final/spleen_00.nii.gz").path)
    #expect(ds.datalist().count == 3)
}

@Test(.tags(.unit)) func write_documentFollowsUpstreamSchema() throws {
    let tmp = TempDir()
    let root = tmp.url.appendingPathComponent("s")
    try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
    _ = tmp.write("s/img_b.nii.gz", [1, 2, 3])
    let ds = try LocalDatastore(root: root)
    let upload = tmp.write("upl/anything.nii.gz", [9, 9])
    try ds.saveLabel(imageID: "img_b", file: upload, fileName: "/home/u/x.nii.gz", tag: "final", info: ["label_info": [["name": "spleen", "idx": 1]]])
    let json = try JSONValue.parse(Array(try Data(contentsOf: root.appendingPathComponent("datastore_v2.json"))))
    // Upstream's pydantic model: name, description, images_dir, labels_dir, objects{id:{image:{ext,info},labels:{tag:{ext,info}}}}
    #expect(json.objectValue?.keys == ["name", "description", "images_dir", "labels_dir", "objects"])
    let obj = try #require(json["objects"]?["img_b"])
    #expect(obj.objectValue?.keys == ["image", "labels"])
    #expect(obj["image"]?["ext"] == .string(".nii.gz"))
    #expect(obj["image"]?["info"]?["name"] == .string("img_b.nii.gz"))
    #expect(obj["image"]?["info"]?["ts"]?.intValue != nil)
    let label = try #require(obj["labels"]?["final"])
    #expect(label["ext"] == .string(".nii.gz"))
    #expect(label["info"]?.objectValue?.keys == ["label_info", "ts", "name"])
    #expect(try Data(contentsOf: root.appendingPathComponent("labels/final/img_b.nii.gz")) == Data([9, 9]))
}

@Test(.tags(.unit)) func addImage_thenSaveLabelRemoveLabelRemoveImage() throws {
    let tmp = TempDir()
    let root = tmp.url.appendingPathComponent("s")
    try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
    let ds = try LocalDatastore(root: root)
    let f = tmp.write("up/upl_01.nii.gz", [1, 2, 3, 4])
    try ds.addImage(id: "upload_a", file: f, fileName: "upl_01.nii.gz", info: ["client_id": "curl", "user": "admin"])
    #expect(ds.imageInfo("upload_a")?.keys == ["client_id", "user", "ts", "name"])
    #expect(ds.unlabeledImages() == ["upload_a"])
    try ds.saveLabel(imageID: "upload_a", file: f, fileName: "l.nii.gz", tag: "my_tag", info: [:])
    #expect(ds.status().labelTags["my_tag"] == 1)
    try ds.updateLabelInfo("upload_a", tag: "my_tag", info: ["approved": "yes"])
    #expect(ds.labelInfo("upload_a", tag: "my_tag")?["approved"] == .string("yes"))
    try ds.removeLabel("upload_a", tag: "my_tag")
    #expect(ds.status().labelTags["my_tag"] == nil)
    #expect(!FileManager.default.fileExists(atPath: root.appendingPathComponent("labels/my_tag/upload_a.nii.gz").path))
    try ds.removeImage("upload_a")
    #expect(ds.status().total == 0)
    #expect(!FileManager.default.fileExists(atPath: root.appendingPathComponent("upload_a.nii.gz").path))
}

/// What `/info/`'s cache asks from the HTTP server's event loop: the status as last counted, gone as soon as anything
/// changes (so a stale count is never given), and back once `status()` has counted again.
@Test(.tags(.unit)) func statusWithoutWaiting_nilAfterAChange_untilStatusCountsAgain() throws {
    let tmp = TempDir()
    let root = tmp.url.appendingPathComponent("s")
    try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
    let ds = try LocalDatastore(root: root)
    let f = tmp.write("up/a.nii.gz", [1, 2, 3, 4])
    try ds.addImage(id: "a", file: f, fileName: "a.nii.gz", info: [:])
    #expect(ds.statusWithoutWaiting() == nil)
    let before = ds.status()
    #expect(ds.statusWithoutWaiting() == before)
    try ds.saveLabel(imageID: "a", file: f, fileName: "a.nii.gz", tag: "final", info: [:])
    #expect(ds.statusWithoutWaiting() == nil)
    let after = ds.status()
    #expect(after.completed == 1 && before.completed == 0)
    #expect(ds.statusWithoutWaiting() == after)
}

@Test(.tags(.unit)) func mutations_unknownImage_throwNotFound() throws {
    let tmp = TempDir()
    let ds = try LocalDatastore(root: tmp.url)
    let f = tmp.write("x.nii.gz", [1])
    #expect(throws: MONAILabelError(.notFound, "Image nope not found")) {
        try ds.saveLabel(imageID: "nope", file: f, fileName: "x.nii.gz", tag: "final", info: [:])
    }
    #expect(throws: MONAILabelError.self) { try ds.removeImage("nope") }
    #expect(throws: MONAILabelError.self) { try ds.updateImageInfo("nope", info: [:]) }
    #expect(throws: MONAILabelError.self) { try ds.updateLabelInfo("nope", tag: "final", info: [:]) }
    try ds.removeLabel("nope", tag: "final")  // upstream answers {} for an unknown label
}

@Test(.tags(.unit)) func ids_andTags_cannotEscapeTheStudiesFolder() throws {
    let tmp = TempDir()
    let root = tmp.url.appendingPathComponent("s")
    try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
    _ = tmp.write("s/img.nii.gz", [1])
    let ds = try LocalDatastore(root: root)
    let f = tmp.write("u.nii.gz", [1])
    for bad in ["../evil", "..", "a/b", "/etc/passwd", "x\u{0}y", ".hidden", ""] {
        #expect(throws: MONAILabelError.self) { try ds.addImage(id: bad, file: f, fileName: "u.nii.gz", info: [:]) }
        #expect(throws: MONAILabelError.self) {
            try ds.saveLabel(imageID: "img", file: f, fileName: "u.nii.gz", tag: bad, info: [:])
        }
    }
    // A tag directory that is a symlink out of the store is neither read nor written.
    let outside = tmp.url.appendingPathComponent("outside")
    try FileManager.default.createDirectory(at: outside, withIntermediateDirectories: true)
    _ = tmp.write("outside/img.nii.gz", [7])
    try FileManager.default.createSymbolicLink(at: root.appendingPathComponent("labels/escape"), withDestinationURL: outside)
    ds.refresh()
    #expect(ds.status().labelTags["escape"] == nil)
    #expect(throws: MONAILabelError.self) {
        try ds.saveLabel(imageID: "img", file: f, fileName: "u.nii.gz", tag: "escape", info: [:])
    }
    #expect(try Data(contentsOf: outside.appendingPathComponent("img.nii.gz")) == Data([7]))
    #expect(FileOps.listDirectory(tmp.url.path).sorted() == ["outside", "s", "u.nii.gz"])
}

@Test(.tags(.unit)) func upload_withUnsupportedExtension_isRefused() throws {
    let tmp = TempDir()
    let ds = try LocalDatastore(root: tmp.url)
    let f = tmp.write("x.exe", [1])
    #expect(throws: MONAILabelError.self) { try ds.addImage(id: "x", file: f, fileName: "x.exe", info: [:]) }
    #expect(ds.status().total == 0)
}

@Test(.tags(.unit)) func validator_refusal_leavesStoreUnchanged() throws {
    let tmp = TempDir()
    let ds = try LocalDatastore(root: tmp.url, validator: { _, _ in throw MONAILabelError.invalid("not an image") })
    let f = tmp.write("x.nii.gz", [1])
    #expect(throws: MONAILabelError.invalid("not an image")) {
        try ds.addImage(id: "x", file: f, fileName: "x.nii.gz", info: [:])
    }
    #expect(ds.status().total == 0)
    #expect(FileOps.listDirectory(tmp.url.path).filter { $0.hasPrefix(FileOps.tempPrefix) }.isEmpty)
}

@Test(.tags(.unit)) func refresh_picksUpAddedAndVanishedFiles() throws {
    let tmp = TempDir()
    let ds = try LocalDatastore(root: tmp.url)
    _ = tmp.write("a.nii.gz", [1])
    _ = tmp.write("b.nrrd", [1])
    _ = tmp.write("c.seg.nrrd", [1])
    _ = tmp.write("notes.txt", [1])
    _ = tmp.write("labels/final/a.nii.gz", [1])
    _ = tmp.write("labels/final/orphan.nii.gz", [1])
    ds.refresh()
    #expect(ds.listImages() == ["a", "b", "c.seg"])
    #expect(ds.labeledImages() == ["a"])
    try FileManager.default.removeItem(at: tmp.url.appendingPathComponent("labels/final/a.nii.gz"))
    try FileManager.default.removeItem(at: tmp.url.appendingPathComponent("b.nrrd"))
    ds.refresh()
    #expect(ds.listImages() == ["a", "c.seg"])
    #expect(ds.labeledImages().isEmpty)
}

@Test(.tags(.unit)) func autoReload_seesFilesCopiedIn() async throws {
    let tmp = TempDir()
    let ds = try LocalDatastore(root: tmp.url, autoReload: true)
    _ = tmp.write("new_case.nii.gz", [1])
    var seen = false
    for _ in 0..<50 where !seen {
        try await Task.sleep(nanoseconds: 100_000_000)
        seen = ds.listImages() == ["new_case"]
    }
    #expect(seen)
}

@Test(.tags(.unit)) func split_followsUpstreamRules() {
    #expect(StoreNames.split("spleen_3.nii.gz") == ("spleen_3", ".nii.gz"))
    #expect(StoreNames.split("x.seg.nrrd") == ("x.seg", ".nrrd"))
    #expect(StoreNames.split("1.2.840.113619.2.55.3.nii.gz") == ("1.2.840.113619.2.55.3", ".nii.gz"))
    #expect(StoreNames.split("scan.nii") == ("scan", ".nii"))
    #expect(StoreNames.uploadExtension("/home/user/My Scans/ct.v2.nii.gz") == ".nii.gz")
}
