import Foundation
import Testing
@testable import Imaging

func volume(_ shape: [Int], channels: Int = 1, affine: Affine = .identity, _ f: (Int) -> Float) -> Volume {
    let n = channels * shape.reduce(1, *)
    return Volume(spatialShape: shape, channels: channels, data: .float32((0..<n).map(f)), affine: affine)
}

func close(_ a: [Float], _ b: [Float], _ tol: Float = 1e-5) -> Bool {
    a.count == b.count && zip(a, b).allSatisfy { abs($0 - $1) <= tol }
}

/// Index of voxel `(i, j, k)` of channel 0.
func at(_ v: Volume, _ i: Int, _ j: Int, _ k: Int) -> Float {
    let (_, ny, nz) = v.dims3
    return v.floats[(i * ny + j) * nz + k]
}

@Suite(.tags(.unit)) struct OrientationTests {
    static let lps = Affine([-0.8, 0, 0, 40, 0, -0.9, 0, 30, 0, 0, 2.5, -60, 0, 0, 0, 1])

    @Test(arguments: ["RAS", "LPS", "PIR", "SAL", "ILA"])
    func orientation_keepsEveryVoxelAtItsWorldPosition(codes: String) throws {
        let v = volume([4, 3, 5], affine: Self.lps) { Float($0) }
        let o = try Orientation(axcodes: codes)(v)
        #expect(AxisOrientation.axcodes(of: o.affine) == codes)
        #expect(o.data.type == .float32)
        let inv = try #require(v.affine.inverted())
        let (nx, ny, nz) = o.dims3
        for i in 0..<nx {
            for j in 0..<ny {
                for k in 0..<nz {
                    let w = o.affine.apply((Double(i), Double(j), Double(k)))
                    let p = inv.apply(w)
                    let src = at(v, Int(p.0.rounded()), Int(p.1.rounded()), Int(p.2.rounded()))
                    #expect(at(o, i, j, k) == src)
                }
            }
        }
    }

    @Test func orientation_lpsToRas_flipsAsMONAI() throws {
        let v = Volume(spatialShape: [2, 3, 1], data: .int16((0..<6).map { Int16($0) }), affine: Self.lps)
        let o = try Orientation()(v)
        // Flipped along x and y; the voxel type is kept.
        #expect(o.data == .int16([5, 4, 3, 2, 1, 0]))
        let expected: [Double] = [0.8, 0, 0, 40 - 0.8, 0, 0.9, 0, 30 - 1.8, 0, 0, 2.5, -60, 0, 0, 0, 1]
        for (a, e) in zip(o.affine.m, expected) { #expect(abs(a - e) < 1e-12) }
    }

    @Test func orientation_badAxcodes_throw() {
        let v = volume([2, 2, 2]) { Float($0) }
        #expect(throws: ImagingError.self) { try Orientation(axcodes: "RAX")(v) }
        #expect(throws: ImagingError.self) { try Orientation(axcodes: "RRS")(v) }
    }
}

@Suite(.tags(.unit)) struct SpacingTests {
    @Test func spacing_halvingVoxelSize_interpolatesLinearly() throws {
        let v = volume([3, 2, 2], affine: Affine([2, 0, 0, 5, 0, 2, 0, 0, 0, 0, 2, 0, 0, 0, 0, 1])) { i in
            Float(i / 4) * 10
        }
        let s = try Spacing(pixdim: [1, 1, 1])(v)
        // MONAI: round((n - 1) * 2 / 1 + 1) voxels, origin kept.
        #expect(s.spatialShape == [5, 3, 3])
        #expect(s.affine.m == [1, 0, 0, 5, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1])
        for i in 0..<5 { #expect(abs(at(s, i, 1, 1) - Float(5 * i)) < 1e-5) }
    }

    @Test func spacing_nearest_roundsHalfToEven() throws {
        let v = volume([4, 1, 1], affine: Affine([2, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1])) { Float($0) }
        let s = try Spacing(pixdim: [1, 1, 1], mode: .nearest)(v)
        #expect(s.spatialShape == [7, 1, 1])
        // Sample positions 0, 0.5, 1, 1.5, 2, 2.5, 3 -> grid_sample's nearbyint.
        #expect(s.floats == [0, 0, 1, 2, 2, 2, 3])
    }

    @Test func spacing_withinTolerance_keepsGridAndValues() throws {
        let v = volume([3, 3, 3], affine: Affine([1.0005, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1])) { Float($0) }
        let s = try Spacing(pixdim: [1, 1, 1])(v)
        #expect(s.spatialShape == [3, 3, 3])
        #expect(s.floats == v.floats)
    }

    @Test func spacing_roundsOutputShapeHalfToEven() throws {
        // 24 slices of 2.5 mm to 1 mm: (23 * 2.5) + 1 = 58.5 -> 58, as NumPy's round.
        let v = volume([2, 2, 24], affine: Affine([1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 2.5, 0, 0, 0, 0, 1])) { Float($0) }
        #expect(try Spacing(pixdim: [1, 1, 1]).targetGrid(of: v).spatialShape == [2, 2, 58])
    }

    @Test func spacing_obliqueAffine_keepsRotation() throws {
        let c = cos(0.3), s = sin(0.3)
        let v = volume([6, 5, 4], affine: Affine([c * 2, -s * 2, 0, 1, s * 2, c * 2, 0, 2, 0, 0, 3, 3, 0, 0, 0, 1])) {
            Float($0)
        }
        let g = try Spacing(pixdim: [1, 1, 1]).targetGrid(of: v)
        #expect(g.affine.spacing.allSatisfy { abs($0 - 1) < 1e-9 })
        #expect(abs(g.affine[0, 0] - c) < 1e-9 && abs(g.affine[1, 0] - s) < 1e-9)
        #expect(g.spatialShape == [11, 9, 10])
    }

    @Test func spacingAndOrientation_on2DMultiChannel() throws {
        let v = volume([3, 2], channels: 2, affine: Affine([-2, 0, 0, 4, 0, 2, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1])) { i in
            Float(i % 6 / 2) * 10 + Float(i / 6) * 100
        }
        let o = try Orientation(axcodes: "RA")(v)
        #expect(o.affine[0, 0] == 2 && o.affine[0, 3] == 0)
        #expect(o.floats[0..<6].map { $0 } == [20, 20, 10, 10, 0, 0])
        let s = try Spacing(pixdim: [1, 1])(o)
        #expect(s.spatialShape == [5, 3] && s.channels == 2)
        #expect(close(s.floats[0..<15].map { $0 }, [0, 0, 0, 5, 5, 5, 10, 10, 10, 15, 15, 15, 20, 20, 20].reversed()))
        #expect(close(s.floats[15..<30].map { $0 }, s.floats[0..<15].map { $0 + 100 }))
    }

    @Test func resample_axisAlignedFastPath_equalsGeneralPath() throws {
        let v = volume([7, 6, 5]) { Float(($0 * 37) % 101) }
        let xform = Matrix(n: 4, [0.7, 0, 0, 0.3, 0, 1.3, 0, -0.2, 0, 0, 0.45, 0.1, 0, 0, 0, 1])
        var nudged = xform
        nudged[0, 1] = 1e-300
        for mode in [InterpolationMode.bilinear, .nearest] {
            let fast = v.floats.withUnsafeBufferPointer {
                SpatialResample.sample($0, channels: 1, inShape: [7, 6, 5], xform: xform, outShape: [9, 5, 11], mode: mode, padding: .border)
            }
            let general = v.floats.withUnsafeBufferPointer {
                SpatialResample.sample($0, channels: 1, inShape: [7, 6, 5], xform: nudged, outShape: [9, 5, 11], mode: mode, padding: .border)
            }
            #expect(fast == general)
        }
    }
}

@Suite(.tags(.unit)) struct IntensityTests {
    @Test func scaleIntensityRange_mapsAndClips() {
        let v = volume([5, 1, 1]) { [-100, -57, 53.5, 164, 300][$0] }
        #expect(close(ScaleIntensityRange(aMin: -57, aMax: 164, bMin: 0, bMax: 1, clip: true)(v).floats, [0, 0, 0.5, 1, 1]))
        #expect(close(
            ScaleIntensityRange(aMin: -57, aMax: 164, bMin: 0, bMax: 1)(v).floats, [-43 / 221, 0, 0.5, 1, 357 / 221]))
    }

    @Test func scaleIntensity_rescalesMinMax_andConstantMultipliesByMinv() {
        #expect(ScaleIntensity(minv: -1, maxv: 1)(volume([3, 1, 1]) { Float(2 + 2 * $0) }).floats == [-1, 0, 1])
        #expect(ScaleIntensity(minv: -1, maxv: 1)(volume([2, 1, 1]) { _ in 5 }).floats == [-5, -5])
        let two = volume([2, 1, 1], channels: 2) { [0, 10, 5, 6][$0] }
        #expect(ScaleIntensity(channelWise: true)(two).floats == [0, 1, 0, 1])
    }

    @Test func normalizeIntensity_meanStd_nonzero_channelWise() throws {
        let v = volume([4, 1, 1]) { Float($0 + 1) }
        let sd = Float(1.25.squareRoot())
        #expect(close(try NormalizeIntensity()(v).floats, [-1.5 / sd, -0.5 / sd, 0.5 / sd, 1.5 / sd]))
        let z = volume([3, 1, 1]) { [0, 2, 4][$0] }
        #expect(close(try NormalizeIntensity(nonzero: true)(z).floats, [0, -1, 1]))
        let c = volume([2, 1, 1], channels: 2) { [1, 3, 10, 30][$0] }
        #expect(close(
            try NormalizeIntensity(subtrahend: [1, 10], divisor: [2, 20], channelWise: true)(c).floats, [0, 1, 0, 1]))
        #expect(throws: ImagingError.self) { try NormalizeIntensity(subtrahend: [1, 2, 3], channelWise: true)(c) }
    }

    @Test func gaussianSmooth_impulseResponse_isMONAIsErfKernel() {
        #expect(GaussianSmooth.kernel(0.4).count == 5)
        let k1 = GaussianSmooth.kernel(1)
        #expect(k1.count == 9)
        #expect(abs(k1[4] - erf(Float(0.5 / 2.0.squareRoot())) ) < 1e-6)
        let v = volume([11, 11, 11]) { $0 == (5 * 11 + 5) * 11 + 5 ? 1 : 0 }
        let s = GaussianSmooth(sigma: 1)(v)
        #expect(abs(at(s, 5, 5, 5) - k1[4] * k1[4] * k1[4]) < 1e-6)
        #expect(abs(at(s, 4, 5, 7) - k1[3] * k1[4] * k1[6]) < 1e-6)
    }
}

