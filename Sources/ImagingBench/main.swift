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

func cpuSeconds() -> Double {
    var u = rusage()
    getrusage(RUSAGE_SELF.rawValue, &u)
    return Double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + Double(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6
}

/// CPU seconds (user + sys, all threads) of the last `best` call's fastest run, a figure that other processes
/// competing for the cores disturb less than wall time.
nonisolated(unsafe) var lastCPU = 0.0

func best(_ runs: Int, _ body: () throws -> Void) rethrows -> Double {
    var b = Double.infinity
    for _ in 0..<runs {
        let c0 = cpuSeconds()
        let t = try seconds(body)
        if t < b {
            b = t
            lastCPU = cpuSeconds() - c0
        }
    }
    return b
}

func loadAverage() -> Double {
    var l = [0.0, 0.0, 0.0]
    return getloadavg(&l, 3) > 0 ? l[0] : -1
}

let args = CommandLine.arguments
let dir = URL(fileURLWithPath: args.count > 1 ? args[1] : NSTemporaryDirectory())
// `--only zlib|read`: one pass of that reader alone, so that its CPU time can be measured with `time`.
let only = args.count > 3 && args[2] == "--only" ? args[3] : nil
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
// stat(2) follows a linked fixture to its data.
var fileStat = stat()
let fileSize = stat(path.path, &fileStat) == 0 ? Int(fileStat.st_size) : 0
print("file: \(path.path) (\(nx)x\(ny)x\(nz) int16, \(bytes / 1_000_000) MB raw, \(fileSize / 1_000_000) MB gzip)")
print("cores: \(ProcessInfo.processInfo.activeProcessorCount)")

if let mode = only {
    let t = try seconds {
        if mode == "read" { _ = try NIfTI.read(path) } else {
            let buf = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
            defer { buf.deallocate() }
            guard let f = gzopen(path.path, "rb") else { return }
            gzbuffer(f, 1 << 18)
            var total = 0
            while total < bytes {
                let n = gzread(f, buf + total, UInt32(min(1 << 24, bytes - total)))
                if n <= 0 { break }
                total += Int(n)
            }
            gzclose(f)
        }
    }
    print(String(format: "%@: %.3f s wall", mode, t))
    exit(0)
}

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
let zlibCPU = lastCPU
var volume: Volume?
let oursTime = try best(3) { volume = try NIfTI.read(path) }
let oursCPU = lastCPU
let mb = Double(bytes) / 1e6
print(String(format: "zlib gzread (single core) : %7.1f MB/s  (%.3f s wall, %.3f s CPU)", mb / zlibTime, zlibTime, zlibCPU))
print(String(format: "NIfTI.read                : %7.1f MB/s  (%.3f s wall, %.3f s CPU)", mb / oursTime, oursTime, oursCPU))
print(String(format: "ratio ours/zlib           : %7.2f  (wall; load average %.1f on %d cores skews it)",
    zlibTime / oursTime, loadAverage(), ProcessInfo.processInfo.activeProcessorCount))

guard let ct = volume else { exit(1) }
var oriented: Volume?
let orientTime = try best(3) { oriented = try Orientation(axcodes: "RAS")(ct) }
guard let ras = oriented else { exit(1) }
var resampled: Volume?
let spacingTime = try best(3) { resampled = try Spacing(pixdim: [1.5, 1.5, 1.5])(ras) }
let spacingCPU = lastCPU
let nearestTime = try best(3) { _ = try Spacing(pixdim: [1.5, 1.5, 1.5], mode: .nearest)(ras) }
print(String(format: "Orientation RAS           : %7.3f s", orientTime))
print(String(
    format: "Spacing 1.5 mm bilinear   : %7.3f s  (%.3f s CPU, -> %@)", spacingTime, spacingCPU,
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
