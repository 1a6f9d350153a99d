import Foundation
import Testing
@testable import TorchKit

extension TorchKitTests {
    /// Out-of-memory classification and the CUDA memory entry points, as far as a CPU-only backend allows.
    @Suite struct DeviceMemoryTests {
        /// 2^61 bytes: beyond any process's address space, so the CPU allocator refuses it at once under every
        /// overcommit policy, without touching memory.
        static let impossibleElements = 1 << 59

        @Test func allocation_beyondAddressSpace_throwsAnOutOfMemoryError() throws {
            let error = #expect(throws: TorchError.self) { try Tensor.zeros([Self.impossibleElements]) }
            #expect(error?.isOutOfMemory == true, "\(error?.message ?? "")")
            #expect(error?.message.contains("allocate") == true, "\(error?.message ?? "")")
        }

        @Test func shapeError_isNotAnOutOfMemoryError() throws {
            let error = #expect(throws: TorchError.self) { try Tensor.ones([2, 3]) + Tensor.ones([4]) }
            #expect(error?.isOutOfMemory == false)
        }

        @Test func cudnnBenchmark_setterReturnsThePreviousSetting() throws {
            try Torch.loadBackend()
            let original = Torch.setCudnnBenchmark(true)
            defer { Torch.setCudnnBenchmark(original) }
            #expect(Torch.setCudnnBenchmark(false) == true)
            #expect(Torch.setCudnnBenchmark(true) == false)
        }

        @Test(.enabled(if: (try? Torch.loadBackend()) != nil && !Torch.cudaIsAvailable, "a CPU-only backend"))
        func cudaMemoryInfo_onCPUOnlyBackend_throwsInsteadOfCrashing() throws {
            let error = #expect(throws: TorchError.self) { try Torch.cudaMemoryInfo(device: 0) }
            #expect(error?.isOutOfMemory == false)
        }

        @Test(.enabled(if: (try? Torch.loadBackend()) != nil && Torch.cudaIsAvailable && Torch.cudaSupportBuilt,
                       "a CUDA backend built with CUDA headers"))
        func cudaMemoryInfo_onGPU_reportsFreeWithinTotal() throws {
            let info = try Torch.cudaMemoryInfo(device: 0)
            #expect(info.total > 0)
            #expect(info.free > 0 && info.free <= info.total)
            Torch.emptyCudaCache()
        }

        @Test(.enabled(if: (try? Torch.loadBackend()) != nil && Torch.cudaIsAvailable, "a CUDA device"))
        func cudaAllocation_beyondTheGPU_throwsAnOutOfMemoryError() throws {
            // 2^50 bytes: far beyond any GPU; the caching allocator refuses it with CUDA's out-of-memory error.
            let error = #expect(throws: TorchError.self) { try Tensor.zeros([1 << 48], device: .cuda(0)) }
            #expect(error?.isOutOfMemory == true, "\(error?.message ?? "")")
            Torch.emptyCudaCache()
        }
    }
}