@Suite(.tags(.unit)) struct CropPadTests {
    @Test func cropForeground_boxMarginAndKDivisible_thenInverse() throws {
        let v = volume([10, 10, 10], affine: Affine([2, 0, 0, 1, 0, 2, 0, 2, 0, 0, 2, 3, 0, 0, 0, 1])) { i in
            let x = i / 100, y = (i / 10) % 10, z = i % 10
            return (2...4).contains(x) && (3...6).contains(y) && z == 5 ? Float(i) : 0
        }
        #expect(CropForeground().boundingBox(of: v) == SpatialBox(start: [2, 3, 5], end: [5, 7, 6]))
        #expect(CropForeground(margin: [1]).boundingBox(of: v) == SpatialBox(start: [1, 2, 4], end: [6, 8, 7]))
        #expect(CropForeground(kDivisible: [4]).boundingBox(of: v) == SpatialBox(start: [2, 3, 4], end: [6, 7, 8]))
        let (c, box) = try CropForeground()(v)
        #expect(c.spatialShape == [3, 4, 1])
        #expect(c.affine.apply((0, 0, 0)) == v.affine.apply((2, 3, 5)))
        let back = try CropForeground.inverse(c, box: box, originalShape: v.spatialShape)
        #expect(back.floats == v.floats)
        #expect(back.affine == v.affine)
        #expect(CropForeground().boundingBox(of: volume([3, 3, 3]) { _ in 0 }).size == [0, 0, 0])
    }

    @Test func spatialPad_isSymmetric_andEdgeRepeats() throws {
        let v = volume([3, 1, 1]) { Float($0 + 1) }
        #expect(try SpatialPad(spatialSize: [6, -1, 1])(v).floats == [0, 1, 2, 3, 0, 0])
        #expect(try SpatialPad(spatialSize: [6, 1, 1], mode: .edge)(v).floats == [1, 1, 2, 3, 3, 3])
        let d = try DivisiblePad(k: [4])(volume([5, 8, 3]) { _ in 1 })
        #expect(d.spatialShape == [8, 8, 4])
        #expect(d.affine.apply((1, 0, 0)) == (0, 0, 0))
    }

    @Test func spatialPad_keepsVoxelType() throws {
        let v = Volume(spatialShape: [2, 2], data: .uint8([1, 2, 3, 4]), affine: .identity)
        let p = try SpatialPad(spatialSize: [4, 2])(v)
        #expect(p.data == .uint8([0, 0, 1, 2, 3, 4, 0, 0]))
    }
}

