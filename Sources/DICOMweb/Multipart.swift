import Foundation
import HTTPClient

/// `multipart/related` as WADO-RS answers and STOW-RS expects (RFC 2046 / 2387), over HTTPCore's multipart.
public enum MultipartRelated {
    /// The parameter `name` of a header value like `multipart/related; type="application/dicom"; boundary=x`.
    public static func parameter(_ name: String, in headerValue: String) -> String? {
        HeaderParameters.parameter(name, in: headerValue)
    }

    /// Splits `body` into its parts; see `MultipartMessage.parse` for what it tolerates. A body that does not
    /// split is the server's fault: `.malformedResponse`.
    public static func parse(_ body: [UInt8], boundary: String) throws -> [MultipartPart] {
        do {
            return try MultipartMessage.parse(body, boundary: boundary)
        } catch {
            throw DICOMwebError(.malformedResponse, error.description)
        }
    }

    /// A body of `application/dicom` parts with a fresh boundary; returns the Content-Type header value too.
    public static func build(dicomInstances: [[UInt8]]) -> (contentType: String, body: [UInt8]) {
        var builder = MultipartBuilder(boundary: "monailabel-" + UUID().uuidString.replacingOccurrences(of: "-", with: ""))
        for inst in dicomInstances {
            builder.addPart(headers: [(name: "Content-Type", value: "application/dicom")], body: .bytes(inst))
        }
        // Every part is in memory, so the body is too.
        let body = builder.bodyBytes ?? []
        return ("multipart/related; type=\"application/dicom\"; boundary=\(builder.boundary)", body)
    }
}
