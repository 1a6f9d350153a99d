import Foundation
import HTTPServer
import Imaging
import MONAILabel
import Testing
@testable import MONAILabelServer

/// `GET /datastore/image/preview` through the real router on real NIfTI files.
@Suite(.tags(.router)) struct PreviewRoutesTests {
    /// A client whose `ct_00` is a 24x20x10 CT with a bright box, labelled (final) where the box is.
    static func client() throws -> TestClient {
        let c = try TestClient(ids: ["ct_00"], labeled: 0)
        try writeCT(into: c.studies)
        c.app.datastore.refresh()
        return c
    }

    /// `ct_00.nii.gz` (24x20x10, 1.5 x 1.5 x 3 mm) and its final label (the box) under `studies`.
    static func writeCT(into studies: URL) throws {
        let (nx, ny, nz) = (24, 20, 10)
        var ct = [Int16](repeating: -1000, count: nx * ny * nz), label = [UInt8](repeating: 0, count: nx * ny * nz)
        for x in 0..<nx { for y in 0..<ny { for z in 0..<nz {
            let i = (x * ny + y) * nz + z
            let inBox = (6..<16).contains(x) && (5..<12).contains(y)
            ct[i] = inBox ? 200 : Int16(-1000 + 20 * x)
            label[i] = inBox ? 1 : 0
        } } }
        let affine = Affine([1.5, 0, 0, 0, 0, 1.5, 0, 0, 0, 0, 3, 0, 0, 0, 0, 1])
        try ImageIO.write(Volume(spatialShape: [nx, ny, nz], data: .int16(ct), affine: affine), to: studies.appendingPathComponent("ct_00.nii.gz"))
        try FileManager.default.createDirectory(at: studies.appendingPathComponent("labels/final"), withIntermediateDirectories: true)
        try ImageIO.write(Volume(spatialShape: [nx, ny, nz], data: .uint8(label), affine: affine),
                          to: studies.appendingPathComponent("labels/final/ct_00.nii.gz"))
    }

    static func pngSize(_ b: [UInt8]) -> (Int, Int)? {
        guard b.count > 24, b.prefix(8) == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] else { return nil }
        func be(_ o: Int) -> Int { b[o..<(o + 4)].reduce(0) { $0 << 8 | Int($1) } }
        return (be(16), be(20))
    }

    @Test func preview_threePlanes_arePNGsScaledWithSpacing() throws {
        let c = try Self.client()
        let axial = try c.get("/datastore/image/preview?image=ct_00&size=240")
        #expect(axial.status == 200, "\(axial.text.prefix(200))")
        #expect(axial.headers["Content-Type"] == "image/png")
        #expect(Self.pngSize(axial.body).map { [$0.0, $0.1] } == [240, 200])
        #expect(axial.headers["X-Slice-Count"] == "10")
        #expect(axial.headers["X-Slice-Index"] == "5")
        // Coronal: 24 x 1.5 mm wide, 10 x 3 mm high.
        let coronal = try c.get("/datastore/image/preview?image=ct_00&plane=coronal&index=3&size=72")
        #expect(Self.pngSize(coronal.body).map { [$0.0, $0.1] } == [72, 60])
        #expect(try c.get("/datastore/image/preview?image=ct_00&plane=sagittal&index=23").status == 200)
    }

    @Test func preview_labelOverlay_changesThePixels_presetsChangeTheWindow() throws {
        let c = try Self.client()
        let plain = try c.get("/datastore/image/preview?image=ct_00&preset=ct-soft-tissue")
        let overlaid = try c.get("/datastore/image/preview?image=ct_00&preset=ct-soft-tissue&label=final")
        #expect(plain.status == 200 && overlaid.status == 200)
        #expect(plain.body != overlaid.body)
        let lung = try c.get("/datastore/image/preview?image=ct_00&preset=ct-lung")
        #expect(lung.body != plain.body)
        #expect(try c.get("/datastore/image/preview?image=ct_00&window=400&level=40").body == plain.body)
    }

    @Test func preview_badParameters_are422NamingThem() throws {
        let c = try Self.client()
        for (query, name) in [("index=10", "index"), ("index=-1", "index"), ("plane=oblique&index=0", "plane"),
                              ("size=5000", "size"), ("size=0", "size"), ("window=nan&level=0", "window"),
                              ("window=1e400&level=0", "window"), ("window=400", "level"), ("level=40", "window"),
                              ("preset=pet", "preset"), ("index=99999999999999999999", "index")] {
            let r = try c.get("/datastore/image/preview?image=ct_00&\(query)")
            #expect(r.status == 422, "\(query)")
            #expect(r.json?["detail"]?.arrayValue?.first?["loc"]?.arrayValue?.last?.stringValue == name, "\(query): \(r.text)")
        }
        #expect(try c.get("/datastore/image/preview").status == 422)
    }

    @Test func preview_absurdSpacingAndValues_stillRenderWithinBounds() throws {
        let c = try TestClient(ids: ["odd"], labeled: 0)
        let values: [Float] = [.nan, .infinity, -.infinity, 3e38, -3e38, 0, 1, 2]
        let affine = Affine([1e30, 0, 0, 0, 0, 1e-20, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1])
        try ImageIO.write(Volume(spatialShape: [2, 2, 2], data: .float32(values), affine: affine),
                          to: c.studies.appendingPathComponent("odd.nii.gz"))
        c.app.datastore.refresh()
        for plane in ["axial", "coronal", "sagittal"] {
            let r = try c.get("/datastore/image/preview?image=odd&plane=\(plane)&size=1024")
            #expect(r.status == 200, "\(plane): \(r.text.prefix(200))")
            let size = try #require(Self.pngSize(r.body))
            #expect(size.0 <= 1024 && size.1 <= 1024)
        }
    }

    @Test func preview_unknownImageOrLabel_is404() throws {
        let c = try Self.client()
        #expect(try c.get("/datastore/image/preview?image=nope").status == 404)
        #expect(try c.get("/datastore/image/preview?image=ct_00&label=original").status == 404)
    }
}
