import Foundation
import Testing
@testable import TorchKit

#if canImport(Glibc)
import Glibc
#endif

extension TorchKitTests {
    /// c10d process groups, ranks as threads of this process (each with its own store client and Gloo pairs,
    /// exactly as separate processes would have).
    @Suite(.enabled(if: ProcessGroup.isAvailable, "the backend was built without gloo's headers (libgloo-dev)"))
    struct ProcessGroupTests {
        /// Runs `body` as `worldSize` ranks on their own threads (a rendezvous blocks until every rank has
        /// joined, so they must run at once) and returns each rank's result in rank order.
        static func ranks<T: Sendable>(_ worldSize: Int, timeout: Duration = .seconds(30),
                                       _ body: @escaping @Sendable (ProcessGroup) throws -> T) throws -> [T]
        {
            let port = try loopbackPort()
            let results = ResultBox<T>(count: worldSize)
            let done = DispatchGroup()
            for rank in 0..<worldSize {
                done.enter()
                let t = Thread {
                    defer { done.leave() }
                    results.set(rank, Result {
                        try body(ProcessGroup(host: "127.0.0.1", port: port, rank: rank, worldSize: worldSize,
                                              timeout: timeout))
                    })
                }
                t.stackSize = 8 << 20
                t.start()
            }
            // The group's operations time out on their own; this bounds the test even so.
            try #require(done.wait(timeout: .now() + 600) == .success, "the ranks did not finish within 10 minutes")
            return try results.values()
        }

        @Test func allReduceSum_addsEveryRanksTensors_inPlace() throws {
            let sums = try Self.ranks(2) { group in
                let a = try Tensor([Float(group.rank + 1), 10], shape: [2])
                let b = try Tensor([Float(group.rank) * 100], shape: [1, 1])
                try group.allReduceSum([a, b])
                return try a.floats() + b.floats()
            }
            #expect(sums == [[3, 20, 100], [3, 20, 100]])
        }

        @Test func broadcast_givesEveryRankTheRootsValues_andStoreSharesBytes() throws {
            let seen = try Self.ranks(2) { group in
                let t = try Tensor([Float(group.rank + 7)], shape: [1])
                try group.broadcast([t], root: 1)
                if group.rank == 0 { try group.set("plan", Data("shard list".utf8)) }
                let plan = String(decoding: try group.get("plan"), as: UTF8.self)
                try group.barrier()
                return "\(try t.floats()[0]) \(plan)"
            }
            #expect(seen == ["8.0 shard list", "8.0 shard list"])
        }

        /// The data-parallel contract: two ranks that each see half of every batch, start from rank 0's weights
        /// and average their gradients end where one process that sees whole batches ends.
        @Test func twoRanksAveragingGradients_matchOneProcessOnWholeBatches_after20Steps() throws {
            // No batch norm: its statistics would depend on how a batch is split.
            @Sendable func net() throws -> Sequential {
                try Sequential([
                    Conv(spatialDims: 3, inChannels: 1, outChannels: 4, kernelSize: 3, padding: 1),
                    PReLU(),
                    Conv(spatialDims: 3, inChannels: 4, outChannels: 1, kernelSize: 3, padding: 1),
                ])
            }
            Torch.manualSeed(3)
            let inputs = try (0..<20).map { _ in try Tensor.randn([4, 1, 6, 6, 6]) }
            let targets = try inputs.map { try $0.avgPool(kernel: [3, 3, 3], stride: [1, 1, 1], padding: [1, 1, 1]).mul(2) }
            // The starting weights are made here: the rank threads share libtorch's global generator, so seeding
            // in them would interleave.
            Torch.manualSeed(11)
            let initial = try net()
            Torch.manualSeed(11)
            let single = try net()
            let sgd = try SGD(parameters: single.parameters(), lr: 0.05)
            for (x, y) in zip(inputs, targets) {
                try sgd.zeroGrad()
                try (single(x) - y).square().mean().backward()
                try sgd.step()
            }
            let expected = try single.parameters().flatMap { try $0.floats() }

            let shared = Shared((inputs, targets, initial.parameters()))
            let perRank = try Self.ranks(2) { group in
                // Different initial weights per rank: the broadcast from rank 0 must make them equal.
                let model = try net()
                let params = model.parameters()
                if group.rank == 0 {
                    try Torch.withNoGrad { for (p, start) in zip(params, shared.value.2) { try p.copy(from: start) } }
                }
                try group.broadcast(params, root: 0)
                let opt = try SGD(parameters: params, lr: 0.05)
                for (x, y) in zip(shared.value.0, shared.value.1) {
                    try opt.zeroGrad()
                    let half = { (t: Tensor) in try t.narrow(dim: 0, start: 2 * group.rank, length: 2) }
                    try (model(half(x)) - half(y)).square().mean().backward()
                    let grads = try params.compactMap { try $0.grad() }
                    try group.allReduceSum(grads)
                    try Torch.withNoGrad { for g in grads { try g.copy(from: g.mul(1.0 / Double(group.worldSize))) } }
                    try opt.step()
                }
                return try params.flatMap { try $0.floats() }
            }
            #expect(maxAbsDifference(perRank[0], perRank[1]) == 0)
            #expect(maxAbsDifference(perRank[0], expected) < 1e-5)
        }

        @Test func aRankThatNeverJoins_failsTheRendezvousAfterTheTimeout() throws {
            let port = try loopbackPort()
            let started = Date()
            #expect(throws: TorchError.self) {
                _ = try ProcessGroup(host: "127.0.0.1", port: port, rank: 0, worldSize: 2, timeout: .seconds(2))
            }
            #expect(Date().timeIntervalSince(started) < 30)
        }

        @Test func badRankOrPort_isRefusedBeforeLibtorch() {
            #expect(throws: TorchError.self) { _ = try ProcessGroup(host: "127.0.0.1", port: 0, rank: 0, worldSize: 1, timeout: .seconds(1)) }
            #expect(throws: TorchError.self) { _ = try ProcessGroup(host: "127.0.0.1", port: 1234, rank: 2, worldSize: 2, timeout: .seconds(1)) }
        }
    }
}

/// Read-only values handed to rank threads (tensors are only read there).
private final class Shared<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

/// Per-rank results written by the rank threads.
private final class ResultBox<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var results: [Result<T, any Error>?]
    init(count: Int) { results = Array(repeating: nil, count: count) }
    func set(_ i: Int, _ r: Result<T, any Error>) { lock.withLock { results[i] = r } }
    func values() throws -> [T] { try lock.withLock { try results.map { try $0!.get() } } }
}

/// A loopback TCP port that was free a moment ago.
private func loopbackPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw TorchError(operation: "test", message: "socket() failed") }
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    let ok = withUnsafeMutablePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
    }
    guard ok else { throw TorchError(operation: "test", message: "bind() failed") }
    return Int(UInt16(bigEndian: addr.sin_port))
}
