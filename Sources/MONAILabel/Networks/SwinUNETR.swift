import TorchKit

/// Swin's `get_window_size`: along an axis no longer than the window, the window shrinks to the axis and the
/// shift drops to 0.
private func effectiveWindow(_ size: [Int], _ window: [Int], _ shift: [Int]) -> (window: [Int], shift: [Int]) {
    var w = window, s = shift
    for i in size.indices where size[i] <= window[i] {
        w[i] = size[i]
        s[i] = 0
    }
    return (w, s)
}

/// `window_partition`: channels-last [b, (d,) h, w, c] into [b * windows, prod(window), c].
private func windowPartition(_ x: Tensor, _ window: [Int]) throws -> Tensor {
    let s = x.shape
    let c = s[s.count - 1]
    let volume = window.reduce(1, *)
    if window.count == 3 {
        return try x.reshape([s[0], s[1] / window[0], window[0], s[2] / window[1], window[1], s[3] / window[2],
                              window[2], c]).permute([0, 1, 3, 5, 2, 4, 6, 7]).reshape([-1, volume, c])
    }
    return try x.reshape([s[0], s[1] / window[0], window[0], s[2] / window[1], window[1], c])
        .permute([0, 1, 3, 2, 4, 5]).reshape([-1, volume, c])
}

/// `window_reverse`: [b * windows, window..., c] back to channels-last [b, dims..., c] (`dims` = [b, d, h, w]).
private func windowReverse(_ windows: Tensor, _ window: [Int], _ dims: [Int]) throws -> Tensor {
    if window.count == 3 {
        return try windows.reshape([dims[0], dims[1] / window[0], dims[2] / window[1], dims[3] / window[2],
                                    window[0], window[1], window[2], -1])
            .permute([0, 1, 4, 2, 5, 3, 6, 7]).reshape([dims[0], dims[1], dims[2], dims[3], -1])
    }
    return try windows.reshape([dims[0], dims[1] / window[0], dims[2] / window[1], window[0], window[1], -1])
        .permute([0, 1, 3, 2, 4, 5]).reshape([dims[0], dims[1], dims[2], -1])
}

/// Python's `range(n)[slice(start, stop)]` bounds for the negative and open indices `compute_mask` uses.
private func pythonSlice(_ start: Int?, _ stop: Int?, _ n: Int) -> Range<Int> {
    func clamp(_ v: Int) -> Int { Swift.min(Swift.max(v < 0 ? v + n : v, 0), n) }
    let lo = start.map(clamp) ?? 0, hi = stop.map(clamp) ?? n
    return lo..<Swift.max(lo, hi)
}

/// `compute_mask`: -100 between tokens of one shifted window that came from different regions, else 0;
/// [windows, prod(window), prod(window)]. Regions are labelled as MONAI does, including its `slice(-0, None)`
/// (the whole axis) where a shift is 0.
private func attentionMask(_ dims: [Int], _ window: [Int], _ shift: [Int]) throws -> Tensor {
    let regions = dims.indices.map { i in
        [pythonSlice(nil, -window[i], dims[i]), pythonSlice(-window[i], -shift[i], dims[i]),
         pythonSlice(-shift[i], nil, dims[i])]
    }
    var label = [Float](repeating: 0, count: dims.reduce(1, *))
    var count: Float = 0
    var strides = Array(repeating: 1, count: dims.count)
    for i in stride(from: dims.count - 2, through: 0, by: -1) { strides[i] = strides[i + 1] * dims[i + 1] }
    func fill(_ axis: Int, _ chosen: [Range<Int>]) {
        if axis == dims.count {
            func visit(_ a: Int, _ offset: Int) {
                if a == dims.count { label[offset] = count; return }
                for v in chosen[a] { visit(a + 1, offset + v * strides[a]) }
            }
            visit(0, 0)
            count += 1
            return
        }
        for r in regions[axis] { fill(axis + 1, chosen + [r]) }
    }
    fill(0, [])
    let image = try Tensor(label, shape: [1] + dims + [1])
    let windows = try windowPartition(image, window).squeeze(dim: -1)
    let diff = try windows.unsqueeze(dim: 1) - windows.unsqueeze(dim: 2)
    return try diff.ne(0).to(.float32) * -100
}

