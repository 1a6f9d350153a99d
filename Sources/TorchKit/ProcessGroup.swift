import CTorch
import Foundation

/// A group of data-parallel training processes joined through c10d, PyTorch's distributed runtime: a TCPStore
/// rendezvous and a Gloo process group, so gradients are averaged by the same collectives `torch.distributed`
/// uses. Each process holds one `ProcessGroup`; collectives block until every rank has called them, or throw
/// after the group's timeout (a rank that died or hangs).
public final class ProcessGroup: @unchecked Sendable {
    private let handle: mlt_process_group
    /// This process's rank, `0..<worldSize`.
    public let rank: Int
    /// Number of ranks in the group.
    public let worldSize: Int

    /// Whether the loaded backend was built with c10d's Gloo process group.
    public static var isAvailable: Bool { mlt_distributed_available() != 0 }

    /// Joins the group: rank 0 hosts the store on `port` (every address), the other ranks connect to
    /// `host:port`. Returns when all `worldSize` ranks have joined; `timeout` bounds that wait and every
    /// later collective.
    public init(host: String, port: Int, rank: Int, worldSize: Int, timeout: Duration) throws {
        guard (1...65535).contains(port) else {
            throw TorchError(operation: "ProcessGroup.init", message: "port \(port) outside 1...65535")
        }
        guard worldSize >= 1, (0..<worldSize).contains(rank) else {
            throw TorchError(operation: "ProcessGroup.init", message: "rank \(rank) outside 0..<\(worldSize)")
        }
        let (seconds, attoseconds) = timeout.components
        let ms = Int64(min(max(Double(seconds) * 1000 + Double(attoseconds) / 1e15, 1), 1e12))
        var out: mlt_process_group?
        try checked("ProcessGroup.init") {
            mlt_process_group_new(host, Int32(port), Int32(rank), Int32(worldSize), ms, &out, $0)
        }
        guard let out else { throw TorchError(operation: "ProcessGroup.init", message: "libtorch returned no group") }
        handle = out
        self.rank = rank
        self.worldSize = worldSize
    }

    deinit { mlt_process_group_free(handle) }

    /// Sums `tensors` element-wise across ranks, in place, in one collective (one flattened bucket). Every
    /// rank passes tensors of the same shapes, dtype and order.
    public func allReduceSum(_ tensors: [Tensor]) throws {
        guard !tensors.isEmpty else { return }
        try withHandles(tensors) { h, n in
            try checked("ProcessGroup.allReduceSum") { mlt_process_group_allreduce_sum(handle, h, n, $0) }
        }
    }

    /// Replaces `tensors` on every rank with `root`'s, in place (e.g. rank 0's initial weights).
    public func broadcast(_ tensors: [Tensor], root: Int = 0) throws {
        guard !tensors.isEmpty else { return }
        try withHandles(tensors) { h, n in
            try checked("ProcessGroup.broadcast") { mlt_process_group_broadcast(handle, h, n, Int32(clamping: root), $0) }
        }
    }

    /// Returns once every rank has reached it.
    public func barrier() throws {
        try checked("ProcessGroup.barrier") { mlt_process_group_barrier(handle, $0) }
    }

    /// Publishes `value` under `key` in the group's store, for every rank to `get`.
    public func set(_ key: String, _ value: Data) throws {
        try value.withUnsafeBytes { raw in
            try checked("ProcessGroup.set") { mlt_process_group_store_set(handle, key, raw.baseAddress, raw.count, $0) }
        }
    }

    /// The value some rank published under `key`, waiting for it up to the group's timeout.
    public func get(_ key: String) throws -> Data {
        var data: UnsafeMutablePointer<CChar>?
        var count = 0
        try checked("ProcessGroup.get") { mlt_process_group_store_get(handle, key, &data, &count, $0) }
        guard let data else { return Data() }
        defer { mlt_string_free(data) }
        return Data(bytes: data, count: count)
    }
}
