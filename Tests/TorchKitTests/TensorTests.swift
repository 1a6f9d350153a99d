import Foundation
import Testing
import TorchCheckpoint
@testable import TorchKit

extension TorchKitTests {
    @Suite struct TensorDataTests {
        @Test func hostBuffer_roundTripsForEveryElementType() throws {
            let shape = [2, 3]
            func check<T: TensorElement & Equatable>(_ values: [T]) throws {
                let t = try Tensor(values, shape: shape)
                #expect(t.dtype == T.dtype)
                #expect(t.shape == shape)
                #expect(t.count == 6)
                #expect(try t.array(of: T.self) == values)
            }
            try check([Float]([1.5, -2, 3.25, 0, .infinity, -7]))
            try check([Float16]([1.5, -2, 3.25, 0, 65504, -7]))
            try check([Double]([1e-300, -2, 3.25, 0, 5, -7]))
            try check([Int64]([Int64.max, Int64.min, 0, 1, -1, 42]))
            try check([Int32]([Int32.max, Int32.min, 0, 1, -1, 42]))
            try check([Int16]([Int16.max, Int16.min, 0, 1, -1, 42]))
            try check([Int8]([127, -128, 0, 1, -1, 42]))
            try check([UInt8]([255, 0, 1, 2, 128, 42]))
            try check([true, false, true, true, false, false])
        }

        @Test func storedTensor_roundTripsForEveryDType() throws {
            for dtype in StoredDType.allCases {
                let bytes = (0..<(dtype.size * 4)).map { UInt8(truncatingIfNeeded: $0 * 37 + 3) }
                // Bool storages only hold 0 or 1.
                let payload = dtype == .bool ? bytes.map { $0 & 1 } : bytes
                let stored = StoredTensor(dtype: dtype, shape: [2, 2], bytes: payload)
                let t = try Tensor(stored)
                #expect(t.dtype == DType(dtype))
                #expect(try t.stored() == stored, "\(dtype)")
            }
        }

        @Test func stored_ofNonContiguousView_isCOrder() throws {
            let t = try Tensor((0..<6).map { Float($0) }, shape: [2, 3]).permute([1, 0])
            let stored = try t.stored()
            #expect(stored.shape == [3, 2])
            let back = try Tensor(stored).array(of: Float.self)
            #expect(back == [0, 3, 1, 4, 2, 5])
        }

        @Test func scalarTensor_roundTrips() throws {
            let stored = try Tensor.full([], value: 7, dtype: .int64).stored()
            #expect(stored.shape == [])
            #expect(try Tensor(stored).item() == 7)
        }

        @Test func init_wrongElementCount_throws() {
            #expect(throws: TorchError.self) { try Tensor([Float](repeating: 0, count: 5), shape: [2, 3]) }
            #expect(throws: TorchError.self) { try Tensor([Float](repeating: 0, count: 6), shape: [-2, -3]) }
        }

        @Test func array_ofWrongType_throws() throws {
            let t = try Tensor([Float](repeating: 1, count: 4))
            #expect(throws: TorchError.self) { try t.array(of: Int64.self) }
            #expect(try t.to(.int64).array(of: Int64.self) == [1, 1, 1, 1])
        }

        @Test func factories_haveShapeDtypeAndValues() throws {
            #expect(try Tensor.zeros([2, 3]).floats() == [Float](repeating: 0, count: 6))
            #expect(try Tensor.ones([4], dtype: .int32).array(of: Int32.self) == [1, 1, 1, 1])
            #expect(try Tensor.full([2], value: 2.5, dtype: .float64).array(of: Double.self) == [2.5, 2.5])
            #expect(try Tensor.arange(0, 5).floats() == [0, 1, 2, 3, 4])
            let r = try Tensor.rand([1000]).floats()
            #expect(r.allSatisfy { $0 >= 0 && $0 < 1 })
            let n = try Tensor.randn([4000]).floats()
            let mean = n.reduce(0, +) / Float(n.count)
            #expect(Swift.abs(mean) < 0.1)
        }

        @Test func manualSeed_makesSamplingRepeatable() throws {
            Torch.manualSeed(1234)
            let a = try Tensor.randn([8]).floats()
            Torch.manualSeed(1234)
            let b = try Tensor.randn([8]).floats()
            Torch.manualSeed(4321)
            let c = try Tensor.randn([8]).floats()
            #expect(a == b)
            #expect(a != c)
        }
}

}

extension TorchKitTests {
    @Suite struct TensorLayoutTests {
        let x: Tensor

        init() throws { x = try Tensor((0..<24).map { Float($0) }, shape: [2, 3, 4]) }

        @Test func reshapeViewPermute_reorderElements() throws {
            #expect(try x.reshape([4, -1]).shape == [4, 6])
            #expect(try x.view([6, 4]).shape == [6, 4])
            let p = try x.permute([2, 0, 1])
            #expect(p.shape == [4, 2, 3])
            #expect(try p.floats().prefix(6) == [0, 4, 8, 12, 16, 20])
            #expect(throws: TorchError.self) { try p.view([24]) }
            #expect(try p.contiguous().view([24]).shape == [24])
        }

        @Test func sliceNarrowSqueeze_selectElements() throws {
            #expect(try x.slice(dim: 2, start: 1, end: 4, step: 2).floats() == [1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23])
            #expect(try x.narrow(dim: 0, start: 1, length: 1).shape == [1, 3, 4])
            #expect(try x.narrow(dim: 0, start: 1, length: 1).squeeze(dim: 0).shape == [3, 4])
            #expect(try x.unsqueeze(dim: 1).shape == [2, 1, 3, 4])
            #expect(try x.flip([2]).floats().prefix(4) == [3, 2, 1, 0])
        }

        @Test func catStack_join() throws {
            #expect(try Tensor.cat([x, x], dim: 1).shape == [2, 6, 4])
            #expect(try Tensor.stack([x, x], dim: 0).shape == [2, 2, 3, 4])
            #expect(throws: TorchError.self) { try Tensor.cat([x, Tensor.zeros([2, 3, 5])], dim: 1) }
        }

        @Test func device_cpuByDefault_cudaOnlyWhenAvailable() throws {
            #expect(x.device == .cpu)
            if Torch.cudaIsAvailable {
                let moved = try x.to(.cuda(0))
                #expect(moved.device == .cuda(0))
                #expect(try moved.floats() == x.floats())
            } else {
                #expect(Torch.cudaDeviceCount == 0)
                #expect(Device.best == .cpu)
                #expect(throws: TorchError.self) { try x.to(.cuda(0)) }
            }
        }

        @Test func numThreads_setAndRead() throws {
            try Torch.setNumThreads(Torch.defaultNumThreads)
            #expect(Torch.numThreads == Torch.defaultNumThreads)
            #expect(throws: TorchError.self) { try Torch.setNumThreads(0) }
            #expect([1, 2].contains(Torch.version.major))
        }
}
}
