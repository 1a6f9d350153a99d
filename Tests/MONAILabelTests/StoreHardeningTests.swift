import Foundation
import Imaging
import Testing
import TestSupport
@testable import MONAILabel
@testable import MONAILabelCore

// Issue 14: a store that was written always loads; uploads are read through; symlinks stay inside; session
// extraction is capped; temp folders of dead processes are swept; no server path in an error.

/// `{"a": {"a": ... {"a": 1}}}` with `depth` objects.
private func nested(_ depth: Int) -> JSONObject {
    var v: JSONValue = .int(1)
    for _ in 0..<depth { v = ["a": v] }
    return v.objectValue ?? JSONObject()
}

/// A small real NIfTI/NRRD volume in `dir` (name carries the format).
private func writeVolume(_ dir: TempDir, _ name: String) throws -> URL {
    let url = dir.url.appendingPathComponent(name)
    let data = (0..<(16 * 16 * 16)).map { Float($0 % 97) }
    try ImageIO.write(Volume(spatialShape: [16, 16, 16], data: .float32(data), affine: .identity), to: url)
    return url
}

private func truncate(_ url: URL, to fraction: Double) throws {
    let bytes = try Data(contentsOf: url)
    try bytes.prefix(Int(Double(bytes.count) * fraction)).write(to: url)
}

private func tar(_ args: [String]) throws {
    let (status, output) = try runProcess(URL(fileURLWithPath: "/usr/bin/tar"), args)
    #expect(status == 0, "tar \(args): \(output)")
}

// MARK: JSON and info limits

@Test(.tags(.unit)) func nestingDepth_countsArraysAndObjects() throws {
    #expect(JSONValue.int(3).nestingDepth == 0)
    #expect(JSONValue.object(JSONObject()).nestingDepth == 1)
    #expect(try JSONValue.parse(#"{"a":[1,{"b":[[]]}],"c":{}}"#).nestingDepth == 5)
    #expect(JSONValue.object(nested(400)).nestingDepth == 400)
}

@Test(.tags(.unit)) func addImage_infoNestedPastLimit_isRefusedNamingItAndStoresNothing() throws {
    let tmp = TempDir()
    let ds = try LocalDatastore(root: tmp.url)
    let f = tmp.write("up/x.nii.gz", [1])
    let e = #expect(throws: MONAILabelError.self) {
        try ds.addImage(id: "x", file: f, fileName: "x.nii.gz", info: nested(InfoLimits.maxDepth + 1))
    }
    #expect(e?.kind == .invalidInput)
    #expect(e?.message.contains("image info") == true && e?.message.contains("\(InfoLimits.maxDepth)") == true)
    #expect(ds.listImages().isEmpty)
}

@Test(.tags(.unit)) func infoAtTheLimits_isStoredAndTheStoreReopens() throws {
    let tmp = TempDir()
    let ds = try LocalDatastore(root: tmp.url)
    let deep = nested(InfoLimits.maxDepth)
    try ds.addImage(id: "x", file: tmp.write("up/x.nii.gz", [1]), fileName: "x.nii.gz", info: deep)
    try ds.saveLabel(imageID: "x", file: tmp.write("up/l.nii.gz", [2]), fileName: "l.nii.gz", tag: "final", info: deep)
    let reopened = try LocalDatastore(root: tmp.url)
    #expect(reopened.recovery == nil)
    #expect(reopened.imageInfo("x")?["a"] == deep["a"])
    #expect(reopened.labelInfo("x", tag: "final")?["a"] == deep["a"])
}

@Test(.tags(.unit)) func updateInfo_mergedPastSizeLimit_isRefusedAndKeepsOldInfo() throws {
    let tmp = TempDir()
    let ds = try LocalDatastore(root: tmp.url)
    try ds.addImage(id: "x", file: tmp.write("up/x.nii.gz", [1]), fileName: "x.nii.gz", info: [:])
    let half: JSONObject = ["p": .string(String(repeating: "a", count: InfoLimits.maxBytes / 2 + 10))]
    try ds.updateImageInfo("x", info: half)
    let other: JSONObject = ["q": .string(String(repeating: "b", count: InfoLimits.maxBytes / 2 + 10))]
    #expect(throws: MONAILabelError.self) { try ds.updateImageInfo("x", info: other) }
    #expect(ds.imageInfo("x")?["q"] == nil)
    #expect(ds.imageInfo("x")?["p"] != nil)
}

// MARK: Recovery of an unloadable datastore_v2.json

