import Foundation
import Testing
@testable import Imaging

@Suite(.tags(.unit)) struct NRRDTests {
    @Test(arguments: [true, false])
    func write_thenRead_roundTripsInRAS(compress: Bool) throws {
        let dir = try Fixtures.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let v = NiftiFiles.sample(.int16)
        let url = dir.appendingPathComponent("x.nrrd")
        try NRRD.write(v, to: url, compress: compress)
        let r = try NRRD.read(url)
        #expect(r.data == v.data)
        #expect(r.shape == v.shape)
        for (a, b) in zip(r.affine.m, v.affine.m) { #expect(abs(a - b) < 1e-12) }
        let header = String(decoding: try Data(contentsOf: url).prefix(600), as: UTF8.self)
        #expect(header.contains("space: left-posterior-superior"))
        #expect(header.contains("encoding: \(compress ? "gzip" : "raw")"))
    }

    @Test func handWrittenLPSHeader_becomesRASAffine() throws {
        let dir = try Fixtures.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let header = """
            NRRD0004
            type: short
            dimension: 3
            space: left-posterior-superior
            sizes: 2 3 1
            space directions: (0.8,0,0) (0,0.9,0) (0,0,2.5)
            kinds: domain domain domain
            endian: big
            encoding: raw
            space origin: (-40,-30,-60)


            """
        var bytes = [UInt8](header.utf8)
        // Big-endian shorts 0...5 in file order (x fastest).
        for i in 0..<6 { bytes += [0, UInt8(i)] }
        let url = dir.appendingPathComponent("h.nrrd")
        try Data(bytes).write(to: url)
        let v = try NRRD.read(url)
        #expect(v.affine.m == [-0.8, 0, 0, 40, 0, -0.9, 0, 30, 0, 0, 2.5, -60, 0, 0, 0, 1])
        #expect(v.spatialShape == [2, 3, 1])
        // Voxel (x, y) holds x + 2y.
        #expect(v.data == .int16([0, 2, 4, 1, 3, 5]))
        // Same grid as the NIfTI fixture's convention: LPS orientation.
        #expect(AxisOrientation.axcodes(of: v.affine) == "LPS")
    }

    @Test func segNrrd_multiChannel_writesSegmentKeys() throws {
        let dir = try Fixtures.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let v = Volume(spatialShape: [3, 2, 2], channels: 2, data: .uint8((0..<24).map { UInt8($0 % 2) }), affine: NiftiFiles.oblique)
        let url = dir.appendingPathComponent("s.seg.nrrd")
        try ImageIO.write(v, to: url, segments: [
            NRRD.Segment(id: "spleen", name: "spleen", labelValue: 1, color: [1, 0, 0]),
            NRRD.Segment(id: "liver", name: "liver", labelValue: 2),
        ])
        let f = try NRRD.readFile(url)
        #expect(f.volume.shape == [2, 3, 2, 2])
        #expect(f.volume.data == v.data)
        #expect(f.keyValues["Segment0_ID"] == "spleen")
        #expect(f.keyValues["Segment1_Name"] == "liver")
        #expect(f.keyValues["Segment0_Color"] == "1.0 0.0 0.0")
        #expect(f.fields["kinds"] == "list domain domain domain")
        for (a, b) in zip(f.volume.affine.m, v.affine.m) { #expect(abs(a - b) < 1e-12) }
    }

    @Test func brokenNrrd_givesClearErrors() throws {
        let dir = try Fixtures.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("t.nrrd")
        try NRRD.write(NiftiFiles.sample(.float32, shape: [30, 20, 10]), to: url)
        let full = try Data(contentsOf: url)
        try full.prefix(full.count - 200).write(to: url)
        #expect(throws: ImagingError.self) { try NRRD.read(url) }
        for (header, text) in [
            ("NRRD0004\ntype: complex\ndimension: 3\nsizes: 1 1 1\nencoding: raw\n\n", "type"),
            ("NRRD0004\ntype: short\ndimension: 3\nsizes: 1 1 1\ndata file: x.raw\nencoding: raw\n\n", "detached"),
            ("NRRD0004\ntype: short\ndimension: 3\nsizes: 1000 1000 100\nencoding: gzip\n\n", "compressed"),
            ("NRRD0004\ntype: short\ndimension: 3\nsizes: 10000 10000 100\nencoding: gzip\n\n", "MONAI_LABEL_MAX_VOXELS"),
            ("NRRD0004\ntype: short\ndimension: 3\nsizes: 1 -1 1\nencoding: raw\n\n", "sizes"),
            ("P5\n", "magic"),
        ] {
            try Data(header.utf8).write(to: url)
            #expect {
                _ = try NRRD.read(url)
            } throws: { ($0 as? ImagingError)?.message.contains(text) ?? false }
        }
    }

    /// Random corruption of header characters: a volume or an ImagingError, never a crash.
    @Test func corruptedHeaders_readOrThrowCleanly() throws {
        let dir = try Fixtures.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("m.nrrd")
        try NRRD.write(NiftiFiles.sample(.int16), to: url, compress: false)
        let original = [UInt8](try Data(contentsOf: url))
        let headerEnd = try #require(String(decoding: original, as: UTF8.self).range(of: "\n\n")).lowerBound.utf16Offset(
            in: String(decoding: original, as: UTF8.self))
        var rng = SeededGenerator(seed: 3)
        let alphabet = Array("0123456789 -,.()abcdefgnrwxyz:=\n".utf8)
        for _ in 0..<200 {
            var b = original
            for _ in 0..<(1 + Int(rng.next() % 3)) {
                b[Int(rng.next() % UInt64(headerEnd))] = alphabet[Int(rng.next() % UInt64(alphabet.count))]
            }
            try Data(b).write(to: url)
            do {
                let v = try NRRD.read(url)
                #expect(v.data.count == v.channels * v.voxelCount)
            } catch is ImagingError {}
        }
    }

    @Test func imageIO_picksFormatByExtension() throws {
        let dir = try Fixtures.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let v = NiftiFiles.sample(.uint8)
        for ext in [".nii", ".nii.gz", ".nrrd", ".seg.nrrd"] {
            let url = try ImageIO.writeTemporary(v, resultExtension: ext, dtype: .uint8, directory: dir)
            #expect(url.lastPathComponent.hasSuffix(ext))
            #expect(try ImageIO.load(url).data == v.data)
        }
        #expect(throws: ImagingError.self) { try ImageIO.writeTemporary(v, resultExtension: ".png", directory: dir) }
        #expect(VoxelType(numpyName: "uint8") == .uint8)
        #expect(VoxelType(numpyName: "float") == .float64)
    }
}

