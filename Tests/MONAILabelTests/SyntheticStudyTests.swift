import Testing
@testable import MONAILabel
@testable import MONAILabelCore

@Test(.tags(.unit)) func generate_isDeterministicAndTheSpleenIsAPlausibleBrightBlob() {
    let a = SyntheticCase.generate(index: 3, shape: [48, 48, 32], spacing: [3, 3, 4])
    let b = SyntheticCase.generate(index: 3, shape: [48, 48, 32], spacing: [3, 3, 4])
    let c = SyntheticCase.generate(index: 4, shape: [48, 48, 32], spacing: [3, 3, 4])
    #expect(a.image == b.image && a.label == b.label)
    #expect(a.label != c.label)
    let n = a.label.reduce(0) { $0 + Int($1) }
    // An ellipsoid of ~13x18x24 mm radii is ~24 ml, i.e. a few hundred 36 mm^3 voxels.
    #expect(n > 200 && n < 2000, "spleen voxels: \(n)")
    var inside = 0.0, outside = 0.0, nOut = 0
    for (v, l) in zip(a.image, a.label) {
        if l == 1 { inside += Double(v) } else if v > -200 && v < 300 { outside += Double(v); nOut += 1 }
    }
    #expect(inside / Double(n) > 95)
    #expect(outside / Double(nOut) < 70)
}
