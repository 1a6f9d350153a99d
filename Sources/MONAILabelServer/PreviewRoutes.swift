import Foundation
import HTTPServer
import Imaging
import MONAILabel

/// `GET /datastore/image/preview`: one slice of a datastore image as a PNG, windowed, with a label drawn over it
/// when `label` names a tag; what the dashboard's image browser shows, so a label can be checked without a viewer.
/// Every parameter is range-checked with a 422 naming it.
enum PreviewRoutes {
    static func register(_ r: inout HTTPRouter, _ ctx: RouteContext) {
        r.get("/datastore/image/preview", route { req in
            let ds = ctx.app.datastore
            let id = try req.requiredQuery("image")
            let plane = SlicePreview.Plane(rawValue: try req.enumQuery("plane", SlicePreview.Plane.allCases.map(\.rawValue)) ?? "axial") ?? .axial
            let presetNames = ["auto"] + SlicePreview.presets.keys.sorted()
            let preset = try req.enumQuery("preset", presetNames) ?? "auto"
            var window = SlicePreview.presets[preset]
            let width = try finiteQuery(req, "window", in: 1e-3...1e7)
            let level = try finiteQuery(req, "level", in: -1e7...1e7)
            if width != nil || level != nil {
                guard let w = width, let l = level else {
                    throw failure(width == nil ? "window" : "level", "window and level are given together", .null)
                }
                window = (w, l)
            }
            let size = try req.intQuery("size") ?? 512
            guard (16...SlicePreview.maxSize).contains(size) else {
                throw failure("size", "size must be in 16...\(SlicePreview.maxSize)", .int(size))
            }
            let tag = req.queryValue("label").flatMap { $0.isEmpty ? nil : $0 }

            guard let path = try fetchedImage(ds, id), FileOps.isRegularFile(path) else {
                throw MONAILabelError.notFound("Image NOT Found")
            }
            let volume = try readable { try ImageIO.load(URL(fileURLWithPath: path)) }
            let depth = SlicePreview.depth(of: volume, plane: plane)
            let index = try req.intQuery("index") ?? depth / 2
            guard (0..<depth).contains(index) else {
                throw failure("index", "index must be in 0...\(depth - 1) for the \(plane.rawValue) plane", .int(index))
            }
            var label: Volume?
            if let tag {
                guard let labelPath = try ds.fetchLabel(id, tag: tag), FileOps.isRegularFile(labelPath) else {
                    throw MONAILabelError.notFound("Label NOT Found")
                }
                let l = try readable { try ImageIO.load(URL(fileURLWithPath: labelPath)) }
                guard l.spatialShape == volume.spatialShape else {
                    throw failure("label", "the \(tag) label's grid \(l.spatialShape) differs from the image's \(volume.spatialShape)",
                                  .string(tag))
                }
                label = l
            }
            let png = try readable { try SlicePreview(plane: plane, index: index, window: window, size: size).render(volume, label: label) }
            var resp = HTTPResponse.bytes(png, contentType: "image/png")
            resp.headers.add("Cache-Control", "no-cache")
            // What a slice browser needs to size its slider without another request.
            resp.headers.add("X-Slice-Count", String(depth))
            resp.headers.add("X-Slice-Index", String(index))
            return resp
        })
    }

    /// A file in the datastore that cannot be read or drawn is the server's problem, said as `{"detail"}`.
    static func readable<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let e as ImagingError {
            throw HTTPError(.internalServerError, "The image cannot be previewed: \(e)")
        }
    }

    static func failure(_ name: String, _ msg: String, _ input: JSONValue) -> ValidationFailure {
        ValidationFailure(type: "value_error", loc: ["query", .string(name)], msg: "Value error, \(msg)", input: input)
    }

    /// A finite number within `range`, or nil when absent.
    static func finiteQuery(_ req: HTTPRequest, _ name: String, in range: ClosedRange<Double>) throws -> Double? {
        guard let v = req.queryValue(name) else { return nil }
        guard let d = Double(v), d.isFinite, range.contains(d) else {
            throw failure(name, "\(name) must be a number in \(range.lowerBound)...\(range.upperBound)", .string(v))
        }
        return d
    }
}