/// `WindowAttention`: multi-head attention inside each window with a learned relative position bias
/// ("relative_position_bias_table", indexed by the "relative_position_index" buffer), "qkv" and "proj".
final class WindowAttention: Module {
    private let numHeads: Int
    private let scale: Double
    private let biasTable: Parameter
    private let positionIndex: Parameter
    private let qkv: Linear
    private let attnDrop: Dropout
    private let proj: Linear
    private let projDrop: Dropout

    init(dim: Int, numHeads: Int, window: [Int], qkvBias: Bool, attnDrop: Double, projDrop: Double) throws {
        guard numHeads > 0, dim % numHeads == 0 else {
            throw TorchError(operation: "WindowAttention", message: "dimension \(dim) is not divisible by \(numHeads) heads")
        }
        self.numHeads = numHeads
        scale = 1 / Double(dim / numHeads).squareRoot()
        // (2w-1) relative offsets per axis, flattened with the first axis slowest, as MONAI's index.
        let spans = window.map { 2 * $0 - 1 }
        let table = try Tensor.zeros([spans.reduce(1, *), numHeads])
        try table.normalInPlace(mean: 0, std: 0.02)
        biasTable = Parameter(table)
        var coords: [[Int]] = [[]]
        for w in window { coords = coords.flatMap { c in (0..<w).map { c + [$0] } } }
        var multipliers = Array(repeating: 1, count: window.count)
        for i in stride(from: window.count - 2, through: 0, by: -1) { multipliers[i] = multipliers[i + 1] * spans[i + 1] }
        var index: [Int64] = []
        index.reserveCapacity(coords.count * coords.count)
        for a in coords {
            for b in coords {
                index.append(Int64(window.indices.reduce(0) { $0 + (a[$1] - b[$1] + window[$1] - 1) * multipliers[$1] }))
            }
        }
        positionIndex = Parameter(try Tensor(index, shape: [coords.count, coords.count]))
        qkv = try Linear(inFeatures: dim, outFeatures: 3 * dim, bias: qkvBias)
        self.attnDrop = try Dropout(p: attnDrop)
        proj = try Linear(inFeatures: dim, outFeatures: dim)
        self.projDrop = try Dropout(p: projDrop)
        super.init()
        try adopt("relative_position_bias_table", biasTable)
        try adoptBuffer("relative_position_index", positionIndex)
        try registerModule("qkv", qkv)
        try registerModule("attn_drop", self.attnDrop)
        try registerModule("proj", proj)
        try registerModule("proj_drop", self.projDrop)
    }

    /// `x`: [b * windows, n, c]; `mask`: [windows, n, n] or nil.
    func forward(_ x: Tensor, mask: Tensor?) throws -> Tensor {
        let s = x.shape
        let (b, n, c) = (s[0], s[1], s[2])
        let parts = try qkv(x).reshape([b, n, 3, numHeads, c / numHeads]).permute([2, 0, 3, 1, 4])
        let q = try parts.select(0) * scale, k = try parts.select(1), v = try parts.select(2)
        // A shrunken window uses the top-left n x n of the full window's index, as MONAI does.
        let index = try positionIndex.tensor.narrow(dim: 0, start: 0, length: n).narrow(dim: 1, start: 0, length: n)
            .reshape([-1])
        let bias = try biasTable.tensor.indexSelect(dim: 0, index: index).reshape([n, n, -1]).permute([2, 0, 1])
        var attn = try q.matmul(k.permute([0, 1, 3, 2])) + bias.unsqueeze(dim: 0)
        if let mask {
            let nw = mask.shape[0]
            attn = try (attn.reshape([b / nw, nw, numHeads, n, n]) + mask.unsqueeze(dim: 1).unsqueeze(dim: 0))
                .reshape([-1, numHeads, n, n])
        }
        attn = try attnDrop(attn.softmax(dim: -1))
        let y = try attn.matmul(v).permute([0, 2, 1, 3]).reshape([b, n, c])
        return try projDrop(proj(y))
    }
}

/// `DropPath` (stochastic depth): in training, zeroes whole samples with probability `p` and rescales the rest.
final class DropPath: Module, Layer {
    private let p: Double

    init(p: Double) throws {
        guard (0..<1).contains(p) else { throw TorchError(operation: "DropPath", message: "drop path rate must be in [0, 1)") }
        self.p = p
        super.init()
    }

