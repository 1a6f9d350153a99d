import Foundation
import Testing
@testable import Imaging
@testable import TorchCheckpoint

/// Hostile files (issue 14): images whose header or geometry claims gigabytes, and a checkpoint whose pickle
/// nests a tuple 20,000 deep as a dict key. Each is refused with a clear error, at upload where the header says
/// enough, and the server keeps serving, also after a restart with the file in its store.
@Suite(.serialized) struct FileProbes {
    /// A NIfTI-1 file written by hand: `dims` of uint8 `voxels`, sform scaling each axis by `spacing` mm.
    static func nifti(dims: [Int], spacing: Double, voxels: [UInt8]) -> [UInt8] {
        var h = [UInt8](repeating: 0, count: 352)
        func put<T>(_ v: T, _ offset: Int) { withUnsafeBytes(of: v) { for (k, b) in $0.enumerated() { h[offset + k] = b } } }
        put(Int32(348), 0)
        put(Int16(dims.count), 40)
        for (k, n) in dims.enumerated() { put(Int16(n), 42 + 2 * k) }
        put(Int16(2), 70)  // uint8
        put(Int16(8), 72)
        for k in 0..<4 { put(Float(k == 0 ? 1 : spacing), 76 + 4 * k) }
        put(Float(352), 108)
        put(Float(1), 112)
        put(Int16(1), 254)  // sform_code
        for r in 0..<3 { put(Float(spacing), 280 + 16 * r + 4 * r) }
        for (k, b) in "n+1\0".utf8.enumerated() { h[344 + k] = b }
        return h + voxels
    }

    func write(_ bytes: [UInt8], _ url: URL) throws { try Data(bytes).write(to: url) }

    /// The Spacing killer: 2x2x2 voxels at 2000 mm, which the model resamples to 1.5 mm (1335^3 voxels).
    @Test func hugeSpacingImage_inferenceIsRefusedAndServerLivesAndRestarts() throws {
        let s = try ProbeServer()
        let file = s.dir.url.appendingPathComponent("spaced.nii")
        try write(Self.nifti(dims: [2, 2, 2], spacing: 2000, voxels: [UInt8](repeating: 100, count: 8)), file)
        let up = try s.curl("PUT", "/datastore/image?image=spaced", ["-F", "file=@\(file.path)"])
        #expect(up.status == 200, "\(up.status) \(up.body.prefix(200))")
        let infer = try s.curl("POST", "/infer/segmentation_spleen?image=spaced&output=json", ["-F", "params={}"])
        #expect(infer.status == 422, "\(infer.status) \(infer.body.prefix(300))")
        #expect(detail(infer.body).contains("MONAI_LABEL_MAX_VOXELS"), "\(infer.body.prefix(300))")
        try s.expectAlive("2000 mm spacing")

        try s.restart()
        try s.expectAlive("restart with the 2000 mm image in the store")
        #expect(try s.curl("POST", "/infer/segmentation_spleen?image=spaced&output=json", ["-F", "params={}"]).status == 422)
    }

    /// The bomb: a ~2 MB `.nii.gz` whose header claims 1 GiB of uint8 voxels (1024^3, a size deflate could
    /// hold, so only the voxel limit refuses it): 422 at upload; placed in the studies folder behind the server's back, the server still
    /// starts and inference on it is a 422.
    @Test func gzipClaimingMoreThanMaxVoxels_isRefusedAtUploadAndAfterRestart() throws {
        let s = try ProbeServer()
        var rng = UInt64(0x9E37_79B9_7F4A_7C15)
        let noise = (0..<(2 << 20)).map { _ -> UInt8 in
            rng = rng &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return UInt8(truncatingIfNeeded: rng >> 56)
        }
        let plain = Self.nifti(dims: [1024, 1024, 1024], spacing: 1, voxels: noise)
        let gz = try plain.withUnsafeBytes { try Zlib.gzip($0) }
        let file = s.dir.url.appendingPathComponent("bomb.nii.gz")
        try write(gz, file)
        let up = try s.curl("PUT", "/datastore/image?image=bomb", ["-F", "file=@\(file.path)"])
        #expect(up.status == 422, "\(up.status) \(up.body.prefix(300))")
        #expect(detail(up.body).contains("MONAI_LABEL_MAX_VOXELS"), "\(up.body.prefix(300))")
        #expect(!detail(up.body).contains(s.dir.url.path), "a server path leaked: \(up.body.prefix(300))")
        try s.expectAlive("voxel bomb upload")

        try FileManager.default.copyItem(at: file, to: s.studies.appendingPathComponent("bomb.nii.gz"))
        try s.restart()
        try s.expectAlive("restart with the voxel bomb in the store")
        let infer = try s.curl("POST", "/infer/segmentation_spleen?image=bomb&output=json", ["-F", "params={}"])
        #expect(infer.status == 422, "\(infer.status) \(infer.body.prefix(300))")
        try s.expectAlive("inference on the voxel bomb")
    }

