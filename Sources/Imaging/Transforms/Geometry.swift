import Foundation

/// Small dense square matrices (row-major) for the affine algebra MONAI does with NumPy.
struct Matrix: Equatable {
    var n: Int
    var a: [Double]

    init(n: Int, _ a: [Double]) {
        self.n = n
        self.a = a
    }

    static func identity(_ n: Int) -> Matrix {
        var m = Matrix(n: n, [Double](repeating: 0, count: n * n))
        for i in 0..<n { m[i, i] = 1 }
        return m
    }

    subscript(r: Int, c: Int) -> Double {
        get { a[r * n + c] }
        set { a[r * n + c] = newValue }
    }

    static func * (x: Matrix, y: Matrix) -> Matrix {
        var r = Matrix(n: x.n, [Double](repeating: 0, count: x.n * x.n))
        for i in 0..<x.n {
            for j in 0..<x.n {
                var s = 0.0
                for k in 0..<x.n { s += x[i, k] * y[k, j] }
                r[i, j] = s
            }
        }
        return r
    }

    var transposed: Matrix {
        var r = self
        for i in 0..<n { for j in 0..<n { r[i, j] = self[j, i] } }
        return r
    }

    /// Inverse by Gauss-Jordan with partial pivoting; nil when singular.
    var inverse: Matrix? {
        var m = self, inv = Matrix.identity(n)
        for col in 0..<n {
            var p = col
            for r in col..<n where abs(m[r, col]) > abs(m[p, col]) { p = r }
            if abs(m[p, col]) < 1e-300 { return nil }
            if p != col {
                for j in 0..<n {
                    m.a.swapAt(col * n + j, p * n + j)
                    inv.a.swapAt(col * n + j, p * n + j)
                }
            }
            let d = m[col, col]
            for j in 0..<n {
                m[col, j] /= d
                inv[col, j] /= d
            }
            for r in 0..<n where r != col {
                let f = m[r, col]
                if f != 0 {
                    for j in 0..<n {
                        m[r, j] -= f * m[col, j]
                        inv[r, j] -= f * inv[col, j]
                    }
                }
            }
        }
        return inv
    }

    /// The top-left `k x k` block.
    func block(_ k: Int) -> Matrix {
        var r = Matrix(n: k, [Double](repeating: 0, count: k * k))
        for i in 0..<k { for j in 0..<k { r[i, j] = self[i, j] } }
        return r
    }

    /// Upper-triangular `U` with `UᵀU = self` (self symmetric positive definite), as `cholesky(...).T`.
    var choleskyUpper: Matrix? {
        var l = Matrix(n: n, [Double](repeating: 0, count: n * n))
        for i in 0..<n {
            for j in 0...i {
                var s = self[i, j]
                for k in 0..<j { s -= l[i, k] * l[j, k] }
                if i == j {
                    if s <= 0 { return nil }
                    l[i, i] = s.squareRoot()
                } else {
                    l[i, j] = s / l[j, j]
                }
            }
        }
        return l.transposed
    }

    /// The orthogonal factor of the polar decomposition (closest rotation/reflection), by Newton iteration.
    var polarOrthogonal: Matrix {
        var x = self
        for _ in 0..<100 {
            guard let inv = x.inverse else { return self }
            let it = inv.transposed
            var next = x
            var delta = 0.0
            for i in 0..<(n * n) {
                next.a[i] = 0.5 * (x.a[i] + it.a[i])
                delta = max(delta, abs(next.a[i] - x.a[i]))
            }
            x = next
            if delta < 1e-15 { break }
        }
        return x
    }
}

extension Affine {
    /// MONAI's `to_affine_nd(r, affine)`: the `(r+1) x (r+1)` homogeneous matrix of the first `r` spatial axes.
    func rankMatrix(_ r: Int) -> Matrix {
        var m = Matrix.identity(r + 1)
        for i in 0..<r {
            for j in 0..<r { m[i, j] = self[i, j] }
            m[i, r] = self[i, 3]
        }
        return m
    }