    func forward(_ input: Tensor) throws -> Tensor {
        guard isTraining, p > 0 else { return input }
        let keep = 1 - p
        let shape = [input.shape[0]] + Array(repeating: 1, count: input.rank - 1)
        let mask = try (Tensor.rand(shape, dtype: input.dtype, device: input.device) + keep).floor()
        return try input / keep * mask
    }
}

/// `SwinTransformerBlock`: (shifted) window attention and an MLP, each after a LayerNorm and residual.
final class SwinTransformerBlock: Module {
    private let window: [Int]
    private let shift: [Int]
    private let norm1: LayerNorm
    private let attn: WindowAttention
    private let dropPath: any Layer
    private let norm2: LayerNorm
    private let mlp: MLPBlock

    init(dim: Int, numHeads: Int, window: [Int], shift: [Int], mlpRatio: Double, qkvBias: Bool, drop: Double,
         attnDrop: Double, dropPath: Double) throws
    {
        self.window = window
        self.shift = shift
        norm1 = try LayerNorm(normalizedShape: [dim])
        attn = try WindowAttention(dim: dim, numHeads: numHeads, window: window, qkvBias: qkvBias, attnDrop: attnDrop,
                                   projDrop: drop)
        self.dropPath = dropPath > 0 ? try DropPath(p: dropPath) : Identity()
        norm2 = try LayerNorm(normalizedShape: [dim])
        mlp = try MLPBlock(hiddenSize: dim, mlpDim: Int(Double(dim) * mlpRatio), dropoutRate: drop, sharedDropout: true)
        super.init()
        try registerModule("norm1", norm1)
        try registerModule("attn", attn)
        try registerModule("drop_path", self.dropPath)
        try registerModule("norm2", norm2)
        try registerModule("mlp", mlp)
    }

    /// `x`: channels-last [b, (d,) h, w, c].
    func forward(_ input: Tensor, mask: Tensor?) throws -> Tensor {
        let s = input.shape
        let spatial = Array(s[1..<(s.count - 1)])
        let c = s[s.count - 1]
        let (w, sh) = effectiveWindow(spatial, window, shift)
        let pads = spatial.indices.map { (w[$0] - spatial[$0] % w[$0]) % w[$0] }
        var x = try norm1(input)
        if pads.contains(where: { $0 > 0 }) {
            // F.pad lists (before, after) from the last dim: channels, then the spatial axes in reverse.
            x = try x.pad([0, 0] + pads.reversed().flatMap { [0, $0] })
        }
        let padded = x.shape
        let shifted = sh.contains { $0 > 0 }
        if shifted { for (i, v) in sh.enumerated() { x = try x.roll(shift: -v, dim: i + 1) } }
        let windows = try attn.forward(windowPartition(x, w), mask: shifted ? mask : nil)
        x = try windowReverse(windows.reshape([-1] + w + [c]), w, Array(padded.dropLast()))
        if shifted { for (i, v) in sh.enumerated() { x = try x.roll(shift: v, dim: i + 1) } }
        for (i, n) in spatial.enumerated() where pads[i] > 0 { x = try x.narrow(dim: i + 1, start: 0, length: n) }
        x = try input + dropPath(x)
        return try x + dropPath(mlp(norm2(x)))
    }
}

/// `PatchMerging` ("merging", MONAI's original 3-D order) or `PatchMergingV2` ("mergingv2"): each 2x2(x2)
/// neighbourhood concatenated on channels, a LayerNorm ("norm") and a linear "reduction" to twice the channels.
final class PatchMerging: Module, Layer {
    private let v2: Bool
    private let reduction: Linear
    private let norm: LayerNorm

    init(dim: Int, spatialDims: Int, v2: Bool) throws {
        let merged = (spatialDims == 3 ? 8 : 4) * dim
        self.v2 = v2
        reduction = try Linear(inFeatures: merged, outFeatures: 2 * dim, bias: false)
        norm = try LayerNorm(normalizedShape: [merged])
        super.init()
        try registerModule("reduction", reduction)
        try registerModule("norm", norm)
    }

