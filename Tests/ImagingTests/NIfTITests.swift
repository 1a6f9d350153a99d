import Foundation
import TestSupport
import Testing
@testable import Imaging

/// Helpers to make and patch small NIfTI files.
enum NiftiFiles {
    static let oblique = Affine([
        0.0, -0.9, 0.1, 12.5,
        -0.8, 0.0, 0.0, 30.25,
        0.05, 0.0, 2.5, -60.0,
        0, 0, 0, 1,
    ])

    static func sample(_ type: VoxelType, shape: [Int] = [5, 4, 3], channels: Int = 1) -> Volume {
        let n = channels * shape.reduce(1, *)
        let values = (0..<n).map { i -> Float in
            switch type {
            case .uint8, .uint16, .uint32: return Float(i * 7 % 250)
            case .float32, .float64: return Float(i) * 0.37 - 11.5
            default: return Float(i * 7 % 250) - 120
            }
        }
        return Volume(
            spatialShape: shape, channels: channels, data: VoxelData.converting(values, to: type), affine: oblique)
    }

    /// Writes an uncompressed NIfTI-1 of `v`, lets `patch` edit the bytes, then stores it (gzipped when asked).
    static func make(
        _ v: Volume, in dir: URL, name: String, gzip: Bool = false, patch: (inout [UInt8]) -> Void = { _ in }
    ) throws -> URL {
        let plain = dir.appendingPathComponent("plain-\(UUID().uuidString).nii")
        try NIfTI.write(v, to: plain)
        var bytes = [UInt8](try Data(contentsOf: plain))
        try FileManager.default.removeItem(at: plain)
        patch(&bytes)
        let url = dir.appendingPathComponent(name)
        let out = gzip ? try bytes.withUnsafeBytes { try Zlib.gzip($0) } : bytes
        try Data(out).write(to: url)
        return url
    }

    static func put<T>(_ value: T, at offset: Int, in bytes: inout [UInt8]) {
        withUnsafeBytes(of: value) { raw in
            for (k, b) in raw.enumerated() { bytes[offset + k] = b }
        }
    }

    static func pythonHasNibabel() -> Bool {
        (try? python("import nibabel, numpy"))?.status == 0
    }

    static func python(_ code: String) throws -> (status: Int32, output: String) {
        try runProcess(URL(fileURLWithPath: "/usr/bin/env"), ["python3", "-c", code])
    }
}

