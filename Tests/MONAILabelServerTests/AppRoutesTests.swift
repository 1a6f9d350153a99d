import Foundation
import Testing
import MONAILabel
@testable import MONAILabelServer

@Test(.tags(.router)) func info_trailingSlashRedirect_methodNotAllowed_unknownPath() throws {
    let c = try TestClient()
    let info = try c.get("/info/")
    #expect(info.status == 200)
    #expect(info.headers["Content-Type"] == "application/json")
    #expect(info.json?["name"] == .string("MONAILabel - Radiology (0.8.5)"))
    let redirect = try c.get("/info")
    #expect(redirect.status == 307)
    #expect(redirect.headers["Location"] == "http://test/info/")
    let post = try c.send(.post, "/info/")
    #expect(post.status == 405)
    #expect(post.headers["Allow"] == "GET")
    #expect(try c.get("/nonexistent").text == #"{"detail":"Not Found"}"#)
    #expect(try c.get("/auth/").status == 404, "clients read a non-200 /auth/ as auth disabled")
}

@Test(.tags(.router)) func activeLearning_strategies_andErrors() throws {
    let c = try TestClient()
    let first = try c.send(.post, "/activelearning/first", headers: [("Content-Type", "application/json")],
                           body: Array(#"{"client_id":"curl-user"}"#.utf8))
    #expect(first.status == 200)
    #expect(first.json?["id"] == .string("spleen_01"))
    #expect(first.json?["strategy"]?["first"]?["client_id"] == .string("curl-user"))
    let random = try c.send(.post, "/activelearning/random")
    #expect(random.json?["weight"]?.intValue != nil)
    #expect(try c.send(.post, "/activelearning/last").json?["id"] == .string("spleen_02"))
    let unknown = try c.send(.post, "/activelearning/unknown_strategy")
    #expect(unknown.status == 404)
    #expect(unknown.json?["detail"]?.stringValue?.contains("unknown_strategy") == true)
    let bad = try c.send(.post, "/activelearning/random", headers: [("Content-Type", "application/json")], body: Array("{bad".utf8))
    #expect(bad.status == 422)
    #expect(bad.json?["detail"]?.arrayValue?.first?["type"] == .string("json_invalid"))
    #expect(try c.get("/activelearning/random").status == 405)
    let done = try TestClient(ids: ["a"], labeled: 1)
    #expect(try done.send(.post, "/activelearning/first").text == "{}")
}

@Test(.tags(.router)) func sessions_createGetImageDelete() throws {
    let c = try TestClient()
    let created = try c.sendForm(.put, "/session/?expiry=600", fields: [("client_id", "x")],
                                 files: [("files", "/home/u/upl_02.nii.gz", [1, 2])])
    #expect(created.status == 200)
    let id = try #require(created.json?["session_id"]?.stringValue)
    #expect(created.json?["session_info"]?["expiry"] == .int(600))
    #expect(created.json?["session_info"]?["image"]?.stringValue?.hasSuffix("/\(id)/upl_02.nii.gz") == true)
    #expect(try c.get("/session/\(id)").json?["name"] == .string(id))
    let image = try c.get("/session/\(id)?image=true")
    #expect(image.body == [1, 2])
    #expect(image.headers["Content-Type"] == "application/octet-stream")
    let two = try c.sendForm(.put, "/session/", files: [("files", "a.nii.gz", [1]), ("files", "b.nii.gz", [2])])
    #expect(two.status == 200)
    #expect(try c.sendForm(.put, "/session/").status == 422)
    #expect(try c.send(.delete, "/session/\(id)").json?["name"] == .string(id))
    #expect(try c.get("/session/\(id)").text == #"{"detail":"Session (\#(id)) Not Found"}"#)
    #expect(try c.send(.delete, "/session/nope").text == #"{"detail":"Session Not Found"}"#)
    #expect(try c.get("/session/..").status == 404)
    let off = try TestClient(sessions: false)
    #expect(try off.get("/session/abc").status == 406)
}

@Test(.tags(.router)) func model_unknownOrMissingFile_is404() throws {
    let c = try TestClient()
    #expect(try c.get("/model/segmentation_spleen").text == #"{"detail":"Model File NOT Found for segmentation_spleen"}"#)
    #expect(try c.get("/model/info/unknown_model").status == 404)
    #expect(try c.sendForm(.put, "/model/unknown_model", files: [("file", "m.pt", [1])]).status == 404)
    #expect(try c.send(.delete, "/model/unknown_model").status == 404)
}

@Test(.tags(.router)) func logs_textTailHtmlAndMissing() throws {
    let c = try TestClient()
    #expect(try c.get("/logs/").status == 404)
    let log = Logger(file: c.app.logFile, level: .info, echo: false)
    for i in 0..<10 { log.info("line \(i)") }
    let tail = try c.get("/logs/?text=true&lines=3")
    #expect(tail.status == 200)
    #expect(tail.text.split(separator: "\n").count == 3)
    #expect(tail.text.hasSuffix("line 9\n"))
    #expect(try c.get("/logs/").headers["Content-Type"] == "text/html; charset=utf-8")
    #expect(try c.get("/logs/?lines=0").text.split(separator: "\n").count == 10)
    #expect(try c.get("/logs/?lines=abc").status == 422)
}
