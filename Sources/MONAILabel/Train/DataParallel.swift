import Foundation
import MONAILabelCore
import TorchKit

#if canImport(Glibc)
import Glibc
#endif

/// Where the ranks of a data-parallel training job meet (torchrun's vocabulary): the c10d store at
/// `host:port`, hosted by rank 0, and this process's place in the group.
public struct Rendezvous: Sendable, Equatable {
    public var host: String
    public var port: Int
    public var rank: Int
    public var worldSize: Int
    /// How long joining and every collective may wait for the other ranks: a rank that died or hangs ends the
    /// job after this.
    public var timeout: Duration

    /// Most ranks one job may have: far above any machine's GPU count, low enough that a typo is refused.
    public static let maxWorldSize = 256

    public init(host: String, port: Int, rank: Int, worldSize: Int, timeout: Duration) throws {
        guard (1...Self.maxWorldSize).contains(worldSize) else {
            throw MONAILabelError.invalid("world_size must be 1...\(Self.maxWorldSize) (got \(worldSize))")
        }
        guard (0..<worldSize).contains(rank) else {
            throw MONAILabelError.invalid("rank must be 0...\(worldSize - 1) (got \(rank))")
        }
        guard (1...65535).contains(port) else { throw MONAILabelError.invalid("rendezvous port must be 1...65535 (got \(port))") }
        guard !host.isEmpty, host.utf8.count <= 253 else { throw MONAILabelError.invalid("rendezvous host is empty or too long") }
        self.host = host
        self.port = port
        self.rank = rank
        self.worldSize = worldSize
        self.timeout = timeout
    }

    /// `HOST:PORT` as given to `train_worker --rendezvous` (an IPv6 host in brackets: `[::1]:29500`).
    public static func parseAddress(_ text: String) throws -> (host: String, port: Int) {
        var host = Substring(text), portText = Substring("")
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else {
                throw MONAILabelError.invalid("rendezvous must be HOST:PORT (got '\(text.prefix(80))')")
            }
            host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { throw MONAILabelError.invalid("rendezvous must be HOST:PORT (got '\(text.prefix(80))')") }
            portText = rest.dropFirst()
        } else if let colon = text.lastIndex(of: ":") {
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        }
        guard !host.isEmpty, let port = Int(portText), (1...65535).contains(port) else {
            throw MONAILabelError.invalid("rendezvous must be HOST:PORT with a port 1...65535 (got '\(text.prefix(80))')")
        }
        return (String(host), port)
    }

    /// A TCP port that was free on every local address a moment ago, for a job whose ranks all run here.
    public static func unusedPort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw MONAILabelError.io("socket() failed: errno \(errno)") }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
        }
        guard ok else { throw MONAILabelError.io("cannot bind a free port: errno \(errno)") }
        return Int(UInt16(bigEndian: addr.sin_port))
    }
}

/// This process's part in a data-parallel training job: the c10d process group plus what training needs of
/// it (torch DDP's contract): every rank starts from rank 0's weights, trains on its shard of each epoch,
/// averages gradients before each optimizer step, and follows rank 0's decisions (early stopping); rank 0
/// alone validates, writes stats and publishes.
public final class DataParallel: @unchecked Sendable {
    public let group: ProcessGroup
    public var rank: Int { group.rank }
    public var worldSize: Int { group.worldSize }
    /// Rank 0: validates, saves and publishes, and decides for the group.
    public var isLeader: Bool { group.rank == 0 }

    public init(_ r: Rendezvous) throws {
        guard ProcessGroup.isAvailable else {
            throw MONAILabelError.invalid("this server's libtorch backend was built without c10d's Gloo process group "
                + "(install libgloo-dev and rebuild it); multi-process training is unavailable")
        }
        group = try ProcessGroup(host: r.host, port: r.port, rank: r.rank, worldSize: r.worldSize, timeout: r.timeout)
    }

    /// The positions of `order` this rank trains on, as PyTorch's DistributedSampler: the list is padded by
    /// wrapping around to a multiple of the world size so every rank takes the same number of steps (a rank
    /// with one step fewer would leave the others waiting in a collective), then every rank takes every
    /// `worldSize`-th element from its own offset.
    public func shard<T>(_ order: [T]) -> [T] {
        Self.shard(order, rank: rank, worldSize: worldSize)
    }

    static func shard<T>(_ order: [T], rank: Int, worldSize: Int) -> [T] {
        guard worldSize > 1, !order.isEmpty else { return order }
        let total = (order.count + worldSize - 1) / worldSize * worldSize
        return stride(from: rank, to: total, by: worldSize).map { order[$0 % order.count] }
    }