/// A studies folder with two images, one labelled, and `document` as its datastore_v2.json.
private func studiesWithDocument(_ document: [UInt8]) -> TempDir {
    let tmp = TempDir()
    _ = tmp.write("a.nii.gz", [1])
    _ = tmp.write("b.nii.gz", [2])
    _ = tmp.write("labels/final/a.nii.gz", [3])
    _ = tmp.write(DatastoreDocument.fileName, document)
    return tmp
}

@Test(.tags(.unit), arguments: [
    ("not JSON", Array("{\"objects\": {".utf8)),
    ("nested past the reader's limit", Array((String(repeating: "[", count: 600) + String(repeating: "]", count: 600)).utf8)),
    ("structurally wrong", Array(#"{"objects": 5}"#.utf8)),
    ("not UTF-8", [0xFF, 0xFE, 0x00]),
])
func corruptDocumentAtStartUp_isSetAsideAndStoreRebuiltFromFiles(_ what: String, _ document: [UInt8]) throws {
    let tmp = studiesWithDocument(document)
    let ds = try LocalDatastore(root: tmp.url)
    let moved = try #require(ds.recovery?.movedTo, "\(what)")
    #expect(moved.hasPrefix(DatastoreDocument.fileName + ".corrupt-"))
    #expect(try Data(contentsOf: tmp.url.appendingPathComponent(moved)) == Data(document), "the bad file is kept as it was")
    #expect(ds.listImages().sorted() == ["a", "b"])
    #expect(ds.labeledImages() == ["a"])
    let rewritten = try JSONValue.parse(Array(try Data(contentsOf: tmp.url.appendingPathComponent(DatastoreDocument.fileName))))
    #expect(rewritten["objects"]?.objectValue?.count == 2)
    let again = try LocalDatastore(root: tmp.url)
    #expect(again.recovery == nil, "the rebuilt document loads")
}

@Test(.tags(.unit)) func documentThatIsAFolder_isSetAside() throws {
    let tmp = TempDir()
    _ = tmp.write("a.nii.gz", [1])
    try FileManager.default.createDirectory(
        at: tmp.url.appendingPathComponent(DatastoreDocument.fileName), withIntermediateDirectories: true)
    let ds = try LocalDatastore(root: tmp.url)
    #expect(ds.recovery?.movedTo != nil)
    #expect(ds.listImages() == ["a"])
    #expect(FileOps.isRegularFile(tmp.url.appendingPathComponent(DatastoreDocument.fileName).path))
}

@Test(.tags(.unit)) func readOnlyStoreWithCorruptDocument_opensFromFilesAndLeavesTheFile() throws {
    let tmp = studiesWithDocument(Array("garbage".utf8))
    let ds = try LocalDatastore(root: tmp.url, readOnly: true)
    #expect(ds.recovery != nil && ds.recovery?.movedTo == nil)
    #expect(ds.listImages().sorted() == ["a", "b"])
    ds.refresh()
    #expect(ds.listImages().sorted() == ["a", "b"])
    #expect(try Data(contentsOf: tmp.url.appendingPathComponent(DatastoreDocument.fileName)) == Data("garbage".utf8))
}

// MARK: Ids too long for the file system

@Test(.tags(.unit)) func imageIDTooLongWithItsExtension_isRefusedWithoutAServerPath() throws {
    let tmp = TempDir()
    let ds = try LocalDatastore(root: tmp.url)
    let id = String(repeating: "x", count: 255)
    let e = #expect(throws: MONAILabelError.self) {
        try ds.addImage(id: id, file: tmp.write("up/x.nii.gz", [1]), fileName: "x.nii.gz", info: [:])
    }
    #expect(e?.kind == .invalidInput)
    #expect(e?.message.contains("255") == true && e?.message.contains(tmp.url.path) == false)
    // The same id fits with a shorter extension.
    try ds.addImage(id: String(repeating: "x", count: 251), file: tmp.write("up/y.nii", [1]), fileName: "y.nii", info: [:])
    #expect(ds.listImages().count == 1)
}

// MARK: Symlinks

@Test(.tags(.unit)) func symlinksLeavingTheStudiesFolder_areNotListedServedOrTrained() throws {
    let outside = TempDir()
    let secret = outside.write("secret.nii.gz", Array("secret".utf8))
    let tmp = TempDir()
    _ = tmp.write("real.nii.gz", [1])
    try FileManager.default.createSymbolicLink(atPath: tmp.url.appendingPathComponent("evil.nii.gz").path,
                                               withDestinationPath: secret.path)
    try FileManager.default.createSymbolicLink(atPath: tmp.url.appendingPathComponent("alias.nii.gz").path,
                                               withDestinationPath: tmp.url.appendingPathComponent("real.nii.gz").path)
    try FileManager.default.createDirectory(at: tmp.url.appendingPathComponent("labels/final"), withIntermediateDirectories: true)
    try FileManager.default.createSymbolicLink(atPath: tmp.url.appendingPathComponent("labels/final/real.nii.gz").path,
                                               withDestinationPath: secret.path)
    let ds = try LocalDatastore(root: tmp.url)
    #expect(ds.listImages().sorted() == ["alias", "real"], "a link inside the folder stays")
    #expect(ds.imageURI("evil") == nil)
    #expect(ds.labelURI("real", tag: "final") == nil)
    #expect(ds.datalist().isEmpty)

    // A stored image replaced by a link to outside afterwards is not served either, before any reconcile.
    try FileManager.default.removeItem(at: tmp.url.appendingPathComponent("real.nii.gz"))
    try FileManager.default.createSymbolicLink(atPath: tmp.url.appendingPathComponent("real.nii.gz").path,
                                               withDestinationPath: secret.path)
    #expect(ds.imageURI("real") == nil)
    #expect(throws: MONAILabelError.self) { try ds.fetchImage("real") }
    ds.refresh()
    #expect(!ds.listImages().contains("real"))
}

// MARK: Sessions

@Test(.tags(.unit)) func session_singleFileNamedMetaInfo_isRefused() throws {
    let tmp = TempDir()
    let store = try SessionStore(root: tmp.url.appendingPathComponent("sessions"))
    let e = #expect(throws: MONAILabelError.self) {
        try store.create(files: [UploadedFile(path: tmp.write("m", [1]), fileName: "/x/meta.info")])
    }
    #expect(e?.message.contains("meta.info") == true)
    #expect(FileOps.listDirectory(store.root.path).isEmpty)
}