    /// The setting reaches the process that decodes images: with a limit below the demo volumes (96x96x64),
    /// inference on them is a 422 naming it and the server keeps answering.
    @Test func maxVoxelsSetting_appliesToInference() throws {
        let s = try ProbeServer(environment: ["MONAI_LABEL_MAX_VOXELS": "100000"])
        let r = try s.curl("POST", "/infer/segmentation_spleen?image=spleen_00&output=json", ["-F", "params={}"])
        #expect(r.status == 422, "\(r.status) \(r.body.prefix(300))")
        #expect(detail(r.body).contains("MONAI_LABEL_MAX_VOXELS"), "\(r.body.prefix(300))")
        #expect(s.isRunning)
        #expect(try s.curl("GET", "/info/", timeout: 30).status == 200)
    }

    /// A torch zip checkpoint whose data.pkl is `{((((...(None,)...),): None}` nested 20,000 deep.
    static func deepKeyCheckpoint(_ url: URL) throws {
        var pickle: [UInt8] = [0x80, 2, 0x7D, 0x4E]
        pickle += [UInt8](repeating: 0x85, count: 20_000)
        pickle += [0x4E, 0x73, 0x2E]
        let fd = open(url.path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw ProbeError("cannot create \(url.path)") }
        defer { close(fd) }
        var zip = ZipWriter(sink: .file(descriptor: fd, path: url.path))
        for (name, bytes) in [("data.pkl", pickle), ("byteorder", Array("little".utf8)), ("version", Array("3\n".utf8))] {
            try zip.add(name: "archive/" + name, bytes: bytes)
        }
        try zip.finish()
    }

    @Test func deepPickleCheckpoint_putModelIsRefusedAndWorkingWeightsStay() throws {
        let s = try ProbeServer()
        let file = s.dir.url.appendingPathComponent("deep.pt")
        try Self.deepKeyCheckpoint(file)
        let r = try s.curl("PUT", "/model/segmentation_spleen", ["-F", "file=@\(file.path)"])
        #expect(r.status == 422, "\(r.status) \(r.body.prefix(300))")
        #expect(detail(r.body).contains("deeper"), "\(r.body.prefix(300))")
        #expect(!FileManager.default.fileExists(atPath: s.modelDir.appendingPathComponent("segmentation_spleen.pt").path))
        try s.expectAlive("deep pickle PUT /model")
    }

    @Test func deepPickleCheckpoint_inModelFolder_serverStartsAndInferenceFailsClearly() throws {
        let s = try ProbeServer()
        let published = s.modelDir.appendingPathComponent("segmentation_spleen.pt")
        try FileManager.default.createDirectory(at: s.modelDir, withIntermediateDirectories: true)
        try Self.deepKeyCheckpoint(published)
        try s.restart()
        #expect(try s.curl("GET", "/info/", timeout: 30).status == 200)
        let r = try s.curl("POST", "/infer/segmentation_spleen?image=spleen_00&output=json", ["-F", "params={}"])
        #expect(r.status >= 400 && r.status < 600, "\(r.status) \(r.body.prefix(300))")
        #expect(detail(r.body).contains("deeper"), "\(r.body.prefix(300))")
        #expect(s.isRunning, "server died loading the deep checkpoint:\n\(s.log)")
        #expect(try s.curl("GET", "/info/", timeout: 30).status == 200)
        // Once the file is gone the model works again without a restart.
        try FileManager.default.removeItem(at: published)
        try s.expectAlive("deep pickle in the model folder")
    }
}