    /// Channels-last input; odd axes are padded by one at the end first.
    func forward(_ input: Tensor) throws -> Tensor {
        let s = input.shape
        let spatial = Array(s[1..<(s.count - 1)])
        var x = input
        if spatial.contains(where: { $0 % 2 == 1 }) {
            x = try x.pad([0, 0] + spatial.reversed().flatMap { [0, $0 % 2] })
        }
        func part(_ offsets: [Int]) throws -> Tensor {
            var p = x
            for (i, o) in offsets.enumerated() {
                p = try p.slice(dim: i + 1, start: o, end: p.shape[i + 1], step: 2)
            }
            return p
        }
        let order: [[Int]]
        if spatial.count == 3 {
            order = v2
                ? [[0, 0, 0], [0, 0, 1], [0, 1, 0], [0, 1, 1], [1, 0, 0], [1, 0, 1], [1, 1, 0], [1, 1, 1]]
                : [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 0, 1], [0, 1, 1], [1, 1, 1]]
        } else {
            order = [[0, 0], [1, 0], [0, 1], [1, 1]]
        }
        return try reduction(norm(Tensor.cat(order.map(part), dim: -1)))
    }
}

/// `BasicLayer`: `depth` Swin blocks alternating unshifted and half-window-shifted windows ("blocks"), then
/// patch merging ("downsample"). Channels-first in and out.
final class SwinBasicLayer: Module, Layer {
    private let window: [Int]
    private let blocks: [SwinTransformerBlock]
    private let downsample: PatchMerging

    init(dim: Int, depth: Int, numHeads: Int, window: [Int], dropPath: [Double], mlpRatio: Double, qkvBias: Bool,
         drop: Double, attnDrop: Double, mergingV2: Bool) throws
    {
        self.window = window
        let half = window.map { $0 / 2 }
        blocks = try (0..<depth).map { i in
            try SwinTransformerBlock(dim: dim, numHeads: numHeads, window: window,
                                     shift: i % 2 == 0 ? window.map { _ in 0 } : half, mlpRatio: mlpRatio,
                                     qkvBias: qkvBias, drop: drop, attnDrop: attnDrop, dropPath: dropPath[i])
        }
        downsample = try PatchMerging(dim: dim, spatialDims: window.count, v2: mergingV2)
        super.init()
        let list = Module()
        for (i, b) in blocks.enumerated() { try list.registerModule(String(i), b) }
        try registerModule("blocks", list)
        try registerModule("downsample", downsample)
    }

    func forward(_ input: Tensor) throws -> Tensor {
        let s = input.shape
        let n = s.count - 2
        let spatial = Array(s[2...])
        let (w, sh) = effectiveWindow(spatial, window, window.map { $0 / 2 })
        let paddedDims = spatial.indices.map { (spatial[$0] + w[$0] - 1) / w[$0] * w[$0] }
        let mask = sh.contains { $0 > 0 } ? try attentionMask(paddedDims, w, sh) : nil
        var x = try input.permute([0] + (2..<(n + 2)).map { $0 } + [1])
        for block in blocks { x = try block.forward(x, mask: mask) }
        x = try downsample(x)
        return try x.permute([0, n + 1] + (1...n).map { $0 })
    }
}

/// `SwinTransformer` (the "swinViT" of SwinUNETR): patch embedding ("patch_embed.proj") and four stages
/// ("layers1.0" ... "layers4.0"), returning the embedding and each stage's output, channel-normalized when asked.
final class SwinTransformer: Module {
    private let patchSize: [Int]
    private let patchEmbed: Conv
    private let patchNorm: LayerNorm?
    private let posDrop: Dropout
    private let stages: [SwinBasicLayer]

    init(inChannels: Int, embedDim: Int, window: [Int], patchSize: [Int], depths: [Int], numHeads: [Int],
         mlpRatio: Double, qkvBias: Bool, dropRate: Double, attnDropRate: Double, dropPathRate: Double,
         patchNorm: Bool, mergingV2: Bool) throws
    {
        let dims = window.count
        self.patchSize = patchSize
        patchEmbed = try Conv(spatialDims: dims, inChannels: inChannels, outChannels: embedDim, kernelSize: patchSize,
                              stride: patchSize)
        self.patchNorm = patchNorm ? try LayerNorm(normalizedShape: [embedDim]) : nil
        posDrop = try Dropout(p: dropRate)
        // torch.linspace(0, rate, sum(depths)), one rate per block across the stages.
        let total = depths.reduce(0, +)
        let rates = (0..<total).map { total > 1 ? dropPathRate * Double($0) / Double(total - 1) : 0 }
        var first = 0
        stages = try depths.indices.map { i in
            defer { first += depths[i] }
            return try SwinBasicLayer(dim: embedDim << i, depth: depths[i], numHeads: numHeads[i], window: window,
                                      dropPath: Array(rates[first..<(first + depths[i])]), mlpRatio: mlpRatio,
                                      qkvBias: qkvBias, drop: dropRate, attnDrop: attnDropRate, mergingV2: mergingV2)
        }
        super.init()
        let embed = Module()
        try embed.registerModule("proj", patchEmbed)
        if let patchNorm = self.patchNorm { try embed.registerModule("norm", patchNorm) }
        try registerModule("patch_embed", embed)
        try registerModule("pos_drop", posDrop)
        for (i, stage) in stages.enumerated() {
            let list = Module()
            try list.registerModule("0", stage)
            try registerModule("layers\(i + 1)", list)
        }
    }