@Suite(.tags(.unit)) struct ResizeAndPostTests {
    @Test func resize_modesMatchTorchInterpolate() throws {
        let v = volume([4, 1, 1]) { Float($0) * 10 }
        #expect(try Resize(spatialSize: [2, 1, 1], mode: .nearest)(v).floats == [0, 20])
        #expect(try Resize(spatialSize: [2, 1, 1], mode: .area)(v).floats == [5, 25])
        let w = volume([2, 1, 1]) { Float($0) * 10 }
        #expect(close(try Resize(spatialSize: [4, 1, 1], mode: .linear)(w).floats, [0, 2.5, 7.5, 10]))
        #expect(try Resize(spatialSize: [3, 1, 1], mode: .nearest)(v).floats == [0, 10, 20])
    }

    @Test func activationsAndAsDiscrete_softmaxArgmaxThreshold() {
        let logits = volume([2, 1, 1], channels: 3) { [1, 5, 2, 5, 0, 1][$0] }
        let p = Activations(softmax: true)(logits)
        let f = p.floats
        #expect(abs(f[0] + f[2] + f[4] - 1) < 1e-6 && abs(f[1] + f[3] + f[5] - 1) < 1e-6)
        // Voxel 1 ties channels 0 and 1: the first wins, as torch.argmax.
        #expect(AsDiscrete(argmax: true)(logits).floats == [1, 0])
        #expect(AsDiscrete(argmax: true)(logits).channels == 1)
        #expect(AsDiscrete(threshold: 2)(logits).floats == [0, 1, 1, 1, 0, 0])
    }

    @Test func keepLargestConnectedComponent_fullConnectivityPerLabel() throws {
        var values = [Float](repeating: 0, count: 6 * 6 * 6)
        func set(_ i: Int, _ j: Int, _ k: Int, _ l: Float) { values[(i * 6 + j) * 6 + k] = l }
        // Label 1: a 3-voxel line plus a diagonal neighbour (one component in 26-connectivity), and a
        // separate 2-voxel blob; label 2: two single voxels.
        set(0, 0, 0, 1); set(0, 0, 1, 1); set(0, 0, 2, 1); set(1, 1, 3, 1)
        set(4, 4, 4, 1); set(4, 4, 5, 1)
        set(5, 0, 0, 2); set(0, 5, 5, 2)
        let v = Volume(spatialShape: [6, 6, 6], data: .float32(values), affine: .identity)
        let k = try KeepLargestConnectedComponent()(v).floats
        #expect(k.filter { $0 == 1 }.count == 4)
        #expect(k[(4 * 6 + 4) * 6 + 4] == 0)
        #expect(k.filter { $0 == 2 }.count == 1)
        // Face connectivity splits the diagonal voxel off.
        let f = try KeepLargestConnectedComponent(connectivity: 1)(v).floats
        #expect(f.filter { $0 == 1 }.count == 3)
    }

    @Test func restored_undoesAPermutingOrientation() throws {
        let v = volume([4, 3, 5], affine: Affine([0, 0, -2, 10, 1.5, 0, 0, 0, 0, 0.5, 0, 3, 0, 0, 0, 1])) { Float($0) }
        let o = try Orientation(axcodes: "RAS")(v)
        #expect(o.spatialShape != v.spatialShape)
        let back = try Restored(original: v)(o)
        #expect(back.floats == v.floats)
        #expect(back.affine == v.affine)
    }

    @Test func restored_labelMap_remapsChannelIndices() throws {
        let v = Volume(spatialShape: [2, 2, 1], data: .uint8([0, 1, 2, 1]), affine: .identity)
        let r = try Restored(original: v, labelMap: [1: 6, 2: 42])(v)
        #expect(r.floats == [0, 6, 42, 6])
    }
}

