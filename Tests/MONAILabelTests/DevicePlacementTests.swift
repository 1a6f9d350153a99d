import Foundation
import Testing
@testable import MONAILabel
@testable import MONAILabelCore
import TorchKit

/// Where inference runs and accumulates, and what it does when memory runs out (`InferPlacement`). The retry
/// policy is driven by real libtorch out-of-memory errors from the CPU allocator (a request for more than the
/// address space, refused at once) and by errors the backend classified as out-of-memory.
@Suite(.tags(.unit)) struct DevicePlacementTests {
    static let gib = 1 << 30

    /// A real libtorch allocation failure (2^61 bytes on the CPU).
    static func realOutOfMemory() throws -> Tensor { try Tensor.zeros([1 << 59]) }

    @Test func accumulate_autoOnGPU_movesToCPUOnlyWhenTheAccumulatorsExceedFreeMemory() {
        let gpu = Device.cuda(0)
        #expect(!InferPlacement.accumulatesOnCPU(mode: .auto, device: gpu, bytes: 2 * Self.gib, freeBytes: 10 * Self.gib))
        #expect(InferPlacement.accumulatesOnCPU(mode: .auto, device: gpu, bytes: 9 * Self.gib + 1, freeBytes: 10 * Self.gib))
        #expect(InferPlacement.accumulatesOnCPU(mode: .auto, device: gpu, bytes: 40 * Self.gib, freeBytes: 10 * Self.gib))
    }

    @Test func accumulate_autoWithoutAMemoryFigure_staysOnTheDeviceAsUpstream() {
        #expect(!InferPlacement.accumulatesOnCPU(mode: .auto, device: .cuda(1), bytes: 40 * Self.gib, freeBytes: nil))
    }

    @Test func accumulate_overflowingAccumulatorSize_goesToTheCPU() {
        #expect(SlidingWindowInferer.accumulatorBytes(imageSize: [1 << 30, 1 << 30, 1 << 30], channels: 2, countType: .uint8) == nil)
        #expect(InferPlacement.accumulatesOnCPU(mode: .auto, device: .cuda(0), bytes: nil, freeBytes: 10 * Self.gib))
    }

    @Test func accumulate_forcedModes_overrideTheMemoryCheck() {
        #expect(InferPlacement.accumulatesOnCPU(mode: .cpu, device: .cuda(0), bytes: 1, freeBytes: 10 * Self.gib))
        #expect(!InferPlacement.accumulatesOnCPU(mode: .device, device: .cuda(0), bytes: 40 * Self.gib, freeBytes: Self.gib))
        // On the CPU there is nowhere else to go.
        #expect(!InferPlacement.accumulatesOnCPU(mode: .cpu, device: .cpu, bytes: 1, freeBytes: nil))
    }

    @Test func accumulatorBytes_countOutputFloatsAndTheWeightSum() {
        // 2 classes of float32 plus a byte count per voxel, or a float weight sum.
        #expect(SlidingWindowInferer.accumulatorBytes(imageSize: [512, 512, 120], channels: 2, countType: .uint8) == 512 * 512 * 120 * 9)
        #expect(SlidingWindowInferer.accumulatorBytes(imageSize: [10, 10, 10], channels: 3, countType: .float32) == 1000 * 16)
    }

    @Test func swAccumulate_unknownValue_is422NamingIt() throws {
        #expect(try AccumulateMode.from(params: [:]) == .auto)
        #expect(try AccumulateMode.from(params: [:], fallback: .cpu) == .cpu)
        #expect(try AccumulateMode.from(params: ["sw_accumulate": "device"]) == .device)
        let e = #expect(throws: MONAILabelError.self) { try AccumulateMode.from(params: ["sw_accumulate": "gpu"]) }
        #expect(e?.kind == .invalidInput)
        #expect(e?.message.hasPrefix("sw_accumulate") == true)
    }

    @Test func placement_fromParams_usesTheRequestsDeviceElseTheFallback() throws {
        #expect(try InferPlacement(params: ["device": "cpu", "sw_accumulate": "cpu"]) == InferPlacement(device: .cpu, accumulate: .cpu))
        #expect(try InferPlacement(params: [:], fallback: .cpu).device == .cpu)
        #expect(throws: MONAILabelError.self) { try InferPlacement(params: ["device": "cuda:4096"]) }
    }

    @Test func placement_gpuOutOfMemory_retriesOnceWithCPUAccumulationAfterReleasingTheCache() throws {
        var modes: [AccumulateMode] = []
        var released = 0
        let placement = InferPlacement(device: .cuda(0), accumulate: .auto)
        let value = try placement.run(releaseCache: { released += 1 }) { mode -> Int in
            modes.append(mode)
            if modes.count == 1 { _ = try Self.realOutOfMemory() }
            return 7
        }
        #expect(value == 7)
        #expect(modes == [.auto, .cpu])
        #expect(released == 1)
    }

    @Test func placement_gpuOutOfMemoryTwice_answers503NamingTheDevice() throws {
        var calls = 0
        let placement = InferPlacement(device: .cuda(1), accumulate: .device)
        let e = #expect(throws: MONAILabelError.self) {
            try placement.run(releaseCache: {}) { _ -> Int in
                calls += 1
                throw TorchError(operation: "conv", message: "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 1)\nmore",
                                 isOutOfMemory: true)
            }
        }
        #expect(calls == 2)
        #expect(e?.kind == .unavailable)
        #expect(e?.message.contains("out of memory on cuda:1") == true, "\(e?.message ?? "")")
        #expect(e?.message.contains("Tried to allocate 2.00 GiB") == true)
        #expect(e?.message.contains("more") == false, "only libtorch's first line")
    }

    @Test func placement_cpuAllocationFailure_answers503WithoutRetrying() throws {
        var calls = 0
        let e = #expect(throws: MONAILabelError.self) {
            try InferPlacement(device: .cpu).run(releaseCache: {}) { _ -> Tensor in
                calls += 1
                return try Self.realOutOfMemory()
            }
        }
        #expect(calls == 1)
        #expect(e?.kind == .unavailable)
        #expect(e?.message.hasPrefix("Inference ran out of memory on cpu") == true, "\(e?.message ?? "")")
    }

    @Test func placement_otherErrors_passThroughWithoutRetrying() throws {
        var calls = 0
        let e = #expect(throws: TorchError.self) {
            try InferPlacement(device: .cuda(0)).run(releaseCache: {}) { _ -> Tensor in
                calls += 1
                return try Tensor.ones([2, 3]) + Tensor.ones([4])
            }
        }
        #expect(calls == 1)
        #expect(e?.isOutOfMemory == false)
    }

    @Test func infer_deviceCpuOnCpuHost_runsOnCpuWithTheNetworkLoadedThereOnly() throws {
        let tmp = TempDir()
        let task = try smallSpleenTask(tmp)
        let app = try Self.app(tmp, task)
        let result = try app.runModel(WorkerJob(model: "segmentation_spleen", imagePath: pipelineFixture("ct_lps_aniso.nii.gz").path,
                                                params: ["skip_writer": true, "device": "cpu", "sw_accumulate": "cpu"]))
        #expect(result.json["latencies"]?["infer"] != nil)
        #expect(task.loader.loadedDevices == [.cpu])
    }

    @Test func runModel_noDeviceNamed_runsOnTheWorkersOwnDevice() throws {
        let tmp = TempDir()
        let task = try smallSpleenTask(tmp)
        let app = try Self.app(tmp, task)
        _ = try app.runModel(WorkerJob(model: "segmentation_spleen", imagePath: pipelineFixture("ct_lps_aniso.nii.gz").path,
                                       params: ["skip_writer": true]), device: .cpu)
        #expect(task.loader.loadedDevices == [.cpu])
    }

    /// An app whose only model is `task`, running it in this process.
    static func app(_ tmp: TempDir, _ task: SegmentationTask) throws -> MONAILabelApp {
        let appDir = tmp.url.appendingPathComponent("app")
        _ = tmp.write("app/app.json", Array(#"{"name": "t", "models": {"segmentation_spleen": {}}}"#.utf8))
        let studies = tmp.url.appendingPathComponent("studies")
        try FileManager.default.createDirectory(at: studies, withIntermediateDirectories: true)
        var settings = Settings(appDir: appDir, studies: studies.path, conf: ["models": "segmentation_spleen"])
        settings.inferWorkers = 0
        settings.sessions = false
        return try MONAILabelApp(settings: settings, datastore: try LocalDatastore(root: studies), factory: { _, _, _ in task })
    }
}
