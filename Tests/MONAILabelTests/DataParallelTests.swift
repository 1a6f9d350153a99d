import Foundation
import Testing
import TorchKit
@testable import MONAILabel

@Suite(.tags(.unit)) struct DataParallelTests {
    @Test func shard_padsByWrappingAround_soEveryRankTakesTheSameNumberOfSteps() {
        let order = [10, 11, 12, 13, 14]
        #expect(DataParallel.shard(order, rank: 0, worldSize: 2) == [10, 12, 14])
        #expect(DataParallel.shard(order, rank: 1, worldSize: 2) == [11, 13, 10])
        #expect(DataParallel.shard(order, rank: 2, worldSize: 3) == [12, 10])
        #expect(DataParallel.shard(order, rank: 0, worldSize: 1) == order)
        #expect(DataParallel.shard([Int](), rank: 1, worldSize: 2) == [])
    }

    @Test func rendezvousAddress_parsesHostAndPort_andRefusesTheRest() throws {
        #expect(try Rendezvous.parseAddress("10.0.0.5:29500") == ("10.0.0.5", 29500))
        #expect(try Rendezvous.parseAddress("[::1]:29501") == ("::1", 29501))
        #expect(try Rendezvous.parseAddress("gpu-node-2:1") == ("gpu-node-2", 1))
        for bad in ["10.0.0.5", ":29500", "host:0", "host:70000", "host:-1", "host:abc", "[::1]29500", "[::1:29500", ""] {
            #expect(throws: MONAILabelError.self, "\(bad)") { _ = try Rendezvous.parseAddress(bad) }
        }
    }

    @Test func rendezvous_rankAndWorldSizeOutOfRange_areRefusedNamingThem() {
        for (rank, world) in [(2, 2), (-1, 2), (0, 0), (0, Rendezvous.maxWorldSize + 1)] {
            #expect {
                _ = try Rendezvous(host: "127.0.0.1", port: 29500, rank: rank, worldSize: world, timeout: .seconds(1))
            } throws: { e in
                let m = (e as? MONAILabelError)?.message ?? ""
                return m.contains("rank") || m.contains("world_size")
            }
        }
    }

    @Test(.enabled(if: ProcessGroup.isAvailable, "the backend was built without gloo's headers (libgloo-dev)"))
    func twoRanks_followTheLeadersDecision_andShareProgress() throws {
        let port = try Rendezvous.unusedPort()
        let outcomes = Outcomes()
        let done = DispatchGroup()
        for rank in 0..<2 {
            done.enter()
            Thread {
                defer { done.leave() }
                do {
                    let dp = try DataParallel(Rendezvous(host: "127.0.0.1", port: port, rank: rank, worldSize: 2,
                                                         timeout: .seconds(30)))
                    try dp.publishProgress(["rank": .int(rank), "epoch": .int(rank + 3)])
                    let goOn = try dp.leaderDecides(rank == 0 ? false : true)
                    let all = dp.isLeader ? try dp.progressOfAllRanks() : []
                    outcomes.record(rank, "\(goOn) \(all.map { $0["epoch"]?.intValue ?? -1 })")
                } catch {
                    outcomes.record(rank, "error: \(error)")
                }
            }.start()
        }
        // The rendezvous times out on its own; this bounds the test even so.
        try #require(done.wait(timeout: .now() + 600) == .success, "the ranks did not finish within 10 minutes")
        #expect(outcomes.values == [0: "false [3, 4]", 1: "false []"])
    }
}

private final class Outcomes: @unchecked Sendable {
    private let lock = NSLock()
    private var byRank: [Int: String] = [:]
    func record(_ rank: Int, _ s: String) { lock.withLock { byRank[rank] = s } }
    var values: [Int: String] { lock.withLock { byRank } }
}
