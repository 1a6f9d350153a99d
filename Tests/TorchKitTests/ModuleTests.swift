import Foundation
import Testing
import TorchCheckpoint
@testable import TorchKit

extension TorchKitTests {
    @Suite struct ModuleTests {
        final class Block: Module, Layer {
            let conv: Conv
            let adn: Sequential

            init(channels: Int) throws {
                conv = try Conv(spatialDims: 2, inChannels: 1, outChannels: channels, kernelSize: 3, padding: 1)
                adn = Sequential()
                super.init()
                try registerModule("conv", conv)
                try adn.add("N", BatchNorm(numFeatures: channels))
                try adn.add("D", Dropout(p: 0.1))
                try adn.add("A", PReLU())
                try registerModule("adn", adn)
            }

            func forward(_ input: Tensor) throws -> Tensor { try adn(conv(input)) }
        }

        @Test func stateDict_namesAndOrderFollowPyTorch() throws {
            let model = try Sequential([Block(channels: 3)])
            let names = try model.stateDict().map { $0.0 }
            #expect(names == [
                "0.conv.weight", "0.conv.bias",
                "0.adn.N.weight", "0.adn.N.bias", "0.adn.N.running_mean", "0.adn.N.running_var",
                "0.adn.N.num_batches_tracked",
                "0.adn.A.weight",
            ])
            let shapes = try model.stateDict().map { $0.1.shape }
            #expect(shapes == [[3, 1, 3, 3], [3], [3], [3], [3], [3], [], [1]])
            #expect(try model.stateDict()[6].1.dtype == .int64)
            #expect(model.namedParameters().map { $0.name } == [
                "0.conv.weight", "0.conv.bias", "0.adn.N.weight", "0.adn.N.bias", "0.adn.A.weight",
            ])
            #expect(model.parameters().allSatisfy { $0.requiresGrad })
            #expect(model.namedBuffers().allSatisfy { !$0.parameter.tensor.requiresGrad })
        }

        @Test func sharedModule_listedUnderBothNamesInStateDict_butTrainedOnce() throws {
            let shared = try Conv(spatialDims: 1, inChannels: 1, outChannels: 1, kernelSize: 1)
            let root = Module()
            try root.registerModule("a", shared)
            try root.registerModule("b", shared)
            #expect(try root.stateDict().map { $0.0 } == ["a.weight", "a.bias", "b.weight", "b.bias"])
            #expect(root.namedParameters().map { $0.name } == ["a.weight", "a.bias"])
            #expect(root.parameters().count == 2)
            try root.load(stateDict: root.stateDict())
        }

        @Test func register_duplicateOrDottedName_throws() throws {
            let m = Module()
            try m.registerParameter("w", Tensor.zeros([1]))
            #expect(throws: TorchError.self) { try m.registerBuffer("w", Tensor.zeros([1])) }
            #expect(throws: TorchError.self) { try m.registerModule("a.b", Identity()) }
        }

        @Test func stateDict_saveLoad_roundTripsValuesAndOutputs() throws {
            let a = try Block(channels: 4)
            let x = try Tensor.randn([2, 1, 6, 6])
            _ = try a(x)  // updates running stats, so buffers differ from a fresh model's
            a.eval()
            let saved = try a.stateDict()
            let b = try Block(channels: 4)
            b.eval()
            #expect(try b(x).floats() != a(x).floats())
            try b.load(stateDict: saved)
            #expect(try b.stateDict().map { $0.1 } == saved.map { $0.1 })
            #expect(try b(x).floats() == a(x).floats())
            #expect(try b.stateDict()[6].1.dtype == .int64)
        }

        @Test func load_keepsOptimizerBindings() throws {
            let a = try Block(channels: 2)
            let b = try Block(channels: 2)
            let opt = try SGD(parameters: b.parameters(), lr: 0.1)
            try b.load(stateDict: a.stateDict())
            let x = try Tensor.randn([1, 1, 4, 4])
            try b(x).sum().backward()
            let before = try b.conv.weight.tensor.floats()
            try opt.step()
            #expect(try b.conv.weight.tensor.floats() != before)
        }

        @Test func load_strict_reportsMissingUnexpectedAndShapeMismatch() throws {
            let model = try Block(channels: 2)
            let before = try model.stateDict()
            var dict = before.filter { $0.0 != "adn.A.weight" }
            dict.append(("extra.weight", StoredTensor(dtype: .float32, shape: [1], bytes: [0, 0, 0, 0])))
            if let i = dict.firstIndex(where: { $0.0 == "conv.bias" }) {
                dict[i].1 = StoredTensor(dtype: .float32, shape: [3], bytes: [UInt8](repeating: 0, count: 12))
            }
            let error = #expect(throws: StateDictError.self) { try model.load(stateDict: dict) }
            #expect(error?.missingKeys == ["adn.A.weight"])
            #expect(error?.unexpectedKeys == ["extra.weight"])
            #expect(error?.shapeMismatches == [.init(name: "conv.bias", expected: [2], found: [3])])
            #expect(error?.description.contains("size mismatch for conv.bias") == true)
            #expect(try model.stateDict().map { $0.1 } == before.map { $0.1 })

            let lenient = #expect(throws: StateDictError.self) { try model.load(stateDict: dict, strict: false) }
            #expect(lenient?.missingKeys == [] && lenient?.unexpectedKeys == [])
            #expect(lenient?.shapeMismatches.count == 1)
        }

        @Test func load_nonStrict_loadsWhatMatches() throws {
            let a = try Block(channels: 2)
            let b = try Block(channels: 2)
            let partial = try a.stateDict().filter { $0.0.hasPrefix("conv.") }
            let untouched = try b.adn.stateDict().map { $0.1 }
            try b.load(stateDict: partial, strict: false)
            #expect(try b.conv.weight.tensor.floats() == a.conv.weight.tensor.floats())
            #expect(try b.adn.stateDict().map { $0.1 } == untouched)
        }

        @Test func batchNorm_trainUpdatesRunningStats_evalUsesThem() throws {
            let bn = try BatchNorm(numFeatures: 2, momentum: 0.1)
            // Channel 0 holds 1...4, channel 1 holds 10, 20, 30, 40.
            let x = try Tensor([1, 2, 3, 4, 10, 20, 30, 40] as [Float], shape: [1, 2, 4])
            let yTrain = try bn(x)
            #expect(try Swift.abs(yTrain.mean(dims: [0, 2]).max().item()) < 1e-5)
            let mean = try #require(bn.runningMean).tensor.floats()
            let variance = try #require(bn.runningVar).tensor.floats()
            // running = 0.9 * initial + 0.1 * batch (unbiased variance for the running estimate).
            #expect(maxAbsDifference(mean, [0.25, 2.5]) < 1e-5)
            #expect(maxAbsDifference(variance, [0.9 + 0.1 * 5.0 / 3.0, 0.9 + 0.1 * 500.0 / 3.0]) < 1e-4)
            #expect(try bn.numBatchesTracked?.tensor.item() == 1)

            bn.eval()
            let yEval = try bn(x).floats()
            let expected = (0..<8).map { i -> Float in
                let c = i / 4
                return ([1, 2, 3, 4, 10, 20, 30, 40][i] - mean[c]) / (variance[c] + 1e-5).squareRoot()
            }
            #expect(maxAbsDifference(yEval, expected) < 1e-4)
            #expect(try bn.numBatchesTracked?.tensor.item() == 1)
            #expect(try bn.runningMean?.tensor.floats() == mean)
        }

        @Test func batchNorm_cumulativeAverage_whenMomentumNil() throws {
            let bn = try BatchNorm(numFeatures: 1, momentum: nil)
            _ = try bn(Tensor([2, 4] as [Float], shape: [2, 1]))
            _ = try bn(Tensor([6, 8] as [Float], shape: [2, 1]))
            #expect(maxAbsDifference(try #require(bn.runningMean).tensor.floats(), [5]) < 1e-6)
            #expect(try bn.numBatchesTracked?.tensor.item() == 2)
        }

        @Test func trainEval_propagateToChildren() throws {
            let model = try Sequential([Block(channels: 1)])
            model.eval()
            #expect(model.children.allSatisfy { !$0.module.isTraining })
            let block = try #require(model.layers.first as? Block)
            #expect(!block.adn.isTraining)
            model.train()
            #expect(block.adn.isTraining)
        }

        @Test func to_cpu_keepsParametersTrainable() throws {
            let model = try Block(channels: 2)
            try model.to(.cpu)
            #expect(model.parameters().allSatisfy { $0.requiresGrad && $0.device == .cpu })
        }
    }
}