@Test(.tags(.unit)) func session_uploadsLargerThanMaxBytes_areRefused() throws {
    let tmp = TempDir()
    let store = try SessionStore(root: tmp.url.appendingPathComponent("sessions"), maxBytes: 100)
    let f = tmp.write("big", [UInt8](repeating: 7, count: 101))
    let e = #expect(throws: MONAILabelError.self) {
        try store.create(files: [UploadedFile(path: f, fileName: "big.nii.gz")])
    }
    #expect(e?.message.contains("MONAI_LABEL_SESSION_MAX_BYTES") == true)
    #expect(FileOps.listDirectory(store.root.path).isEmpty)
}

@Test(.tags(.unit)) func session_archiveExpandingPastMaxBytes_isStoppedAndCleanedUp() throws {
    let tmp = TempDir()
    // 64 MiB of zeros: the archive is tens of kilobytes.
    let big = tmp.url.appendingPathComponent("src/zeros.bin")
    try FileManager.default.createDirectory(at: big.deletingLastPathComponent(), withIntermediateDirectories: true)
    _ = FileManager.default.createFile(atPath: big.path, contents: nil)
    let h = try FileHandle(forWritingTo: big)
    for _ in 0..<64 { h.write(Data(count: 1 << 20)) }
    try h.close()
    let archive = tmp.url.appendingPathComponent("bomb.tar.gz")
    try tar(["-czf", archive.path, "-C", big.deletingLastPathComponent().path, "zeros.bin"])
    try FileManager.default.removeItem(at: big)
    #expect((FileOps.fileSize(archive.path) ?? 0) < 1 << 20)
    let store = try SessionStore(root: tmp.url.appendingPathComponent("sessions"), maxBytes: 4 << 20)
    let e = #expect(throws: MONAILabelError.self) {
        try store.create(files: [UploadedFile(path: archive, fileName: "bomb.tar.gz")], uncompress: true)
    }
    #expect(e?.kind == .invalidInput)
    #expect(e?.message.contains("MONAI_LABEL_SESSION_MAX_BYTES") == true)
    #expect(FileOps.listDirectory(store.root.path).isEmpty, "the partial extraction is removed")
}

@Test(.tags(.unit)) func session_archiveWithTooManyFiles_isRefused() throws {
    let tmp = TempDir()
    for i in 0..<30 { _ = tmp.write("src/f\(i).txt", [1]) }
    let archive = tmp.url.appendingPathComponent("many.tar.gz")
    try tar(["-czf", archive.path, "-C", tmp.url.appendingPathComponent("src").path, "."])
    let store = try SessionStore(root: tmp.url.appendingPathComponent("sessions"), maxFiles: 10)
    let e = #expect(throws: MONAILabelError.self) {
        try store.create(files: [UploadedFile(path: archive, fileName: "many.tar.gz")], uncompress: true)
    }
    #expect(e?.message.contains("more than 10 files") == true)
    #expect(FileOps.listDirectory(store.root.path).isEmpty)
    let roomy = try SessionStore(root: tmp.url.appendingPathComponent("sessions2"), maxFiles: 100)
    let info = try roomy.create(files: [UploadedFile(path: archive, fileName: "many.tar.gz")], uncompress: true)
    #expect(FileOps.listDirectory(info.image).count == 30)
}

