import Foundation
import Testing
@testable import Imaging

@Test func scratch() throws {
    let v = try NIfTI.read(try Fixtures.pipeline("ct_lps_aniso.nii.gz"))
    let o = try Orientation(axcodes: "RAS")(v)
    print(o.shape, o.affine.m)
    let s = try Spacing(pixdim: [1, 1, 1])(o)
    print(s.shape, s.affine.m)
    let r = ScaleIntensity(minv: -1, maxv: 1)(ScaleIntensityRange(aMin: -57, aMax: 164, bMin: 0, bMax: 1, clip: true)(s))
    let p = try NPYArray.read(try Fixtures.pipeline("ct_lps_aniso.preprocessed.npy"))
    print(p.shape, p.floats.prefix(5), r.floats.prefix(5))
    let a = p.floats, b = r.floats
    var m: Float = 0
    for i in 0..<min(a.count, b.count) { m = max(m, abs(a[i] - b[i])) }
    print("maxdiff", m)
}
