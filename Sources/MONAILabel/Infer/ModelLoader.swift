import Foundation
import TorchCheckpoint
import TorchKit

/// What runs the network: a MONAI network built in Swift with loaded weights, or a TorchScript module.
enum LoadedNetwork {
    case module(any Layer)
    case script(ScriptModule)

    func forward(_ x: Tensor) throws -> Tensor {
        switch self {
        case .module(let m): return try m(x)
        case .script(let s): return try s.forward(x)
        }
    }

    /// `forward(x)` narrowed to `region` of its spatial axes, computing only that where the network can
    /// (`OutputRegionForward`).
    func forward(_ x: Tensor, outputRegion region: [Range<Int>]) throws -> Tensor {
        switch self {
        case .module(let m): return try MONAILabel.forward(m, x, outputRegion: region)
        case .script(let s): return try s.forward(x).narrowed(to: region)
        }
    }
}

/// One network instance per model and device, reused across requests and reloaded when the weights file on
/// disk changes (a training run or `PUT /model/` published new weights; every device's copy is then dropped).
/// Forward passes are serialised: the instance holds state (eval mode, buffers) and libtorch already uses every
/// core (or the whole GPU) for one pass.
public final class ModelLoader: @unchecked Sendable {
    let networkSpec: JSONObject
    let paths: [URL]
    private let lock = NSLock()
    private var networks: [Device: LoadedNetwork] = [:]
    private var loadedFrom: (path: String, mtime: Int64)?
    private var untrained = false

    init(networkSpec: JSONObject, paths: [URL]) {
        self.networkSpec = networkSpec
        self.paths = paths
    }

    /// The loader of a model `app.json` defines: its weights are `files.pretrained` (default
    /// `pretrained_<name>.pt`; `null` for none, as with custom `--conf labels`) and `files.published` (default
    /// `<name>.pt`) under `modelDir`, or where an absolute path says (a MONAI bundle's `models/model.pt`).
    convenience init(model name: String, networkSpec: JSONObject, files: JSONValue?, modelDir: URL) {
        let f = files?.objectValue ?? JSONObject()
        func path(_ p: String) -> URL { p.hasPrefix("/") ? URL(fileURLWithPath: p) : modelDir.appendingPathComponent(p) }
        let published = path(f["published"]?.stringValue ?? "\(name).pt")
        if f["pretrained"] == .null {
            self.init(networkSpec: networkSpec, paths: [published])
            return
        }
        self.init(networkSpec: networkSpec, paths: [
            path(f["pretrained"]?.stringValue ?? "pretrained_\(name).pt"), published,
        ])
    }

    /// Loads the network onto `device` now (`--conf preload true`) rather than on the first request.
    func preload(on device: Device = .cpu) throws { try withNetwork(on: device) { _ in } }

    /// Whether a network is in memory (on any device).
    var isLoaded: Bool {
        lock.lock()
        defer { lock.unlock() }
        return !networks.isEmpty
    }

    /// The devices holding a copy of the network.
    var loadedDevices: Set<Device> {
        lock.lock()
        defer { lock.unlock() }
        return Set(networks.keys)
    }

    /// The weights file in use: the last existing path (published beats pretrained), nil for random weights.
    var currentFile: URL? { paths.last { FileOps.isRegularFile($0.path) } }

    /// The weights in use, for `/info/`: a file name, or that the network is untrained.
    var weightsDescription: String { currentFile?.lastPathComponent ?? "untrained (random initialisation)" }

    /// Runs `body` with the current network on `device`, loading or reloading it first when needed: the weights
    /// are read once per device and kept there while the file on disk stays the same.
    func withNetwork<T>(on device: Device = .cpu, _ body: (LoadedNetwork) throws -> T) throws -> T {
        lock.lock()
        defer { lock.unlock() }
        let file = currentFile
        let mtime = file.flatMap { FileOps.modificationTime($0.path) }
        let stale: Bool
        if let f = file, let m = mtime {
            stale = loadedFrom?.path != f.path || loadedFrom?.mtime != m
        } else {
            stale = !untrained
        }
        if stale {
            networks.removeAll()
            loadedFrom = file.flatMap { f in mtime.map { (f.path, $0) } }
            untrained = file == nil
        }
        if networks[device] == nil {
            networks[device] = try load(file, on: device)
        }
        guard let net = networks[device] else { throw MONAILabelError.io("the network could not be loaded") }
        return try Torch.withNoGrad { try body(net) }
    }

    private func load(_ file: URL?, on device: Device) throws -> LoadedNetwork {
        guard let file else {
            let m = try NetworkFactory.make(networkSpec)
            m.eval()
            try InferenceEngine.prepare(m)
            try m.to(device)
            return .module(m)
        }
        if file.pathExtension == "ts" {
            do {
                let s = try ScriptModule(contentsOf: file, device: device)
                try s.eval()
                return .script(s)
            } catch {
                throw MONAILabelError.io("cannot load TorchScript model \(file.lastPathComponent): \(error)")
            }
        }
        let m = try Self.network(networkSpec, weights: file)
        m.eval()
        try InferenceEngine.prepare(m)
        try m.to(device)
        return .module(m)
    }

    /// Loads `file` as this model's weights would be loaded from `destination`, into a fresh network that is
    /// then dropped: `invalidInput` naming the missing, unexpected or mis-shaped keys (or why the file is not a
    /// checkpoint at all) when it does not fit.
    func verify(_ file: URL, as destination: URL) throws {
        if destination.pathExtension == "ts" {
            // libtorch trusts what it loads: garbage is refused here, from the zip directory alone, first.
            let names: [String]
            do { names = try Checkpoint.recordNames(in: file) } catch {
                throw MONAILabelError.invalid("the upload is not a TorchScript archive: " + Self.shortened("\(error)"))
            }
            guard names.contains(where: { $0.hasSuffix("/data.pkl") }), names.contains(where: { $0.contains("/code/") })
            else { throw MONAILabelError.invalid("the upload is not a TorchScript archive (no data.pkl and code/ records)") }
            do {
                let s = try ScriptModule(contentsOf: file)
                try s.eval()
            } catch {
                throw MONAILabelError.invalid("the upload is not a TorchScript module this server can load: "
                    + Self.shortened("\(error)"))
            }
            return
        }
        let m = try NetworkFactory.make(networkSpec)
        do {
            let state = try Checkpoint.stateDict(from: file, key: "model")
            try m.load(stateDict: state.map { ($0.name, $0.tensor) }, strict: true)
        } catch {
            throw MONAILabelError.invalid("the upload does not load into this model's network: " + Self.shortened("\(error)"))
        }
    }

    /// A garbage state dict lists hundreds of keys; the first few say enough.
    private static func shortened(_ text: String) -> String {
        text.count > 600 ? String(text.prefix(600)) + "..." : text
    }

    /// A network built from `spec` with the checkpoint `file`'s weights (strictly: every parameter named).
    static func network(_ spec: JSONObject, weights file: URL) throws -> any Layer {
        let m = try NetworkFactory.make(spec)
        do {
            let state = try Checkpoint.stateDict(from: file, key: "model")
            try m.load(stateDict: state.map { ($0.name, $0.tensor) }, strict: true)
        } catch {
            throw MONAILabelError.io("cannot load weights \(file.lastPathComponent): \(error)")
        }
        return m
    }
}