    /// Makes every rank's parameters equal rank 0's (random initialisation differs per process).
    public func broadcastParameters(_ params: [Tensor]) throws {
        try group.broadcast(params, root: 0)
    }

    /// Replaces each gradient with its mean over the ranks: with equal shard batch sizes, the gradient of the
    /// mean loss over the union of the ranks' batches, as one process would compute it.
    public func averageGradients(of params: [Tensor]) throws {
        let grads = try params.compactMap { try $0.grad() }
        guard !grads.isEmpty else { return }
        try group.allReduceSum(grads)
        let scale = 1.0 / Double(worldSize)
        try Torch.withNoGrad { for g in grads { try g.copy(from: g.mul(scale)) } }
    }

    /// Whether `flag` is set on any rank, on every rank (e.g. a gradient scaler's overflow: one rank skipping
    /// the step alone would leave its weights behind the others').
    public func anyRank(_ flag: Bool) throws -> Bool {
        let t = try Tensor([Float(flag ? 1 : 0)], shape: [1])
        try group.allReduceSum([t])
        return try t.floats()[0] > 0
    }

    /// Rank 0's `value` on every rank (e.g. whether to go on after validation).
    public func leaderDecides(_ value: Bool) throws -> Bool {
        let t = try Tensor([Float(value ? 1 : 0)], shape: [1])
        try group.broadcast([t], root: 0)
        return try t.floats()[0] != 0
    }

    /// Publishes this rank's progress for rank 0 to combine.
    public func publishProgress(_ progress: JSONObject) throws {
        try group.set("progress/\(rank)", Data(JSONValue.object(progress).compactString().utf8))
    }

    /// Every rank's last published progress, in rank order (waits for ranks that have not published yet, up
    /// to the group's timeout; ranks publish before their first step).
    public func progressOfAllRanks() throws -> [JSONObject] {
        try (0..<worldSize).map { r in
            let data = try group.get("progress/\(r)")
            guard case .object(let o)? = try? JSONValue.parse(data) else { return ["rank": .int(r)] }
            return o
        }
    }
}

/// How many processes train one job: `world_size` (torchrun's word; CPU ranks, or one per GPU), or upstream's
/// `multi_gpu` with `gpus` ("all" or a list such as "0,1") on a CUDA backend; `local_ranks` of them run on
/// this machine (the rest join with `monailabel train_worker`), meeting on `rendezvous_port` (a free port when
/// absent, which suits local ranks only).
struct ParallelSettings: Sendable, Equatable {
    var worldSize = 1
    var localRanks = 1
    var rendezvousPort: Int?
    /// The CUDA device of each rank (empty on CPU).
    var gpus: [Int] = []

    init() {}

    /// `cudaDevices` is asked only when `multi_gpu` is set.
    init(config cfg: JSONObject, cudaDevices: () -> Int) throws {
        if try cfg.boolParam("multi_gpu") == true {
            let count = cudaDevices()
            if count > 0 { gpus = try Self.gpuList(cfg["gpus"], available: Array(0..<count)) }
        }
        worldSize = try cfg.intParam("world_size", in: 1...Rendezvous.maxWorldSize) ?? max(1, gpus.count)
        localRanks = try cfg.intParam("local_ranks", in: 1...worldSize) ?? worldSize
        // Each local rank is a process with its own libtorch and data: more than the machine has cores (or GPUs)
        // only divides the same hardware further and multiplies the memory.
        let here = max(1, ProcessInfo.processInfo.activeProcessorCount, gpus.count)
        guard localRanks <= here else {
            throw MONAILabelError.invalid("local_ranks (world_size when it is not given) must be at most \(here) on "
                + "this machine, not \(localRanks); ranks on other machines join with `monailabel train_worker`")
        }
        rendezvousPort = try cfg.intParam("rendezvous_port", in: 1...65535)
        if localRanks < worldSize, rendezvousPort == nil {
            throw MONAILabelError.invalid("local_ranks below world_size needs rendezvous_port: the remote ranks "
                + "join with `monailabel train_worker --rendezvous HOST:PORT`")
        }
    }

    /// Upstream's `gpus`: "all" (default), or device indices as "0,1" or a list.
    static func gpuList(_ v: JSONValue?, available: [Int]) throws -> [Int] {
        let words: [String]
        switch v {
        case nil, .null: return available
        case .string(let s) where s.trimmingCharacters(in: .whitespaces).lowercased() == "all": return available
        case .string(let s): words = s.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        case .array(let a): words = a.map { $0.intValue.map(String.init) ?? "?" }
        default: throw MONAILabelError.invalid("gpus must be \"all\" or device indices such as \"0,1\"")
        }
        let list = words.compactMap(Int.init)
        guard list.count == words.count, !list.isEmpty, list.allSatisfy(available.contains), Set(list).count == list.count else {
            throw MONAILabelError.invalid("gpus must be distinct device indices among \(available) (got \(words.prefix(8)))")
        }
        return list
    }
}