@Suite(.tags(.unit)) struct NPYTests {
    @Test(arguments: [VoxelType.float32, .float64, .int64, .int32, .int16, .uint8])
    func encode_thenParse_roundTrips(type: VoxelType) throws {
        let a = try NPYArray(shape: [2, 3, 4], data: VoxelData.converting((0..<24).map { Float($0) - 5 }, to: type))
        let b = try NPYArray.parse(a.encoded())
        #expect(b == a)
        #expect(a.encoded().count % 64 == 24 * type.size % 64)
    }

    @Test func bool_andFortranOrder_andBigEndian() throws {
        func file(_ header: String, _ payload: [UInt8]) -> Data {
            var h = header
            let pad = (64 - (10 + h.utf8.count + 1) % 64) % 64
            h += String(repeating: " ", count: pad) + "\n"
            let n = UInt16(h.utf8.count)
            return Data([0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(n & 0xff), UInt8(n >> 8)] + Array(h.utf8) + payload)
        }
        let b = try NPYArray.parse(file("{'descr': '|b1', 'fortran_order': False, 'shape': (3,), }", [1, 0, 1]))
        #expect(b.isBool && b.data == .uint8([1, 0, 1]))
        // Fortran order [[0, 1, 2], [3, 4, 5]] is stored column-major: 0 3 1 4 2 5.
        let f = try NPYArray.parse(file("{'descr': '<i2', 'fortran_order': True, 'shape': (2, 3), }", [0, 0, 3, 0, 1, 0, 4, 0, 2, 0, 5, 0]))
        #expect(f.data == .int16([0, 1, 2, 3, 4, 5]))
        let be = try NPYArray.parse(file("{'descr': '>i4', 'fortran_order': False, 'shape': (2,), }", [0, 0, 1, 0, 255, 255, 255, 255]))
        #expect(be.data == .int32([256, -1]))
        #expect(throws: ImagingError.self) { try NPYArray.parse(file("{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }", [0, 0, 0, 0, 0, 0, 0, 0])) }
        #expect(throws: ImagingError.self) { try NPYArray.parse(file("{'descr': '<f4', 'fortran_order': False, 'shape': (100,), }", [0, 0])) }
        #expect(throws: ImagingError.self) { try NPYArray.parse(Data("not numpy".utf8)) }
    }

    @Test func fixtureArrays_readWithTheirShapes() throws {
        let p = try NPYArray.read(try Fixtures.pipeline("ct_lps_aniso.preprocessed.npy"))
        #expect(p.shape == [1, 56, 54, 58] && p.data.type == .float32)
        let r = try NPYArray.read(try Fixtures.pipeline("ct_lps_aniso.result.npy"))
        #expect(r.shape == [70, 60, 24] && r.data.type == .uint8)
    }

    @Test(.enabled(if: NiftiFiles.pythonHasNibabel(), "needs python3 with numpy"))
    func numpyWrittenFiles_parse() throws {
        let dir = try Fixtures.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let code = """
            import numpy as np
            a = np.arange(24, dtype='<f8').reshape(2, 3, 4) * 0.5
            np.save('\(dir.path)/c.npy', a)
            np.save('\(dir.path)/f.npy', np.asfortranarray(a))
            np.save('\(dir.path)/b.npy', a > 5)
            """
        let r = try NiftiFiles.python(code)
        try #require(r.status == 0, "\(r.output)")
        let expected = (0..<24).map { Double($0) * 0.5 }
        #expect(try NPYArray.read(dir.appendingPathComponent("c.npy")).data == .float64(expected))
        #expect(try NPYArray.read(dir.appendingPathComponent("f.npy")).data == .float64(expected))
        #expect(try NPYArray.read(dir.appendingPathComponent("b.npy")).data == .uint8(expected.map { $0 > 5 ? 1 : 0 }))
    }
}
