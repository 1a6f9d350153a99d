import DICOMwebDatastore
import Foundation
import HTTPClient
import HTTPServer

/// `GET|POST /proxy/dicom/{qido,wado,stow}/{path}`: OHIF's DICOMweb (its `app-config.js` points at these) relayed
/// to the PACS of the DICOMweb datastore, with the datastore's prefixes and credentials, as upstream's
/// `proxy.py`. Bodies stream both ways (a POSTed STOW body from its spool file, a retrieved series chunk by
/// chunk), so a 500 MB series is never held in memory.
enum DicomProxyRoutes {
    /// Request headers a viewer's request carries over to the PACS. Not `Authorization` (that is the caller's
    /// credential for this server; the PACS gets the datastore's), not hop-by-hop or framing headers.
    static let forwardedRequestHeaders = ["Accept", "Content-Type", "If-None-Match", "If-Modified-Since"]
    /// Response headers relayed back; the framing is this server's own (chunked).
    static let relayedResponseHeaders = [
        "Content-Type", "Content-Encoding", "Content-Location", "ETag", "Last-Modified", "Cache-Control", "Warning",
    ]

    static func register(_ r: inout HTTPRouter, _ ctx: RouteContext) {
        for service in DicomWebSettings.RelayService.allCases {
            let handler = route { req in try relay(req, service: service, ctx: ctx) }
            r.get("/proxy/dicom/\(service.rawValue)/{path:path}", handler)
            r.post("/proxy/dicom/\(service.rawValue)/{path:path}", handler)
        }
    }

    static func relay(_ req: HTTPRequest, service: DicomWebSettings.RelayService, ctx: RouteContext) throws -> HTTPResponse {
        guard let pacs = ctx.app.datastore as? any DicomWebRelaySource else {
            throw HTTPError(.notFound, "The DICOMweb proxy needs a DICOMweb datastore (start the server with --studies "
                + "http(s)://.../dicom-web); this server's studies are a local folder")
        }
        // The raw (still percent-encoded) path after the service, so UIDs and encoded characters reach the PACS
        // exactly as the viewer sent them.
        let (rawPath, rawQuery) = HTTPRequest.split(target: req.target)
        let base = "/proxy/dicom/\(service.rawValue)/"
        let path = rawPath.hasPrefix(base) ? String(rawPath.dropFirst(base.count)) : ""
        guard let target = pacs.settings.relayTarget(service: service, path: path, query: rawQuery.map(String.init)) else {
            throw HTTPError(.badRequest, "path: '.' and '..' segments cannot be relayed to the DICOMweb server")
        }
        var headers = HTTPHeaders()
        for name in forwardedRequestHeaders { if let v = req.headers[name] { headers.add(name, v) } }
        if let user = target.username, let password = target.password {
            headers.add("Authorization", basicAuthorization(user: user, password: password))
        }
        let client = HTTPClient(configuration: pacs.settings.relayHTTPConfiguration)
        let upstream: HTTPClientStream
        do {
            switch req.body {
            case .file(let spool, let length):
                upstream = try client.stream(method: req.method.rawValue, url: target.url, headers: headers,
                                             bodyFile: (spool, length))
            case .bytes(let bytes):
                upstream = try client.stream(method: req.method.rawValue, url: target.url, headers: headers, body: bytes)
            case .empty:
                upstream = try client.stream(method: req.method.rawValue, url: target.url, headers: headers)
            }
        } catch let e as HTTPClientError {
            ctx.log.warning("DICOMweb proxy: \(service.rawValue)/\(path): \(e.message)")
            throw HTTPError(HTTPStatus(502, "Bad Gateway"), "The DICOMweb server did not answer: \(e.message)")
        }
        var response = HTTPResponse(status: HTTPStatus(upstream.status, upstream.reason.isEmpty ? nil : upstream.reason))
        for name in relayedResponseHeaders { if let v = upstream.headers[name] { response.headers.add(name, v) } }
        response.body = .stream(RelayBody(upstream: upstream))
        return response
    }
}

/// The PACS's response body, passed on chunk by chunk as the server sends it.
struct RelayBody: HTTPBodyStream {
    let upstream: HTTPClientStream
    func next() throws -> [UInt8]? { try upstream.next() }
}
