import Foundation
import Imaging
import MONAILabel

// Scribbles optimisers on an N³ grid (default 256³) as the scribbles tasks build it: a noisy bright ball.
// GraphCut: per-voxel foreground probability from the intensity, t-links −ln p, n-links λ·exp(−ΔI²/(2σ²)) with
// λ = 1, σ = 0.1. GeoS: geodesic distances (γ = 200, two sweep pairs, 2.5 × 2.5 × 5 mm voxels) from a
// foreground stroke through the ball and background strokes along two faces, both maps computed concurrently.
let n = CommandLine.arguments.dropFirst().first.flatMap { Int($0) } ?? 256
let count = n * n * n
var rng = SystemRandomNumberGenerator()
var image = [Float](repeating: 0, count: count)
let c = Float(n) / 2, r = Float(n) * 0.3
for i in 0..<n { for j in 0..<n { for k in 0..<n {
    let d = ((Float(i) - c) * (Float(i) - c) + (Float(j) - c) * (Float(j) - c) + (Float(k) - c) * (Float(k) - c)).squareRoot()
    let base: Float = d < r ? 0.7 : 0.3
    image[(i * n + j) * n + k] = min(1, max(0, base + Float.random(in: -0.2...0.2, using: &rng)))
} } }
let eps = Float.ulpOfOne
let p = image.map { 1 / (1 + exp(-12 * ($0 - 0.5))) }
let source = p.map { -log(max(1 - $0, eps)) }, sink = p.map { -log(max($0, eps)) }

let t0 = Date()
let g = try GridMaxFlow(shape: [n, n, n])
try g.addTerminalCapacities(source: source, sink: sink)
try g.setContrastNeighbourCapacities(image: image, lamda: 1, sigma: 0.1)
let t1 = Date()
let flow = g.solve()
let t2 = Date()
let fg = g.sourceSide().reduce(0) { $0 + ($1 ? 1 : 0) }
print(String(format: "GraphCut %d^3: build %.3f s, max-flow %.3f s, total %.3f s (flow %.1f, %d foreground voxels)",
             n, t1.timeIntervalSince(t0), t2.timeIntervalSince(t1), t2.timeIntervalSince(t0), flow, fg))

var scribbles = [Float](repeating: 0, count: count)
let mid = n / 2
for k in (mid - n / 5)..<(mid + n / 5) { scribbles[(mid * n + mid) * n + k] = 3 }
for j in 0..<n { for k in 0..<n { scribbles[j * n + k] = 2; scribbles[((n - 1) * n + j) * n + k] = 2 } }
let t3 = Date(), c3 = clock()
let geos = try GeoS.segment(
    image: image, shape: [n, n, n], spacing: [2.5, 2.5, 5.0], scribbles: scribbles, background: 2, foreground: 3,
    gamma: 200)
let t4 = Date(), c4 = clock()
let geosFg = geos.reduce(0) { $0 + Int($1) }
// CPU time too: on a shared machine the wall time says more about the neighbours than about GeoS.
print(String(format: "GeoS %d^3: two geodesic distance maps + labelling %.3f s wall, %.3f s CPU over %d cores (%d foreground voxels)",
             n, t4.timeIntervalSince(t3), Double(c4 - c3) / Double(CLOCKS_PER_SEC),
             ProcessInfo.processInfo.activeProcessorCount, geosFg))

// End to end: the scribbles tasks on a 256³ CT region at 1 mm (a ball of 115 HU in 40 HU tissue, 12 HU noise),
// which they resample to their 2.5 × 2.5 × 5 mm working grid before the optimiser runs.
let dir = FileManager.default.temporaryDirectory.appendingPathComponent("scribbles-bench-\(getpid())")
try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
defer { try? FileManager.default.removeItem(at: dir) }
var hu = [Int16](repeating: 0, count: count)
var marks = [UInt8](repeating: 0, count: count)
for i in 0..<n { for j in 0..<n { for k in 0..<n {
    let idx = (i * n + j) * n + k
    let d = ((Float(i) - c) * (Float(i) - c) + (Float(j) - c) * (Float(j) - c) + (Float(k) - c) * (Float(k) - c)).squareRoot()
    hu[idx] = Int16((d < r ? 115 : 40) + Float.random(in: -20...20, using: &rng))
    if i == n / 2 && j == n / 2 && abs(k - n / 2) < n / 5 { marks[idx] = 3 }
    if i == 0 || i == n - 1 { marks[idx] = 2 }
} } }
let affine = Affine([1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1])
let imageURL = dir.appendingPathComponent("image.nii"), marksURL = dir.appendingPathComponent("scribbles.nii")
try NIfTI.write(Volume(spatialShape: [n, n, n], data: .int16(hu), affine: affine), to: imageURL)
try NIfTI.write(Volume(spatialShape: [n, n, n], data: .uint8(marks), affine: affine), to: marksURL)
let request = InferRequest(imagePath: imageURL.path, params: ["label": .string(marksURL.path), "skip_writer": true])
for task in [HistogramGraphCutTask(labels: ["spleen": 1]), GeoSTask(labels: ["spleen": 1])] as [any InferTask] {
    let t = Date()
    let result = try task.infer(request)
    let l = result.json["latencies"]
    print(String(format: "%@ on a %d^3 region at 1 mm: %.3f s (pre %.2f, infer %.2f, post %.2f)", task.name, n,
                 Date().timeIntervalSince(t), l?["pre"]?.doubleValue ?? 0, l?["infer"]?.doubleValue ?? 0,
                 l?["post"]?.doubleValue ?? 0))
}