// MARK: Temporary folders of dead processes

@Test(.tags(.unit)) func ownerPID_acceptsOnlyExactFolderNames() {
    #expect(ProcessTemp.ownerPID(ofFolderNamed: "monailabel-1234") == 1234)
    for name in ["monailabel-", "monailabel-12a", "monailabel-0", "monailabel--5", "monailabel-1234.bak",
                 "xmonailabel-12", "monailabel-99999999999", "http-abcdefghijklmnop"] {
        #expect(ProcessTemp.ownerPID(ofFolderNamed: name) == nil, "\(name)")
    }
}

@Test(.tags(.unit)) func sweepDead_removesOnlyFoldersOfProcessesThatAreGone() throws {
    let base = TempDir()
    let live: Int32 = 4242, dead: Int32 = 4343, deadLinked: Int32 = 4444
    for name in ["monailabel-\(live)", "monailabel-\(dead)", "monailabel-\(getpid())", "monailabel-abc", "other-\(dead)"] {
        _ = base.write("\(name)/http-spool.body", [1, 2, 3])
    }
    let target = base.write("keep/file", [1])
    try FileManager.default.createSymbolicLink(atPath: base.url.appendingPathComponent("monailabel-\(deadLinked)").path,
                                               withDestinationPath: target.deletingLastPathComponent().path)
    let removed = ProcessTemp.sweepDead(in: base.url, isAlive: { $0 == live })
    #expect(removed == ["monailabel-\(dead)"])
    let left = FileOps.listDirectory(base.url.path).sorted()
    #expect(left == ["keep", "monailabel-\(deadLinked)", "monailabel-\(getpid())", "monailabel-\(live)", "monailabel-abc",
                     "other-\(dead)"].sorted())
    #expect(FileOps.isRegularFile(target.path), "a link is never followed")
}

@Test(.tags(.unit)) func makeFolder_refusesAnExistingFolderOthersCanEnter() throws {
    let base = TempDir()
    let made = try ProcessTemp.makeFolder(in: base.url)
    #expect(made.lastPathComponent == "monailabel-\(getpid())")
    #expect(try ProcessTemp.makeFolder(in: base.url).path == made.path, "our own 0700 folder is reused")
    chmod(made.path, 0o777)
    #expect(throws: MONAILabelError.self) { try ProcessTemp.makeFolder(in: base.url) }
}

@Test(.tags(.unit)) func isAlive_seesThisProcessAndNotAReapedChild() throws {
    #expect(ProcessTemp.isAlive(getpid()))
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/true")
    try p.run()
    // Foundation reaps it, then isRunning turns false (waited for with a bound, as every wait in a test).
    let deadline = Date().addingTimeInterval(120)
    while p.isRunning && Date() < deadline { usleep(10_000) }
    try #require(!p.isRunning, "Foundation did not reap /bin/true within 120 s")
    #expect(!ProcessTemp.isAlive(p.processIdentifier))
}

// MARK: Upload read-through

@Test(.tags(.unit), arguments: ["x.nii.gz", "x.nii", "x.nrrd"])
func validate_completeVolume_passes_truncatedIsRefusedWithoutPath(_ name: String) throws {
    let tmp = TempDir()
    let url = try writeVolume(tmp, name)
    let ext = ImageIO.fileExtension(of: name) ?? ""
    try ImageValidation.validate(url, ext: ext)
    try truncate(url, to: 0.6)
    let e = #expect(throws: MONAILabelError.self) { try ImageValidation.validate(url, ext: ext) }
    #expect(e?.kind == .invalidInput)
    #expect(e?.message.contains(tmp.url.path) == false && e?.message.contains("uploaded file") == true, "\(e?.message ?? "")")
}

@Test(.tags(.unit)) func validate_spooledUploadWithoutExtension_isReadThroughALinkThatIsRemoved() throws {
    let tmp = TempDir()
    let url = try writeVolume(tmp, "x.nii.gz")
    let spooled = tmp.url.appendingPathComponent("http-abcdefgh")
    try FileManager.default.moveItem(at: url, to: spooled)
    try ImageValidation.validate(spooled, ext: ".nii.gz")
    try truncate(spooled, to: 0.5)
    #expect(throws: MONAILabelError.self) { try ImageValidation.validate(spooled, ext: ".nii.gz") }
    #expect(FileOps.listDirectory(tmp.url.path) == ["http-abcdefgh"])
}
