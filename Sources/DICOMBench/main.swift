// Benchmark for scripts/bench/seg-frames.sh: how DICOM SEG reading scales with the number of frames.
// `write DIR FRAMES` writes a SEG of FRAMES 16x16 frames (200 segments per plane) and its CT series into DIR;
// `read DIR` reads it onto the series' grid and prints the frames, CPU and wall seconds of the read, and the read's
// growth of this process's peak resident memory (a fresh process per read, so the write's peak does not hide it).
import DICOM
import Foundation
import Imaging

/// Segments per plane: each of the 200 values fills one pixel of every 16x16 plane, so a SEG of `frames`
/// frames needs frames / 200 planes (one source slice each).
let segmentsPerPlane = 200

func seconds(_ body: () throws -> Void) rethrows -> Double {
    let t = DispatchTime.now()
    try body()
    return Double(DispatchTime.now().uptimeNanoseconds - t.uptimeNanoseconds) / 1e9
}

/// VmHWM of this process in kB.
func peakKB() -> Int {
    let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
    let line = status.split(separator: "\n").first { $0.hasPrefix("VmHWM:") } ?? ""
    return Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
}

/// CPU seconds (user + system) this process has used.
func cpuSeconds() -> Double {
    var u = rusage()
    getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &u)
    return Double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + Double(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6
}

let args = CommandLine.arguments
let usage = "usage: dicom-bench write <dir> <frames> | dicom-bench read <dir>\n"
guard args.count >= 3 else {
    FileHandle.standardError.write(Data(usage.utf8))
    exit(2)
}
let dir = URL(fileURLWithPath: args[2])
let affine = Affine([1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 2, 0, 0, 0, 0, 1])
switch args[1] {
case "write":
    guard args.count == 4, let frames = Int(args[3]), frames > 0 else {
        FileHandle.standardError.write(Data(usage.utf8))
        exit(2)
    }
    let planes = max(1, frames / segmentsPerPlane)
    try? FileManager.default.removeItem(at: dir)
    let ct = Volume(spatialShape: [16, 16, planes], data: .int16([Int16](repeating: 40, count: 256 * planes)), affine: affine)
    let files = try DicomSeriesWriter.writeCT(volume: ct, to: dir.appendingPathComponent("ct"), patientID: "BENCH")
    let grid = try DicomSeries.load(files: files).volume
    // C order (i, j, k): voxel v of plane k is i * 16 + j; values 1...200 on the first 200 voxels of each plane.
    var values = [UInt8](repeating: 0, count: 256 * planes)
    for v in 0..<segmentsPerPlane { for k in 0..<planes { values[v * planes + k] = UInt8(v + 1) } }
    let label = Volume(spatialShape: grid.spatialShape, data: .uint8(values), affine: grid.affine)
    let write = try seconds {
        try DicomSeg.write(label: label, sourceFiles: files, segments: [], seriesDescription: "bench",
                           to: dir.appendingPathComponent("seg.dcm"))
    }
    print(String(format: "wrote %d frames in %.1f s", segmentsPerPlane * planes, write))
case "read":
    let files = try DicomSeries.files(in: dir.appendingPathComponent("ct"))
    let grid = try DicomSeries.load(files: files).volume
    let seg = dir.appendingPathComponent("seg.dcm")
    let before = (peakKB(), cpuSeconds())
    var segments = 0
    let wall = try seconds { segments = try DicomSeg.read(file: seg, onto: grid).segments.count }
    let size = ((try? FileManager.default.attributesOfItem(atPath: seg.path))?[.size] as? Int) ?? 0
    print(String(format: "frames=%d file_mb=%.1f read_cpu_s=%.3f read_wall_s=%.3f read_peak_growth_mb=%.0f",
                 segments * grid.spatialShape[2], Double(size) / 1e6, cpuSeconds() - before.1, wall,
                 Double(peakKB() - before.0) / 1024))
default:
    FileHandle.standardError.write(Data(usage.utf8))
    exit(2)
}