@Suite(.tags(.unit)) struct RandomTransformTests {
    @Test func rotate90_matchesNumpyRot90AndKeepsWorld() throws {
        let v = volume([2, 3]) { Float($0) }
        let r = try Rotate90(k: 1)(v)
        // np.rot90([[0, 1, 2], [3, 4, 5]]) == [[2, 5], [1, 4], [0, 3]]
        #expect(r.spatialShape == [3, 2])
        #expect(r.floats == [2, 5, 1, 4, 0, 3])
        #expect(try Rotate90(k: 3)(v).floats == [3, 0, 4, 1, 5, 2])
        #expect(try Rotate90(k: 2)(v).floats == [5, 4, 3, 2, 1, 0])
        let w = r.affine.apply((0, 0, 0)), orig = v.affine.apply((0, 2, 0))
        #expect(w == orig)
    }

    @Test func randomTransforms_sameSeed_sameResult() throws {
        let img = volume([12, 10, 8]) { Float($0 % 17) }
        let lab = volume([12, 10, 8]) { ($0 / 80 == 6 && $0 % 8 == 3) ? 1 : 0 }
        func run(_ seed: UInt64) throws -> [Float] {
            var rng = SeededGenerator(seed: seed)
            let crops = try RandCropByPosNegLabel(spatialSize: [4, 4, 4], pos: 1, neg: 1, numSamples: 3)(
                image: img, label: lab, using: &rng)
            var out: [Float] = []
            for c in crops {
                let flipped = try RandFlip(prob: 0.5)([c.image, c.label], using: &rng)
                let rotated = try RandRotate90(prob: 0.5)(flipped, using: &rng)
                out += RandShiftIntensity(offsets: 0.1, prob: 0.5)(rotated[0], using: &rng).floats
            }
            let sc = try RandSpatialCrop(roiSize: [5, 5, 5])([img], using: &rng)
            return out + sc[0].floats
        }
        #expect(try run(42) == run(42))
        #expect(try run(42) != run(7))
    }

    @Test func randCropByPosNegLabel_positiveOnly_alwaysContainsForeground() throws {
        let img = volume([12, 10, 8]) { _ in 1 }
        let lab = volume([12, 10, 8]) { $0 == (9 * 10 + 1) * 8 + 7 ? 1 : 0 }
        var rng = SeededGenerator(seed: 1)
        let crops = try RandCropByPosNegLabel(spatialSize: [4, 4, 4], pos: 1, neg: 0, numSamples: 5)(
            image: img, label: lab, using: &rng)
        #expect(crops.count == 5)
        for c in crops {
            #expect(c.label.spatialShape == [4, 4, 4])
            #expect(c.label.floats.contains(1))
        }
        #expect(throws: ImagingError.self) {
            try RandCropByPosNegLabel(spatialSize: [20, 4, 4])(image: img, label: lab, using: &rng)
        }
    }
}
