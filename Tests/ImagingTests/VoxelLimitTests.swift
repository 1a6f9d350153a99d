import Foundation
import Testing
@testable import Imaging

/// `MONAI_LABEL_MAX_VOXELS` (default 2^30): headers and transform outputs larger than the limit are refused with
/// an error before anything of their size is allocated (issue 14). These tests rely on the default limit; none
/// changes it, since it is process-wide.
@Suite(.tags(.unit)) struct VoxelLimitTests {
    func expectLimitError(_ what: String, _ body: () throws -> Void) {
        #expect {
            try body()
        } throws: { error in
            guard let e = error as? ImagingError else { return false }
            return e.message.contains(ImagingLimits.environmentKey) && e.message.contains(what)
        }
    }

    @Test func checkVoxels_countsChannelsAndRefusesOverflowOrExcess() throws {
        #expect(ImagingLimits.maxVoxels == ImagingLimits.defaultMaxVoxels)
        #expect(try ImagingLimits.checkVoxels([1024, 1024, 1023], what: "x") == (1 << 30) - (1 << 20))
        // The bomb claimed 1024^3 voxels: reaching the limit is refused.
        expectLimitError("x") { try ImagingLimits.checkVoxels([1024, 1024, 1024], what: "x") }
        expectLimitError("x") { try ImagingLimits.checkVoxels([1024, 1024, 512], channels: 2, what: "x") }
        expectLimitError("x") { try ImagingLimits.checkVoxels([Int.max, 3], what: "x") }
        #expect(throws: ImagingError.self) { try ImagingLimits.checkVoxels([-1, 5], what: "x") }
    }

    @Test func parse_acceptsOnlyPositiveIntegers() {
        #expect(ImagingLimits.parse(" 1000 ") == 1000)
        #expect(ImagingLimits.parse("0") == nil)
        #expect(ImagingLimits.parse("-5") == nil)
        #expect(ImagingLimits.parse("1e9") == nil)
        #expect(ImagingLimits.parse(nil) == nil)
    }

    /// A small `.nii.gz` whose header claims 1024^3 voxels: refused from the header, before the gzip
    /// stream is inflated (a header under the limit that the file cannot hold is the ratio check's job).
    @Test func niftiHeader_claimingMoreThanMaxVoxels_isRefusedBeforeReading() throws {
        let dir = try Fixtures.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = try NiftiFiles.make(NiftiFiles.sample(.uint8), in: dir, name: "big.nii.gz", gzip: true) { b in
            NiftiFiles.put(Int16(3), at: 40, in: &b)
            for (k, n) in [1024, 1024, 1024].enumerated() { NiftiFiles.put(Int16(n), at: 42 + 2 * k, in: &b) }
        }
        expectLimitError("big.nii.gz") { _ = try NIfTI.read(url) }
        expectLimitError("big.nii.gz") { try ImageIO.checkHeader(url, ext: ".nii.gz") }
    }

    @Test(arguments: [".nii", ".nii.gz"])
    func niftiReadGrid_matchesTheFullRead_andRefusesBombsFromTheHeader(ext: String) throws {
        let dir = try Fixtures.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("g" + ext)
        try NIfTI.write(NiftiFiles.sample(.int16, shape: [7, 5, 3], channels: 2), to: url)
        #expect(try NIfTI.readGrid(url) == NIfTI.read(url).grid)
        #expect(try ImageIO.grid(url) == NIfTI.read(url).grid)
        let bomb = try NiftiFiles.make(NiftiFiles.sample(.uint8), in: dir, name: "b" + ext, gzip: ext == ".nii.gz") { b in
            NiftiFiles.put(Int16(3), at: 40, in: &b)
            for k in 0..<3 { NiftiFiles.put(Int16(1024), at: 42 + 2 * k, in: &b) }
        }
        expectLimitError("b" + ext) { _ = try ImageIO.grid(bomb) }
    }

    @Test func nrrdHeader_claimingMoreThanMaxVoxels_isRefusedBeforeReading() throws {
        let dir = try Fixtures.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("big.nrrd")
        let header = "NRRD0004\ntype: uint8\ndimension: 3\nsizes: 2048 2048 2048\nencoding: gzip\n\n"
        try Data(header.utf8 + [0x1F, 0x8B, 0, 0]).write(to: url)
        expectLimitError("NRRD") { _ = try NRRD.read(url) }
        expectLimitError("big.nrrd") { try ImageIO.checkHeader(url, ext: ".nrrd") }
        expectLimitError("big.nrrd") { _ = try ImageIO.grid(url) }
    }

    @Test func nrrdReadGrid_matchesTheFullRead() throws {
        let dir = try Fixtures.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("g.nrrd")
        try NRRD.write(NiftiFiles.sample(.float32, shape: [6, 5, 4]), to: url)
        #expect(try NRRD.readGrid(url) == NRRD.read(url).grid)
        try ImageIO.checkHeader(url, ext: ".nrrd")
    }

    /// The killer: 2x2x2 voxels at 2000 mm resampled to 1.5 mm would be 1335^3 voxels (9.5 GB of floats).
    @Test func spacing_2x2x2At2000mm_isRefusedBeforeAllocating() throws {
        let v = Volume(spatialShape: [2, 2, 2], data: .float32([Float](repeating: 1, count: 8)),
                       affine: Affine([2000, 0, 0, 0, 0, 2000, 0, 0, 0, 0, 2000, 0, 0, 0, 0, 1]))
        expectLimitError("Spacing output") { _ = try Spacing(pixdim: [1.5, 1.5, 1.5])(v) }
        // Within the limit the same volume resamples normally.
        let coarse = try Spacing(pixdim: [500, 500, 500])(v)
        #expect(coarse.spatialShape == [5, 5, 5])
    }

    @Test func resampleResizeAndPad_beyondTheLimit_areRefused() throws {
        let v = Volume(spatialShape: [2, 2, 2], data: .float32([Float](repeating: 1, count: 8)), affine: .identity)
        expectLimitError("Resize output") { _ = try Resize(spatialSize: [2048, 2048, 2048])(v) }
        expectLimitError("crop/pad output") { _ = try SpatialPad(spatialSize: [4096, 4096, 128])(v) }
        let grid = Grid(spatialShape: [2048, 2048, 2048], affine: .identity)
        expectLimitError("SpatialResample output") { _ = try SpatialResample.resample(v, to: grid, mode: .bilinear) }
    }

    @Test func crop_boxWhoseSizeOverflows_isRefusedNotTrapped() throws {
        let v = Volume(spatialShape: [2, 2, 2], data: .float32([Float](repeating: 1, count: 8)), affine: .identity)
        let box = SpatialBox(start: [Int.min, 0, 0], end: [Int.max, 1, 1])
        #expect(throws: ImagingError.self) { _ = try v.cropped(to: box) }
    }
}
