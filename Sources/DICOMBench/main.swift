// Benchmark for scripts/bench/seg-frames.sh: how DICOM SEG reading scales with the number of frames.
// Usage: dicom-bench <work-dir> <frames>...   Prints one line per frame count: frames, write and read seconds,
// the read's peak resident memory growth.
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

let args = CommandLine.arguments
guard args.count >= 3, let counts = Optional(args.dropFirst(2).compactMap { Int($0) }), !counts.isEmpty else {
    FileHandle.standardError.write(Data("usage: dicom-bench <work-dir> <frames>...\n".utf8))
    exit(2)
}
let work = URL(fileURLWithPath: args[1])
for frames in counts {
    let planes = max(1, frames / segmentsPerPlane)
    let dir = work.appendingPathComponent("seg-\(frames)")
    try? FileManager.default.removeItem(at: dir)
    let affine = Affine([1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 2, 0, 0, 0, 0, 1])
    let ct = Volume(spatialShape: [16, 16, planes], data: .int16([Int16](repeating: 40, count: 256 * planes)), affine: affine)
    let files = try DicomSeriesWriter.writeCT(volume: ct, to: dir.appendingPathComponent("ct"), patientID: "BENCH")
    let grid = try DicomSeries.load(files: files).volume
    // C order (i, j, k): voxel v of plane k is i * 16 + j; values 1...200 on the first 200 voxels of each plane.
    var values = [UInt8](repeating: 0, count: 256 * planes)
    for v in 0..<segmentsPerPlane { for k in 0..<planes { values[v * planes + k] = UInt8(v + 1) } }
    let label = Volume(spatialShape: grid.spatialShape, data: .uint8(values), affine: grid.affine)
    let seg = dir.appendingPathComponent("seg.dcm")
    let write = try seconds {
        try DicomSeg.write(label: label, sourceFiles: files, segments: [], seriesDescription: "bench", to: seg)
    }
    let before = peakKB()
    var segments = 0
    let read = try seconds { segments = try DicomSeg.read(file: seg, onto: grid).segments.count }
    let size = ((try? FileManager.default.attributesOfItem(atPath: seg.path))?[.size] as? Int) ?? 0
    print(String(format: "frames=%d segments=%d planes=%d file_mb=%.1f write_s=%.2f read_s=%.3f read_peak_growth_mb=%.0f",
                 segments * planes, segments, planes, Double(size) / 1e6, write, read, Double(peakKB() - before) / 1024))
    try? FileManager.default.removeItem(at: dir)
}