    /// MONAI's `proj_out`: a LayerNorm without affine over the channels of a channels-first map.
    private func projOut(_ x: Tensor, _ normalize: Bool) throws -> Tensor {
        guard normalize else { return x }
        let n = x.rank - 2
        let last = try x.permute([0] + (2..<(n + 2)).map { $0 } + [1])
        let normed = try last.layerNorm(normalizedShape: [x.shape[1]], weight: nil, bias: nil, eps: 1e-5)
        return try normed.permute([0, n + 1] + (1...n).map { $0 })
    }

    func forward(_ input: Tensor, normalize: Bool) throws -> [Tensor] {
        var x = input
        let spatial = Array(x.shape.dropFirst(2))
        let pads = spatial.indices.map { (patchSize[$0] - spatial[$0] % patchSize[$0]) % patchSize[$0] }
        if pads.contains(where: { $0 > 0 }) { x = try x.pad(pads.reversed().flatMap { [0, $0] }) }
        x = try patchEmbed(x)
        if let patchNorm {
            let n = x.rank - 2
            x = try patchNorm(x.permute([0] + (2..<(n + 2)).map { $0 } + [1])).permute([0, n + 1] + (1...n).map { $0 })
        }
        x = try posDrop(x)
        var outs = [try projOut(x, normalize)]
        for stage in stages {
            x = try stage(x)
            outs.append(try projOut(x, normalize))
        }
        return outs
    }
}

/// `monai.networks.nets.SwinUNETR` (MONAI 1.x, Swin v1 stages, windowed attention): same module tree and
/// state-dict names ("swinViT.layers1.0.blocks.0.attn.qkv.weight", "encoder10.layer.conv1.conv.weight",
/// "decoder1.transp_conv.conv.weight", "out.conv.conv.bias"), so MONAI checkpoints load. Each spatial size of the
/// input must be divisible by `patchSize^5` (32 by default), as MONAI requires.
public final class SwinUNETR: Module, Layer {
    public let patchSize: Int
    private let normalize: Bool
    private let swinViT: SwinTransformer
    private let encoders: [UnetrBasicBlock]
    private let decoders: [DynUNetUpBlock]
    private let outConv: Convolution

