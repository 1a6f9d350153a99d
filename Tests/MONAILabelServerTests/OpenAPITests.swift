import Foundation
import HTTPServer
import MONAILabel
import Testing
@testable import MONAILabelServer

@Suite(.tags(.router)) struct OpenAPITests {
    @Test func openapi_describesExactlyTheRoutesTheRouterServes() throws {
        let client = try TestClient()
        let served = Set(client.router.registeredRoutes.map { "\($0.method.rawValue) \($0.template)" })
        let described = Set(OpenAPI.operations.map { "\($0.method) \($0.template)" })
        #expect(served.subtracting(described).sorted() == [], "routes without a description")
        #expect(described.subtracting(served).sorted() == [], "descriptions of routes that do not exist")
        #expect(OpenAPI.operations.count == described.count, "an operation described twice")
    }

    @Test func openapiJson_isOpenAPI3_withPathParametersAndQuery() throws {
        let r = try TestClient().get("/openapi.json")
        #expect(r.status == 200)
        let doc = try #require(r.json)
        #expect(doc["openapi"]?.stringValue?.hasPrefix("3.") == true)
        let infer = try #require(doc["paths"]?["/infer/{model}"]?["post"])
        let names = infer["parameters"]?.arrayValue?.compactMap { $0["name"]?.stringValue } ?? []
        #expect(names.contains("model") && names.contains("image") && names.contains("output"))
        #expect(doc["paths"]?["/proxy/dicom/wado/{path}"]?["get"] != nil)
        #expect(doc["paths"]?["/datastore/label"]?.objectValue?.count == 4)
    }

    @Test func docs_isASelfContainedPage_readingOpenapiJson() throws {
        let r = try TestClient().get("/docs")
        #expect(r.status == 200)
        #expect(r.headers["Content-Type"] == "text/html; charset=utf-8")
        #expect(r.text.contains("fetch(\"/openapi.json\")"))
        #expect(!r.text.contains("http://") && !r.text.contains("https://"), "no CDN")
    }
}
