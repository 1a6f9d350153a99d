import Foundation
import TestSupport
import Testing
import MONAILabel
@testable import MONAILabelServer

@Test(.tags(.router)) func datastore_stats_train_all_andEnumValidation() throws {
    let c = try TestClient()
    let stats = try c.get("/datastore/")
    #expect(stats.status == 200)
    #expect(stats.text == #"{"total":3,"completed":1,"label_tags":{"final":1}}"#)
    let train = try c.get("/datastore/?output=train").json?.arrayValue
    #expect(train?.count == 1)
    #expect(train?.first?["label"]?.stringValue?.hasSuffix("labels/final/spleen_00.nii.gz") == true)
    let all = try c.get("/datastore/?output=all").json
    #expect(all?.objectValue?.keys == ["name", "description", "images_dir", "labels_dir", "objects"])
    let bad = try c.get("/datastore/?output=bogus")
    #expect(bad.status == 422)
    #expect(bad.json?["detail"]?.arrayValue?.first?["type"] == .string("enum"))
}

@Test(.tags(.router)) func datastore_uploadImage_withAndWithoutId_andDeprecatedAlias() throws {
    let c = try TestClient()
    let r1 = try c.sendForm(.put, "/datastore/image?image=upload_a", fields: [("params", #"{"client_id":"curl","note":"hello"}"#)],
                            files: [("file", "/home/me/data/upl_00.nii.gz", [1, 2, 3])])
    #expect(r1.status == 200)
    #expect(r1.text == #"{"image":"upload_a"}"#)
    #expect(c.app.datastore.imageInfo("upload_a")?.keys == ["client_id", "note", "user", "ts", "name"])
    let r2 = try c.sendForm(.put, "/datastore/image", files: [("file", "C:\\scans\\upl_01.nii.gz", [4])])
    #expect(r2.text == #"{"image":"upl_01"}"#)
    let r3 = try c.sendForm(.put, "/datastore/?image=upload_c", files: [("file", "x.nii.gz", [5])])
    #expect(r3.status == 200)
    #expect(c.app.datastore.listImages().contains("upload_c"))
    let missing = try c.sendForm(.put, "/datastore/image?image=x")
    #expect(missing.status == 422)
    #expect(missing.json?["detail"]?.arrayValue?.first?["loc"] == ["body", "file"])
    let badParams = try c.sendForm(.put, "/datastore/image?image=bad", fields: [("params", "{bad json")], files: [("file", "x.nii.gz", [5])])
    #expect(badParams.status == 422)
    #expect(badParams.json?["detail"]?.stringValue?.contains("params") == true)
    #expect(!c.app.datastore.listImages().contains("bad"))
}

@Test(.tags(.router)) func datastore_imageDownloadHeadInfo_andChecksum() throws {
    let c = try TestClient()
    let dl = try c.get("/datastore/image?image=spleen_01")
    #expect(dl.status == 200)
    #expect(dl.body == [1, 1, 2, 3])
    #expect(dl.headers["Content-Disposition"] == #"attachment; filename="spleen_01.nii.gz""#)
    #expect(dl.headers["Content-Type"] == "application/octet-stream")
    #expect(try c.get("/datastore/image?image=nope").text == #"{"detail":"Image NOT Found"}"#)
    #expect(try c.get("/datastore/image").status == 422)
    #expect(try c.send(.head, "/datastore/image?image=spleen_01").status == 200)
    #expect(try c.send(.head, "/datastore/image?image=nope").status == 404)
    // The digest comes from coreutils, not from our own code.
    let sum = try runProcess(URL(fileURLWithPath: "/usr/bin/sha256sum"), [c.studies.appendingPathComponent("spleen_01.nii.gz").path])
    try #require(sum.status == 0, "\(sum.output)")
    let digest = String(sum.output.prefix(64))
    #expect(try c.send(.head, "/datastore/image?image=spleen_01&check_sum=\(digest)").status == 200)
    #expect(try c.send(.head, "/datastore/image?image=spleen_01&check_sum=SHA256:\(digest)").status == 200)
    #expect(try c.send(.head, "/datastore/image?image=spleen_01&check_sum=deadbeef").status == 404)
    let info = try c.get("/datastore/image/info?image=spleen_01").json
    #expect(info?["name"] == .string("spleen_01.nii.gz"))
    #expect(info?["path"]?.stringValue?.hasSuffix("/studies/spleen_01.nii.gz") == true)
    #expect(try c.get("/datastore/image/info?image=nope").text == "{}")
}

@Test(.tags(.router)) func datastore_imageInfoUpdate_urlencodedAndMultipart() throws {
    let c = try TestClient()
    let body = Array("info=%7B%22reviewed%22%3Atrue%2C%22n%22%3A3%7D".utf8)
    let r = try c.send(.put, "/datastore/image/info?image=spleen_01",
                       headers: [("Content-Type", "application/x-www-form-urlencoded")], body: body)
    #expect(r.status == 200)
    #expect(r.text == "null")
    let info = c.app.datastore.imageInfo("spleen_01")
    #expect(info?["reviewed"] == .bool(true))
    #expect(info?["user"] == .string("admin"))
    #expect(try c.sendForm(.put, "/datastore/image/info?image=nope", fields: [("info", "{}")]).status == 404)
}

@Test(.tags(.router)) func datastore_labels_saveHeadGetInfoDelete() throws {
    let c = try TestClient()
    let saved = try c.sendForm(.put, "/datastore/label?image=spleen_01",
                               fields: [("params", #"{"label_info":[{"name":"spleen","idx":1}],"client_id":"c"}"#)],
                               files: [("label", "/tmp/x/label.nii.gz", [7, 7])])
    #expect(saved.status == 200)
    #expect(saved.text == #"{"image":"spleen_01","label":"spleen_01"}"#)
    #expect(c.app.datastore.labelInfo("spleen_01", tag: "final")?["client_id"] == .string("c"))
    #expect(c.app.datastore.labelInfo("spleen_01", tag: "final")?["user"] == nil, "upstream records no user on save")
    #expect(try c.send(.head, "/datastore/label?image=spleen_01&tag=final").status == 200)
    #expect(try c.send(.head, "/datastore/label?image=spleen_01&tag=nope").status == 404)
    let dl = try c.get("/datastore/label?label=spleen_01&tag=final")
    #expect(dl.body == [7, 7])
    #expect(dl.headers["Content-Disposition"] == #"attachment; filename="spleen_01.nii.gz""#)
    #expect(try c.get("/datastore/label?label=spleen_01").status == 422)
    #expect(try c.get("/datastore/label?label=spleen_01&tag=nope").status == 404)
    #expect(try c.sendForm(.put, "/datastore/label/info?label=spleen_01&tag=final", fields: [("info", #"{"approved":"yes"}"#)]).status == 200)
    #expect(try c.sendForm(.put, "/datastore/updatelabelinfo?label=spleen_01&tag=final", fields: [("params", #"{"old_api":1}"#)]).status == 200)
    let info = try c.get("/datastore/label/info?label=spleen_01&tag=final").json
    #expect(info?["approved"] == .string("yes"))
    #expect(info?["old_api"] == .int(1))
    #expect(info?["user"] == .string("admin"))
    #expect(try c.get("/datastore/label/info?label=nope&tag=final").text == "{}")
    let tagged = try c.sendForm(.put, "/datastore/label?image=spleen_01&tag=my_tag", files: [("label", "l.nii.gz", [1])])
    #expect(tagged.status == 200)
    #expect(try c.get("/datastore/").json?["label_tags"]?["my_tag"] == .int(1))
    #expect(try c.send(.delete, "/datastore/label?id=spleen_01&tag=my_tag").text == "{}")
    #expect(try c.get("/datastore/").json?["label_tags"]?["my_tag"] == nil)
    #expect(try c.send(.delete, "/datastore/label?id=nope&tag=final").status == 200)
}

@Test(.tags(.router)) func datastore_badIdsAndTags_areRejectedAndChangeNothing() throws {
    let c = try TestClient()
    let before = try c.get("/datastore/?output=all").body
    for tag in ["../../etc", "..", "a%2Fb", "%00"] {
        let r = try c.sendForm(.put, "/datastore/label?image=spleen_01&tag=\(tag)", files: [("label", "l.nii.gz", [1])])
        #expect(r.status == 422, "tag \(tag)")
    }
    for id in ["../evil", "..", "%2Fetc%2Fpasswd", ".hidden"] {
        let r = try c.sendForm(.put, "/datastore/image?image=\(id)", files: [("file", "l.nii.gz", [1])])
        #expect(r.status == 422, "id \(id)")
    }
    #expect(try c.sendForm(.put, "/datastore/label?image=nope", files: [("label", "l.nii.gz", [1])]).status == 404)
    #expect(try c.send(.delete, "/datastore/image?id=nope").status == 404)
    #expect(try c.sendForm(.put, "/datastore/image?image=x", files: [("file", "evil.sh", [1])]).status == 422)
    #expect(try c.get("/datastore/?output=all").body == before)
    #expect(!FileManager.default.fileExists(atPath: c.tmp.url.appendingPathComponent("evil").path))
}

@Test(.tags(.router)) func datastore_deleteImage_removesFilesAndLabels() throws {
    let c = try TestClient()
    #expect(try c.send(.delete, "/datastore/image?id=spleen_00").text == "{}")
    #expect(!FileManager.default.fileExists(atPath: c.studies.appendingPathComponent("spleen_00.nii.gz").path))
    #expect(!FileManager.default.fileExists(atPath: c.studies.appendingPathComponent("labels/final/spleen_00.nii.gz").path))
    #expect(try c.send(.delete, "/datastore/?id=spleen_01").status == 200)
    #expect(try c.get("/datastore/").json?["total"] == .int(1))
}

@Test(.tags(.router)) func datastore_dataset_zipsLabeledCases() throws {
    let c = try TestClient(labeled: 2)
    let r = try c.get("/datastore/dataset")
    #expect(r.status == 200)
    #expect(r.headers["Content-Disposition"] == #"attachment; filename="dataset.zip""#)
    #expect(Array(r.body.prefix(4)) == [0x50, 0x4B, 0x03, 0x04])
    let zip = c.tmp.write("d.zip", r.body)
    let list = try runProcess(URL(fileURLWithPath: "/usr/bin/unzip"), ["-tq", zip.path])
    #expect(list.status == 0, "unzip -t: \(list.output)")
    let one = try c.get("/datastore/dataset?limit_cases=1")
    #expect(one.body.count < r.body.count)
    let none = try TestClient(labeled: 0)
    #expect(try none.get("/datastore/dataset").status == 404)
}