@Suite(.tags(.unit)) struct NIfTIRoundTripTests {
    @Test(arguments: VoxelType.allCases, [".nii", ".nii.gz"])
    func write_thenRead_preservesTypeValuesAndAffine(type: VoxelType, ext: String) throws {
        let dir = try Fixtures.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let v = NiftiFiles.sample(type)
        let url = dir.appendingPathComponent("img\(ext)")
        try NIfTI.write(v, to: url)
        let r = try NIfTI.read(url)
        #expect(r.data == v.data)
        #expect(r.shape == v.shape)
        for (a, b) in zip(r.affine.m, v.affine.m) { #expect(abs(a - b) < 1e-6) }
        #expect(r.source?.storedType == type)
    }

    /// Larger than one gzip member: the file is several concatenated members, which must read back as one.
    @Test func largeVolume_multiMemberGzip_roundTrips() throws {
        let dir = try Fixtures.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let values = (0..<(70 * 60 * 50)).map { UInt8(($0 / 7) % 5) }
        let v = Volume(spatialShape: [70, 60, 50], data: .uint8(values), affine: NiftiFiles.oblique)
        let url = dir.appendingPathComponent("big.nii.gz")
        try NIfTI.write(v, to: url, dtype: nil, gzipMemberSize: 50_000)
        #expect(try NIfTI.read(url).data == v.data)
        if NiftiFiles.pythonHasNibabel() {
            let r = try NiftiFiles.python("""
                import nibabel as nib, numpy as np
                d = np.asanyarray(nib.load('\(url.path)').dataobj)
                print(d.shape, int(d.astype(np.int64).sum()), int(d[69, 59, 49]), int(d[1, 2, 3]))
                """)
            let sum = values.reduce(0) { $0 + Int($1) }
            let last = values[values.count - 1], probe = values[(1 * 60 + 2) * 50 + 3]
            #expect(r.output.contains("(70, 60, 50) \(sum) \(last) \(probe)"), "\(r.output)")
        }
    }

    @Test func multiChannel_and2D_roundTrip() throws {
        let dir = try Fixtures.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let four = NiftiFiles.sample(.float32, shape: [4, 3, 2], channels: 3)
        try NIfTI.write(four, to: dir.appendingPathComponent("c.nii.gz"))
        let r4 = try NIfTI.read(dir.appendingPathComponent("c.nii.gz"))
        #expect(r4.shape == [3, 4, 3, 2])
        #expect(r4.data == four.data)
        let flat = Volume(spatialShape: [6, 5], data: .int16((0..<30).map { Int16($0) }), affine: .identity)
        try NIfTI.write(flat, to: dir.appendingPathComponent("f.nii"))
        let r2 = try NIfTI.read(dir.appendingPathComponent("f.nii"))
        #expect(r2.shape == [1, 6, 5])
        #expect(r2.data == flat.data)
    }

    @Test func fourDWithSingletonTime_isThreeD() throws {
        let dir = try Fixtures.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let v = NiftiFiles.sample(.int16)
        let url = try NiftiFiles.make(v, in: dir, name: "t.nii") { b in
            NiftiFiles.put(Int16(4), at: 40, in: &b)
            NiftiFiles.put(Int16(1), at: 48, in: &b)
        }
        let r = try NIfTI.read(url)
        #expect(r.shape == [1, 5, 4, 3])
        #expect(r.data == v.data)
    }

    @Test func nifti2Source_isWrittenAsNifti2() throws {
        let dir = try Fixtures.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        var v = NiftiFiles.sample(.float64)
        v.source = SourceHeader(format: .nifti2, storedType: .float64)
        let url = dir.appendingPathComponent("n2.nii.gz")
        try NIfTI.write(v, to: url)
        let r = try NIfTI.read(url)
        #expect(r.source?.format == .nifti2)
        #expect(r.data == v.data)
        for (a, b) in zip(r.affine.m, v.affine.m) { #expect(abs(a - b) < 1e-12) }
    }

    @Test func sformCode_takesPrecedence_overQform() throws {
        let dir = try Fixtures.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = try NiftiFiles.make(NiftiFiles.sample(.int16), in: dir, name: "s.nii") { b in
            // qform still valid but different: a pure identity rotation with another offset.
            NiftiFiles.put(Float(0), at: 256, in: &b)
            NiftiFiles.put(Float(0), at: 260, in: &b)
            NiftiFiles.put(Float(0), at: 264, in: &b)
            NiftiFiles.put(Float(99), at: 268, in: &b)
            NiftiFiles.put(Int16(2), at: 254, in: &b)
        }
        let r = try NIfTI.read(url)
        for (a, e) in zip(r.affine.m, NiftiFiles.oblique.m) { #expect(abs(a - e) < 1e-6) }
        #expect(r.source?.sformCode == 2)
    }

    @Test func qformOnly_usesQuaternion() throws {
        let dir = try Fixtures.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        // An orthogonal affine (a qform cannot hold shear): LPS-like, with offsets.
        var v = NiftiFiles.sample(.int16)
        v.affine = Affine([-0.8, 0, 0, 40, 0, -0.9, 0, 30, 0, 0, 2.5, -60, 0, 0, 0, 1])
        let url = try NiftiFiles.make(v, in: dir, name: "q.nii") { b in
            NiftiFiles.put(Int16(0), at: 254, in: &b)
            // Garbage sform that must be ignored.
            for k in 0..<12 { NiftiFiles.put(Float(7), at: 280 + 4 * k, in: &b) }
        }
        let r = try NIfTI.read(url)
        for (a, e) in zip(r.affine.m, v.affine.m) { #expect(abs(a - e) < 1e-5) }
        #expect(r.source?.sformCode == 0 && r.source?.qformCode == 1)
    }

    @Test func noTransform_fallsBackToPixdimWithXFlip() throws {
        let dir = try Fixtures.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        var v = NiftiFiles.sample(.uint8)
        v.affine = Affine([2, 0, 0, 0, 0, 3, 0, 0, 0, 0, 4, 0, 0, 0, 0, 1])
        let url = try NiftiFiles.make(v, in: dir, name: "n.nii") { b in
            NiftiFiles.put(Int16(0), at: 252, in: &b)
            NiftiFiles.put(Int16(0), at: 254, in: &b)
        }
        let r = try NIfTI.read(url)
        // nibabel: diag(-2, 3, 4) with the centre of the [5, 4, 3] grid at the origin.
        let expected: [Double] = [-2, 0, 0, 4, 0, 3, 0, -4.5, 0, 0, 4, -4, 0, 0, 0, 1]
        for (a, e) in zip(r.affine.m, expected) { #expect(abs(a - e) < 1e-9) }
    }

    @Test func sclSlopeInter_scaleToFloat32() throws {
        let dir = try Fixtures.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let v = NiftiFiles.sample(.int16)
        let url = try NiftiFiles.make(v, in: dir, name: "sc.nii.gz", gzip: true) { b in
            NiftiFiles.put(Float(2), at: 112, in: &b)
            NiftiFiles.put(Float(-1024), at: 116, in: &b)
        }
        let r = try NIfTI.read(url)
        #expect(r.data.type == .float32)
        #expect(r.floats == v.floats.map { $0 * 2 - 1024 })
        #expect(r.source?.storedType == .int16)
    }

    @Test(.enabled(if: NiftiFiles.pythonHasNibabel(), "needs python3 with nibabel"))
    func writtenLabel_opensInNibabel_withTheImageAffine() throws {
        let dir = try Fixtures.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let imageURL = try Fixtures.pipeline("ct_lps_aniso.nii.gz")
        let image = try ImageIO.load(imageURL)
        let pre = try Spacing(pixdim: [1, 1, 1])(try Orientation()(image))
        let label = try Restored(original: image)(AsDiscrete(threshold: 0)(pre))
        let out = dir.appendingPathComponent("label.nii.gz")
        try ImageIO.write(label, to: out, dtype: .uint8)
        let code = """
            import nibabel as nib, numpy as np
            a = nib.load('\(imageURL.path)'); b = nib.load('\(out.path)')
            assert b.get_data_dtype() == np.uint8, b.get_data_dtype()
            assert b.shape == a.shape, (a.shape, b.shape)
            assert np.allclose(a.affine, b.affine, atol=1e-5), (a.affine, b.affine)
            assert np.allclose(b.get_qform(), a.affine, atol=1e-5), b.get_qform()
            assert int(b.header['qform_code']) > 0 and int(b.header['sform_code']) > 0
            print('ok')
            """
        let r = try NiftiFiles.python(code)
        #expect(r.status == 0, "\(r.output)")
    }

    @Test(.enabled(if: NiftiFiles.pythonHasNibabel(), "needs python3 with nibabel"))
    func nibabelFiles_readWithNibabelsAffineAndValues() throws {
        let dir = try Fixtures.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        // Oblique sform+qform, big-endian int16, NIfTI-2 float64 and a qform-only rotated image.
        let code = """
            import nibabel as nib, numpy as np
            rng = np.random.default_rng(0)
            from nibabel.affines import from_matvec
            from nibabel.eulerangles import euler2mat
            R = euler2mat(0.3, -0.2, 0.1) @ np.diag([0.7, 0.8, 2.0])
            aff = from_matvec(R, [10.5, -20.25, 30.0])
            d = rng.integers(-1000, 1000, size=(7, 6, 5)).astype('>i2')
            nib.save(nib.Nifti1Image(d, aff), '\(dir.path)/be.nii.gz')
            n2 = nib.Nifti2Image(rng.standard_normal((4, 5, 6)), aff); nib.save(n2, '\(dir.path)/n2.nii')
            q = nib.Nifti1Image(d.astype(np.float32), aff); q.set_sform(None, code=0); q.set_qform(aff, code=1)
            nib.save(q, '\(dir.path)/q.nii.gz')
            for f in ['be.nii.gz', 'n2.nii', 'q.nii.gz']:
                im = nib.load('\(dir.path)/' + f)
                np.save('\(dir.path)/' + f + '.npy', np.asanyarray(im.dataobj).astype(np.float64))
                np.save('\(dir.path)/' + f + '.aff.npy', im.affine)
            """
        let r = try NiftiFiles.python(code)
        try #require(r.status == 0, "\(r.output)")
        for name in ["be.nii.gz", "n2.nii", "q.nii.gz"] {
            let v = try NIfTI.read(dir.appendingPathComponent(name))
            let values = try NPYArray.read(dir.appendingPathComponent(name + ".npy")).data.asDouble()
            let aff = try NPYArray.read(dir.appendingPathComponent(name + ".aff.npy")).data.asDouble()
            let ours = v.data.asDouble()
            #expect(ours.count == values.count)
            let maxDiff = zip(ours, values).reduce(0.0) { max($0, abs($1.0 - $1.1)) }
            #expect(maxDiff < 1e-4, "\(name): values differ by \(maxDiff)")
            for (a, b) in zip(v.affine.m, aff) { #expect(abs(a - b) < 1e-5, "\(name): affine \(v.affine.m) vs \(aff)") }
        }
    }
}

@Suite(.tags(.unit)) struct NIfTIHostileInputTests {
    func expectError(_ url: URL, containing text: String) {
        #expect {
            _ = try NIfTI.read(url)
        } throws: { error in
            guard let e = error as? ImagingError else { return false }
            return e.message.lowercased().contains(text.lowercased())
        }
    }

    @Test func truncatedGzip_isRefused() throws {
        let dir = try Fixtures.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("t.nii.gz")
        try NIfTI.write(NiftiFiles.sample(.float32, shape: [40, 30, 20]), to: url)
        let data = try Data(contentsOf: url)
        try data.prefix(data.count / 2).write(to: url)
        expectError(url, containing: "truncated")
    }

    @Test func truncatedPlainFile_isRefusedBeforeReading() throws {
        let dir = try Fixtures.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("t.nii")
        try NIfTI.write(NiftiFiles.sample(.int16), to: url)
        let data = try Data(contentsOf: url)
        try data.prefix(data.count - 10).write(to: url)
        expectError(url, containing: "truncated")
    }

    @Test(arguments: [false, true])
    func headerClaimingTwoToThe28Voxels_isRefusedWithoutAllocating(gzip: Bool) throws {
        // Under the voxel limit: what refuses it is the file being far too small for that many voxels.
        let dir = try Fixtures.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = try NiftiFiles.make(NiftiFiles.sample(.uint8), in: dir, name: gzip ? "h.nii.gz" : "h.nii", gzip: gzip) { b in
            NiftiFiles.put(Int16(4), at: 40, in: &b)
            for k in 1...4 { NiftiFiles.put(Int16(128), at: 40 + 2 * k, in: &b) }
        }
        expectError(url, containing: gzip ? "gzip file can hold" : "truncated")
    }

    @Test func hugeVoxOffsetWithLyingExtension_isRefused() throws {
        let dir = try Fixtures.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = try NiftiFiles.make(NiftiFiles.sample(.uint8), in: dir, name: "x.nii.gz", gzip: true) { b in
            NiftiFiles.put(Float(1e11), at: 108, in: &b)
            b[348] = 1
        }
        expectError(url, containing: "gzip file can hold")
    }

    @Test func negativeDimension_isRefused() throws {
        let dir = try Fixtures.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = try NiftiFiles.make(NiftiFiles.sample(.uint8), in: dir, name: "n.nii") { b in
            NiftiFiles.put(Int16(-5), at: 42, in: &b)
        }
        expectError(url, containing: "invalid dimension")
    }

    @Test func badDimCount_isRefused() throws {
        let dir = try Fixtures.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = try NiftiFiles.make(NiftiFiles.sample(.uint8), in: dir, name: "d.nii") { b in
            NiftiFiles.put(Int16(9), at: 40, in: &b)
        }
        expectError(url, containing: "number of dimensions")
    }

    @Test func wrongMagic_isRefused() throws {
        let dir = try Fixtures.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = try NiftiFiles.make(NiftiFiles.sample(.uint8), in: dir, name: "m.nii.gz", gzip: true) { b in
            b[344] = UInt8(ascii: "x")
        }
        expectError(url, containing: "magic")
    }

    @Test(arguments: [Int16(128), Int16(2304), Int16(9999)])
    func unsupportedDatatype_isRefused(code: Int16) throws {
        let dir = try Fixtures.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = try NiftiFiles.make(NiftiFiles.sample(.uint8), in: dir, name: "dt.nii") { b in
            NiftiFiles.put(code, at: 70, in: &b)
        }
        expectError(url, containing: "unsupported NIfTI datatype \(code)")
    }

    @Test func notANiftiFile_isRefused() throws {
        let dir = try Fixtures.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let garbage = dir.appendingPathComponent("g.nii")
        try Data((0..<1000).map { UInt8($0 % 251) }).write(to: garbage)
        expectError(garbage, containing: "not a NIfTI file")
        let empty = dir.appendingPathComponent("e.nii.gz")
        try Data().write(to: empty)
        expectError(empty, containing: "not a NIfTI file")
        expectError(dir.appendingPathComponent("missing.nii"), containing: "cannot open")
    }
}

@Suite(.tags(.unit)) struct HostileGeometryTests {
    @Test func nonFiniteSform_isRefusedAtRead() throws {
        let dir = try Fixtures.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = try NiftiFiles.make(NiftiFiles.sample(.uint8), in: dir, name: "nan.nii") { b in
            NiftiFiles.put(Float.nan, at: 280, in: &b)
        }
        #expect(throws: ImagingError.self) { try NIfTI.read(url) }
    }

    @Test func hugeSpacingRatio_isRefusedNotAllocated() throws {
        let v = Volume(spatialShape: [4, 4, 4], data: .uint8(Array(repeating: 1, count: 64)),
                       affine: Affine([1e12, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]))
        #expect(throws: ImagingError.self) { try Spacing(pixdim: [1, 1, 1])(v) }
        let singular = Volume(spatialShape: [2, 2, 2], data: .uint8(Array(repeating: 1, count: 8)),
                              affine: Affine([0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]))
        #expect(throws: ImagingError.self) { try Spacing(pixdim: [1, 1, 1])(singular) }
    }

    @Test func checkedVolumeInit_refusesMismatchedShapes() {
        #expect(throws: ImagingError.self) {
            try Volume(checkingShape: [2, 2, 2], channels: 2, data: .float32([1, 2, 3]), affine: .identity)
        }
        #expect(throws: ImagingError.self) {
            try Volume(checkingShape: [8], data: .float32(Array(repeating: 0, count: 8)), affine: .identity)
        }
    }
}

@Suite(.tags(.unit)) struct NIfTIMutationTests {
    /// Random byte corruption of the header: every outcome is a volume or an ImagingError, never a crash.
    @Test(arguments: [false, true])
    func corruptedHeaders_readOrThrowCleanly(gzip: Bool) throws {
        let dir = try Fixtures.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        var rng = SeededGenerator(seed: gzip ? 11 : 7)
        var read = 0, refused = 0
        for i in 0..<80 {
            let url = try NiftiFiles.make(NiftiFiles.sample(.int16), in: dir, name: "m\(i).nii" + (gzip ? ".gz" : ""), gzip: gzip) { b in
                for _ in 0..<(1 + Int(rng.next() % 4)) {
                    b[Int(rng.next() % 352)] = UInt8(truncatingIfNeeded: rng.next())
                }
            }
            do {
                let v = try NIfTI.read(url)
                #expect(v.data.count == v.channels * v.voxelCount)
                read += 1
            } catch is ImagingError {
                refused += 1
            }
        }
        #expect(read + refused == 80)
        #expect(refused > 0)
    }
}

/// Datastores read images through symbolic links; the size bound that guards allocation must be the target's.
@Test(.tags(.unit)) func read_throughSymlink_largeCompressedFile_isBoundedByTheTargetsSize() throws {
    let dir = try Fixtures.tempDir()
    defer { try? FileManager.default.removeItem(at: dir) }
    // 96^3 bytes of noise gzip to ~0.9 MB: far beyond what a link's own size (its target path) could hold.
    var state: UInt64 = 0x9E37_79B9_7F4A_7C15
    let values = (0..<(96 * 96 * 96)).map { _ -> UInt8 in
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return UInt8(truncatingIfNeeded: state >> 56)
    }
    let volume = Volume(spatialShape: [96, 96, 96], data: .uint8(values), affine: NiftiFiles.oblique)
    let target = dir.appendingPathComponent("label.nii.gz")
    try NIfTI.write(volume, to: target)
    let link = dir.appendingPathComponent("link.nii.gz")
    try FileManager.default.createSymbolicLink(at: link, withDestinationURL: target)
    let read = try NIfTI.read(link)
    #expect(read.data == volume.data)
    #expect(try FileBytes.size(link.path) == FileBytes.size(target.path))
}

@Test(.tags(.unit)) func fileBytesSize_directoryAndMissingFile_areRefused() throws {
    let dir = try Fixtures.tempDir()
    defer { try? FileManager.default.removeItem(at: dir) }
    #expect(throws: ImagingError.self) { try FileBytes.size(dir.path) }
    #expect(throws: ImagingError.self) { try FileBytes.size(dir.appendingPathComponent("missing").path) }
}
