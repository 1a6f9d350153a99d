import CNifti
import Foundation
import Imaging

// Reads a large CT-like .nii.gz with our reader and with a plain zlib inflate of the same file, and times the
// resampling step of the pipelines. Prints figures; asserts nothing.

func seconds(_ body: () throws -> Void) rethrows -> Double {
    let t0 = DispatchTime.now().uptimeNanoseconds
    try body()
    return Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
}

func best(_ runs: Int, _ body: () throws -> Void) rethrows -> Double {
    var b = Double.infinity
    for _ in 0..<runs { b = min(b, try seconds(body)) }
    return b
}

let args = CommandLine.arguments
let dir = URL(fileURLWithPath: args.count > 1 ? args[1] : NSTemporaryDirectory())
let (nx, ny, nz) = (512, 512, 300)
let path = dir.appendingPathComponent("bench_ct_512x512x300.nii.gz")
let bytes = nx * ny * nz * 2

if !FileManager.default.fileExists(atPath: path.path) {
    // A body-like phantom: an ellipse of soft tissue with a denser core, air outside, mild noise, so that it
    // compresses about as well as a real CT (random data would not compress, a constant would too well).
    var rng = SystemRandomNumberGenerator()
    var values = [Int16](repeating: -1000, count: nx * ny * nz)
    for x in 0..<nx {
        for y in 0..<ny {
            let ex = Double(x - nx / 2) / 230, ey = Double(y - ny / 2) / 180
            let r2 = ex * ex + ey * ey
            for z in 0..<nz {
                var v: Int = -1000 + Int(rng.next() % 8)
                if r2 < 1 { v = 40 + Int(rng.next() % 24) - 12 + (r2 < 0.1 ? 300 : 0) + (z % 50 < 2 ? 200 : 0) }
                values[(x * ny + y) * nz + z] = Int16(v)
            }
        }
    }
    let affine = Affine([-0.7, 0, 0, 180, 0, -0.7, 0, 180, 0, 0, 1.0, -150, 0, 0, 0, 1])
    let vol = Volume(spatialShape: [nx, ny, nz], data: .int16(values), affine: affine)
    try NIfTI.write(vol, to: path)
}
let fileSize = (try FileManager.default.attributesOfItem(atPath: path.path)[.size] as? NSNumber)?.intValue ?? 0
print("file: \(path.path) (\(nx)x\(ny)x\(nz) int16, \(bytes / 1_000_000) MB raw, \(fileSize / 1_000_000) MB gzip)")
print("cores: \(ProcessInfo.processInfo.activeProcessorCount)")

let buffer = UnsafeMutableRawPointer.allocate(byteCount: bytes + 4096, alignment: 64)
defer { buffer.deallocate() }
let zlibTime = best(3) {
    guard let f = gzopen(path.path, "rb") else { return }
    gzbuffer(f, 1 << 18)
    var total = 0
    while true {
        let n = gzread(f, buffer + min(total, bytes), UInt32(min(1 << 24, bytes + 4096 - min(total, bytes))))
        if n <= 0 { break }
        total += Int(n)
    }
    gzclose(f)
}
var volume: Volume?
let oursTime = try best(3) { volume = try NIfTI.read(path) }
let mb = Double(bytes) / 1e6
print(String(format: "zlib gzread (single core) : %7.1f MB/s  (%.3f s)", mb / zlibTime, zlibTime))
print(String(format: "NIfTI.read                : %7.1f MB/s  (%.3f s)", mb / oursTime, oursTime))
print(String(format: "ratio ours/zlib           : %7.2f", zlibTime / oursTime))

guard let ct = volume else { exit(1) }
var oriented: Volume?
let orientTime = try best(3) { oriented = try Orientation(axcodes: "RAS")(ct) }
guard let ras = oriented else { exit(1) }
var resampled: Volume?
let spacingTime = try best(3) { resampled = try Spacing(pixdim: [1.5, 1.5, 1.5])(ras) }
let nearestTime = try best(3) { _ = try Spacing(pixdim: [1.5, 1.5, 1.5], mode: .nearest)(ras) }
print(String(format: "Orientation RAS           : %7.3f s", orientTime))
print(String(
    format: "Spacing 1.5 mm bilinear   : %7.3f s  (-> %@)", spacingTime,
    (resampled?.spatialShape.map(String.init).joined(separator: "x") ?? "?")))
print(String(format: "Spacing 1.5 mm nearest    : %7.3f s", nearestTime))
var restoredTime = 0.0
if let r = resampled {
    restoredTime = try best(3) { _ = try Restored(original: ct)(r) }
}
print(String(format: "Restored to 512x512x300   : %7.3f s", restoredTime))
let dirOut = dir.appendingPathComponent("bench_label.nii.gz")
let label = AsDiscrete(threshold: 0.5)(ScaleIntensityRange(aMin: 0, aMax: 400, bMin: 0, bMax: 1, clip: true)(ct))
let writeTime = try best(3) { try NIfTI.write(label, to: dirOut, dtype: .uint8) }
print(String(format: "NIfTI.write uint8 label   : %7.3f s", writeTime))
try? FileManager.default.removeItem(at: dirOut)