    public init(spatialDims: Int = 3, inChannels: Int, outChannels: Int, patchSize: Int = 2,
                depths: [Int] = [2, 2, 2, 2], numHeads: [Int] = [3, 6, 12, 24], windowSize: [Int] = [7],
                qkvBias: Bool = true, mlpRatio: Double = 4, featureSize: Int = 24, norm: NormType = .instance(),
                dropRate: Double = 0, attnDropRate: Double = 0, dropoutPathRate: Double = 0, normalize: Bool = true,
                patchNorm: Bool = false, downsample: String = "merging") throws
    {
        func fail(_ m: String) -> TorchError { TorchError(operation: "SwinUNETR", message: m) }
        guard (2...3).contains(spatialDims) else { throw fail("spatial dimension should be 2 or 3.") }
        guard featureSize > 0, featureSize % 12 == 0 else { throw fail("feature_size should be divisible by 12.") }
        // Bounds far above any published configuration keep the channel arithmetic (16 x feature_size) and the
        // allocations a config could ask for in range.
        guard featureSize <= 1536, (1...4096).contains(inChannels), (1...4096).contains(outChannels) else {
            throw fail("feature_size must be at most 1536, in/out channels in 1...4096")
        }
        guard numHeads.allSatisfy({ (1...1024).contains($0) }) else { throw fail("num_heads must be in 1...1024") }
        guard depths.count == 4, numHeads.count == 4, depths.allSatisfy({ (1...64).contains($0) }) else {
            throw fail("depths and num_heads need 4 stages (depths 1...64)")
        }
        guard (1...16).contains(patchSize) else { throw fail("patch_size must be in 1...16") }
        guard [dropRate, attnDropRate, dropoutPathRate].allSatisfy({ (0...1).contains($0) }) else {
            throw fail("dropout rates should be between 0 and 1.")
        }
        guard mlpRatio > 0, mlpRatio <= 16 else { throw fail("mlp_ratio must be in (0, 16]") }
        let window = windowSize.count == 1 ? Array(repeating: windowSize[0], count: spatialDims) : windowSize
        guard window.count == spatialDims, window.allSatisfy({ (1...32).contains($0) }) else {
            throw fail("window_size \(windowSize) needs 1 or \(spatialDims) values in 1...32")
        }
        guard ["merging", "mergingv2"].contains(downsample) else {
            throw fail("downsample '\(downsample)' is not supported (merging, mergingv2)")
        }
        self.patchSize = patchSize
        self.normalize = normalize
        swinViT = try SwinTransformer(inChannels: inChannels, embedDim: featureSize, window: window,
                                      patchSize: Array(repeating: patchSize, count: spatialDims), depths: depths,
                                      numHeads: numHeads, mlpRatio: mlpRatio, qkvBias: qkvBias, dropRate: dropRate,
                                      attnDropRate: attnDropRate, dropPathRate: dropoutPathRate, patchNorm: patchNorm,
                                      mergingV2: downsample == "mergingv2")
        let f = featureSize
        func enc(_ inC: Int, _ outC: Int) throws -> UnetrBasicBlock {
            try UnetrBasicBlock(spatialDims: spatialDims, inChannels: inC, outChannels: outC, norm: norm, residual: true)
        }
        // encoder1, encoder2, encoder3, encoder4, encoder10
        encoders = try [enc(inChannels, f), enc(f, f), enc(2 * f, 2 * f), enc(4 * f, 4 * f), enc(16 * f, 16 * f)]
        func dec(_ inC: Int, _ outC: Int) throws -> DynUNetUpBlock {
            try DynUNetUpBlock(spatialDims: spatialDims, inChannels: inC, outChannels: outC,
                               kernel: Array(repeating: 3, count: spatialDims),
                               upKernel: Array(repeating: 2, count: spatialDims), norm: norm,
                               act: .leakyRelu(slope: 0.01), dropout: nil, transBias: false, residual: true)
        }
        // decoder5, decoder4, decoder3, decoder2, decoder1
        decoders = try [dec(16 * f, 8 * f), dec(8 * f, 4 * f), dec(4 * f, 2 * f), dec(2 * f, f), dec(f, f)]
        let (out, conv) = try unetOutBlock(spatialDims: spatialDims, inChannels: f, outChannels: outChannels)
        outConv = conv
        super.init()
        try registerModule("swinViT", swinViT)
        for (name, e) in zip(["encoder1", "encoder2", "encoder3", "encoder4", "encoder10"], encoders) {
            try registerModule(name, e)
        }
        for (name, d) in zip(["decoder5", "decoder4", "decoder3", "decoder2", "decoder1"], decoders) {
            try registerModule(name, d)
        }
        try registerModule("out", out)
    }

    public func forward(_ input: Tensor) throws -> Tensor {
        let spatial = Array(input.shape.dropFirst(2))
        var multiple = 1
        for _ in 0..<5 { multiple *= patchSize }
        guard input.rank >= 4, spatial.allSatisfy({ $0 > 0 && $0 % multiple == 0 }) else {
            throw TorchError(operation: "SwinUNETR", message:
                "spatial dimensions \(spatial) of the input must be divisible by patch_size**5 = \(multiple)")
        }
        let hidden = try swinViT.forward(input, normalize: normalize)
        let enc0 = try encoders[0](input)
        let enc1 = try encoders[1](hidden[0])
        let enc2 = try encoders[2](hidden[1])
        let enc3 = try encoders[3](hidden[2])
        let dec4 = try encoders[4](hidden[4])
        let dec3 = try decoders[0].forward(dec4, skip: hidden[3])
        let dec2 = try decoders[1].forward(dec3, skip: enc3)
        let dec1 = try decoders[2].forward(dec2, skip: enc2)
        let dec0 = try decoders[3].forward(dec1, skip: enc1)
        return try outConv(decoders[4].forward(dec0, skip: enc0))
    }
}