/// The two ways a process takes part in a data-parallel train job.
enum DataParallelTraining {
    /// Rank 0, the job's own process (`run_task`): starts the local ranks, hosts the rendezvous, hands the
    /// request to every rank through the store and trains. A local rank that dies ends the job at once, with
    /// that rank and its last lines in the job's details, and leaves no rank running.
    static func lead(_ app: MONAILabelApp, _ r: TrainRequest, log: @escaping @Sendable (String) -> Void,
                     progress: @escaping (JSONObject) -> Void) throws -> JSONObject
    {
        let p = r.settings.parallel, settings = app.settings
        let port = try p.rendezvousPort ?? Rendezvous.unusedPort()
        log("Data-parallel training: \(p.worldSize) ranks (\(p.localRanks) on this machine), rendezvous on port \(port)")
        // Without MONAI_LABEL_TORCH_THREADS the local ranks share the cores rather than each taking all of them.
        var threads: Int?
        if settings.torchThreads <= 0 {
            let share = max(1, ProcessInfo.processInfo.activeProcessorCount / p.localRanks)
            try Torch.setNumThreads(share)
            threads = share
        }
        let ranks = try RankProcesses(ranks: 1..<p.localRanks, worldSize: p.worldSize, port: port, settings: settings,
                                      torchThreads: threads, emit: log) { why in
            // Rank 0 may be blocked in a collective that fails only after the timeout: end the job now. The
            // other ranks notice their parent is gone and exit (and are killed below first).
            log("ERROR: \(why)")
            ChildProcess.end(1)
        }
        do {
            // Remote ranks must reach rank 0's Gloo pairs: advertise the host's address, not loopback.
            let host = p.localRanks == p.worldSize ? "127.0.0.1" : "0.0.0.0"
            let dp = try DataParallel(Rendezvous(host: host, port: port, rank: 0, worldSize: p.worldSize,
                                                 timeout: .seconds(settings.trainRankTimeout)))
            try dp.group.set("request", Data(JSONValue.object(r.json).compactString().utf8))
            try dp.group.set("datalist", Data(datalistIDs(app).joined(separator: "\n").utf8))
            let result = try app.train(r, dataParallel: dp, log: log, progress: progress)
            ranks.finish(grace: 30)
            return result
        } catch {
            ranks.stopAll()
            throw error
        }
    }

    /// Ranks 1...: joins the job at `rendezvous`, reads its request from rank 0 and trains its shard.
    static func join(_ app: MONAILabelApp, _ rendezvous: Rendezvous, log: @escaping (String) -> Void) throws {
        let dp = try DataParallel(rendezvous)
        guard let json = (try? JSONValue.parse(try dp.group.get("request")))?.objectValue,
            case .train(let r) = try app.jobRequest(.train, json)
        else { throw MONAILabelError.invalid("rank 0 sent no train request") }
        guard r.settings.parallel.worldSize == rendezvous.worldSize else {
            throw MONAILabelError.invalid("the job has \(r.settings.parallel.worldSize) ranks, not \(rendezvous.worldSize)")
        }
        // Shards are positions in the datalist: every rank must see the same labelled images.
        let leaders = String(decoding: try dp.group.get("datalist"), as: UTF8.self).split(separator: "\n").map(String.init)
        let mine = datalistIDs(app)
        guard leaders == mine else {
            let missing = Set(leaders).subtracting(mine).sorted().prefix(5)
            throw MONAILabelError.invalid("this rank's studies folder differs from the server's: \(leaders.count) "
                + "labelled images there, \(mine.count) here; missing here: \(missing.joined(separator: ", "))")
        }
        _ = try app.train(r, dataParallel: dp, log: log, progress: { _ in })
    }

    /// The labelled images the trainers split, by file name, in the trainers' order.
    private static func datalistIDs(_ app: MONAILabelApp) -> [String] {
        app.datastore.datalist().map { URL(fileURLWithPath: $0.image).lastPathComponent }.sorted()
    }
}

extension TrainSettings {
    /// The cases of each epoch's `order` this process trains on: all of them, or its rank's shard.
    func shard<T>(_ order: [T]) -> [T] { dataParallel?.shard(order) ?? order }

    /// How many of `count` cases this process trains on per epoch (the same on every rank).
    func shardCount(_ count: Int) -> Int {
        guard let n = dataParallel?.worldSize, n > 1, count > 0 else { return count }
        return (count + n - 1) / n
    }
}