    /// Embeds an `(r+1) x (r+1)` matrix back into a 4x4 affine (identity on the axes beyond `r`).
    init(rankMatrix m: Matrix) {
        let r = m.n - 1
        var a = Affine.identity
        for i in 0..<r {
            for j in 0..<r { a[i, j] = m[i, j] }
            a[i, 3] = m[i, r]
        }
        self = a
    }
}

/// nibabel's orientation arrays: for each input axis, the output axis it maps to and whether it is flipped.
public enum AxisOrientation {
    /// nibabel `io_orientation`: for each voxel axis, the world axis (0 = x/R, 1 = y/A, 2 = z/S) it most closely
    /// follows and the sign.
    static func io(_ affine: Matrix) -> [(axis: Int, flip: Int)] {
        let r = affine.n - 1
        var rs = affine.block(r)
        for c in 0..<r {
            var z = 0.0
            for i in 0..<r { z += rs[i, c] * rs[i, c] }
            z = z.squareRoot()
            if z == 0 { z = 1 }
            for i in 0..<r { rs[i, c] /= z }
        }
        var q = rs.polarOrthogonal
        var out: [(Int, Int)] = []
        for c in 0..<r {
            var best = 0
            var allZero = true
            for i in 0..<r {
                if abs(q[i, c]) > 1e-8 { allZero = false }
                if abs(q[i, c]) > abs(q[best, c]) { best = i }
            }
            if allZero {
                out.append((c, 1))
                continue
            }
            out.append((best, q[best, c] < 0 ? -1 : 1))
            for j in 0..<r { q[best, j] = 0 }
        }
        return out
    }

    static let labels: [(Character, Character)] = [("L", "R"), ("P", "A"), ("I", "S")]

    /// nibabel `axcodes2ornt` with the default labels.
    static func fromAxcodes(_ codes: String) throws -> [(axis: Int, flip: Int)] {
        try codes.uppercased().map { ch in
            for (i, pair) in labels.enumerated() {
                if ch == pair.0 { return (i, -1) }
                if ch == pair.1 { return (i, 1) }
            }
            throw ImagingError("invalid axis code '\(ch)' in \"\(codes)\" (use letters from L/R, P/A, I/S)")
        }
    }

    /// nibabel `aff2axcodes`.
    public static func axcodes(of affine: Affine, rank: Int = 3) -> String {
        String(io(affine.rankMatrix(rank)).map { o in o.flip < 0 ? labels[o.axis].0 : labels[o.axis].1 })
    }

    /// nibabel `ornt_transform(start, end)`.
    static func transform(from start: [(axis: Int, flip: Int)], to end: [(axis: Int, flip: Int)]) throws
        -> [(axis: Int, flip: Int)]
    {
        var result = [(axis: Int, flip: Int)](repeating: (0, 1), count: start.count)
        for (endIn, e) in end.enumerated() {
            guard let startIn = start.firstIndex(where: { $0.axis == e.axis }) else {
                throw ImagingError("orientations \(start) and \(end) do not share the same axes")
            }
            result[startIn] = (endIn, start[startIn].flip == e.flip ? 1 : -1)
        }
        return result
    }

    /// nibabel `inv_ornt_aff(ornt, shape)`: maps reoriented voxel indices back to the original ones.
    static func inverseAffine(_ ornt: [(axis: Int, flip: Int)], shape: [Int]) -> Matrix {
        let p = ornt.count
        var undoReorder = Matrix(n: p + 1, [Double](repeating: 0, count: (p + 1) * (p + 1)))
        for i in 0..<p { undoReorder[i, ornt[i].axis] = 1 }
        undoReorder[p, p] = 1
        var undoFlip = Matrix.identity(p + 1)
        for i in 0..<p {
            let f = Double(ornt[i].flip)
            undoFlip[i, i] = f
            let centre = -Double(shape[i] - 1) / 2
            undoFlip[i, p] = f * centre - centre
        }
        return undoFlip * undoReorder
    }
}
