import TorchKit

/// `monai.networks.blocks.MLPBlock` with its default GELU: "linear1", GELU ("fn"), "linear2". In MONAI's "swin"
/// dropout mode one dropout module serves both places, as here when `sharedDropout`.
final class MLPBlock: Module, Layer {
    private let linear1: Linear
    private let linear2: Linear
    private let fn = GELU()
    private let drop1: Dropout
    private let drop2: Dropout

    init(hiddenSize: Int, mlpDim: Int, dropoutRate: Double, sharedDropout: Bool = false) throws {
        let hidden = mlpDim > 0 ? mlpDim : hiddenSize
        linear1 = try Linear(inFeatures: hiddenSize, outFeatures: hidden)
        linear2 = try Linear(inFeatures: hidden, outFeatures: hiddenSize)
        drop1 = try Dropout(p: dropoutRate)
        drop2 = sharedDropout ? drop1 : try Dropout(p: dropoutRate)
        super.init()
        try registerModule("linear1", linear1)
        try registerModule("linear2", linear2)
        try registerModule("fn", fn)
        try registerModule("drop1", drop1)
        if !sharedDropout { try registerModule("drop2", drop2) }
    }

    func forward(_ input: Tensor) throws -> Tensor {
        try drop2(linear2(drop1(fn(linear1(input)))))
    }
}

/// `monai.networks.blocks.SABlock` as ViT builds it: one combined "qkv" projection and the "out_proj" output.
final class SelfAttentionBlock: Module, Layer {
    private let numHeads: Int
    private let scale: Double
    private let outProj: Linear
    private let qkv: Linear
    private let dropOutput: Dropout
    private let dropWeights: Dropout

    init(hiddenSize: Int, numHeads: Int, dropoutRate: Double, qkvBias: Bool) throws {
        guard numHeads > 0, hiddenSize % numHeads == 0 else {
            throw TorchError(operation: "SABlock", message: "hidden size \(hiddenSize) should be divisible by num_heads \(numHeads)")
        }
        self.numHeads = numHeads
        scale = 1 / Double(hiddenSize / numHeads).squareRoot()
        outProj = try Linear(inFeatures: hiddenSize, outFeatures: hiddenSize)
        qkv = try Linear(inFeatures: hiddenSize, outFeatures: 3 * hiddenSize, bias: qkvBias)
        dropOutput = try Dropout(p: dropoutRate)
        dropWeights = try Dropout(p: dropoutRate)
        super.init()
        try registerModule("out_proj", outProj)
        try registerModule("qkv", qkv)
        try registerModule("drop_output", dropOutput)
        try registerModule("drop_weights", dropWeights)
    }

    func forward(_ input: Tensor) throws -> Tensor {
        let shape = input.shape
        guard shape.count == 3 else { throw TorchError(operation: "SABlock", message: "expects [batch, tokens, hidden]") }
        let (b, n, c) = (shape[0], shape[1], shape[2])
        // "b h (qkv l d) -> qkv b l h d"
        let parts = try qkv(input).reshape([b, n, 3, numHeads, c / numHeads]).permute([2, 0, 3, 1, 4])
        let q = try parts.select(0), k = try parts.select(1), v = try parts.select(2)
        let weights = try dropWeights((q.matmul(k.permute([0, 1, 3, 2])) * scale).softmax(dim: -1))
        // "b l h d -> b h (l d)"
        let x = try weights.matmul(v).permute([0, 2, 1, 3]).reshape([b, n, c])
        return try dropOutput(outProj(x))
    }
}

extension Tensor {
    /// Entry `i` of the first dim, without that dim (`t[i]`).
    func select(_ i: Int) throws -> Tensor { try narrow(dim: 0, start: i, length: 1).squeeze(dim: 0) }
}

/// `monai.networks.blocks.TransformerBlock` without cross-attention (whose "norm_cross_attn" MONAI still creates,
/// so its checkpoints hold it).
final class TransformerBlock: Module, Layer {
    private let mlp: MLPBlock
    private let norm1: LayerNorm
    private let attn: SelfAttentionBlock
    private let norm2: LayerNorm
    private let normCrossAttn: LayerNorm

    init(hiddenSize: Int, mlpDim: Int, numHeads: Int, dropoutRate: Double, qkvBias: Bool) throws {
        mlp = try MLPBlock(hiddenSize: hiddenSize, mlpDim: mlpDim, dropoutRate: dropoutRate)
        norm1 = try LayerNorm(normalizedShape: [hiddenSize])
        attn = try SelfAttentionBlock(hiddenSize: hiddenSize, numHeads: numHeads, dropoutRate: dropoutRate,
                                      qkvBias: qkvBias)
        norm2 = try LayerNorm(normalizedShape: [hiddenSize])
        normCrossAttn = try LayerNorm(normalizedShape: [hiddenSize])
        super.init()
        try registerModule("mlp", mlp)
        try registerModule("norm1", norm1)
        try registerModule("attn", attn)
        try registerModule("norm2", norm2)
        try registerModule("norm_cross_attn", normCrossAttn)
    }

    func forward(_ input: Tensor) throws -> Tensor {
        let x = try input + attn(norm1(input))
        return try x + mlp(norm2(x))
    }
}

/// `monai.networks.blocks.PatchEmbeddingBlock` with a convolutional projection ("patch_embeddings") and a learnable
/// "position_embeddings" table, one row per patch of the fixed `imgSize`.
final class PatchEmbeddingBlock: Module, Layer {
    private let patchEmbeddings: Conv
    private let positionEmbeddings: Parameter
    private let dropout: Dropout

    init(spatialDims: Int, inChannels: Int, imgSize: [Int], patchSize: [Int], hiddenSize: Int,
         dropoutRate: Double) throws
    {
        guard imgSize.count == spatialDims, patchSize.count == spatialDims,
              zip(imgSize, patchSize).allSatisfy({ $1 > 0 && $0 >= $1 })
        else {
            throw TorchError(operation: "PatchEmbeddingBlock", message: "patch_size \(patchSize) should be smaller than img_size \(imgSize)")
        }
        let patches = zip(imgSize, patchSize).map { $0 / $1 }.reduce(1, *)
        patchEmbeddings = try Conv(spatialDims: spatialDims, inChannels: inChannels, outChannels: hiddenSize,
                                   kernelSize: patchSize, stride: patchSize)
        let table = try Tensor.zeros([1, patches, hiddenSize])
        try table.normalInPlace(mean: 0, std: 0.02)
        dropout = try Dropout(p: dropoutRate)
        positionEmbeddings = Parameter(table)
        super.init()
        try adopt("position_embeddings", positionEmbeddings)
        try registerModule("patch_embeddings", patchEmbeddings)
        try registerModule("dropout", dropout)
    }

    func forward(_ input: Tensor) throws -> Tensor {
        let x = try patchEmbeddings(input)
        let s = x.shape
        // flatten(2).transpose(-1, -2): [b, hidden, patches] -> [b, patches, hidden]
        let tokens = try x.reshape([s[0], s[1], -1]).permute([0, 2, 1])
        return try dropout(tokens + positionEmbeddings.tensor)
    }
}

/// `monai.networks.nets.ViT` without the classification head: "patch_embedding", "blocks", "norm".
final class ViT: Module {
    private let patchEmbedding: PatchEmbeddingBlock
    private let blocks: [TransformerBlock]
    private let norm: LayerNorm

    init(spatialDims: Int, inChannels: Int, imgSize: [Int], patchSize: [Int], hiddenSize: Int, mlpDim: Int,
         numLayers: Int, numHeads: Int, dropoutRate: Double, qkvBias: Bool) throws
    {
        patchEmbedding = try PatchEmbeddingBlock(spatialDims: spatialDims, inChannels: inChannels, imgSize: imgSize,
                                                 patchSize: patchSize, hiddenSize: hiddenSize, dropoutRate: dropoutRate)
        blocks = try (0..<numLayers).map { _ in
            try TransformerBlock(hiddenSize: hiddenSize, mlpDim: mlpDim, numHeads: numHeads, dropoutRate: dropoutRate,
                                 qkvBias: qkvBias)
        }
        norm = try LayerNorm(normalizedShape: [hiddenSize])
        super.init()
        try registerModule("patch_embedding", patchEmbedding)
        let list = Module()
        for (i, b) in blocks.enumerated() { try list.registerModule(String(i), b) }
        try registerModule("blocks", list)
        try registerModule("norm", norm)
    }

    /// The normalized last hidden state and every block's output.
    func forward(_ input: Tensor) throws -> (Tensor, [Tensor]) {
        var x = try patchEmbedding(input)
        var hidden: [Tensor] = []
        for block in blocks {
            x = try block(x)
            hidden.append(x)
        }
        return (try norm(x), hidden)
    }
}

/// `UnetrBasicBlock`: a `UnetResBlock` (or `UnetBasicBlock`) named "layer".
final class UnetrBasicBlock: Module, Layer {
    private let layer: DynUNetBlock

    init(spatialDims: Int, inChannels: Int, outChannels: Int, norm: NormType, residual: Bool) throws {
        layer = try DynUNetBlock(spatialDims: spatialDims, inChannels: inChannels, outChannels: outChannels,
                                 kernel: Array(repeating: 3, count: spatialDims),
                                 stride: Array(repeating: 1, count: spatialDims), norm: norm,
                                 act: .leakyRelu(slope: 0.01), dropout: nil, residual: residual)
        super.init()
        try registerModule("layer", layer)
    }

    func forward(_ input: Tensor) throws -> Tensor { try layer(input) }
}

/// `UnetrPrUpBlock`: a 2x transposed conv ("transp_conv_init"), then `numLayer` more, each followed by a conv block
/// when `convBlock` ("blocks.i.0" and "blocks.i.1"; bare "blocks.i" otherwise).
final class UnetrPrUpBlock: Module, Layer {
    private let transpConvInit: Convolution
    private let blocks: [any Layer]

    init(spatialDims: Int, inChannels: Int, outChannels: Int, numLayer: Int, norm: NormType, convBlock: Bool,
         residual: Bool) throws
    {
        let two = Array(repeating: 2, count: spatialDims)
        func up(_ inC: Int) throws -> Convolution {
            try dynConv(spatialDims, inC, outChannels, kernel: two, stride: two, dropout: nil, transposed: true)
        }
        transpConvInit = try up(inChannels)
        blocks = try (0..<max(numLayer, 0)).map { _ in
            guard convBlock else { return try up(outChannels) }
            let block = try DynUNetBlock(spatialDims: spatialDims, inChannels: outChannels, outChannels: outChannels,
                                         kernel: Array(repeating: 3, count: spatialDims),
                                         stride: Array(repeating: 1, count: spatialDims), norm: norm,
                                         act: .leakyRelu(slope: 0.01), dropout: nil, residual: residual)
            return try Sequential([up(outChannels), block])
        }
        super.init()
        try registerModule("transp_conv_init", transpConvInit)
        let list = Module()
        for (i, b) in blocks.enumerated() { try list.registerModule(String(i), b) }
        try registerModule("blocks", list)
    }

    func forward(_ input: Tensor) throws -> Tensor {
        var x = try transpConvInit(input)
        for b in blocks { x = try b.forward(x) }
        return x
    }
}

/// `UnetOutBlock`: a 1x1 convolution with bias, "conv.conv".
func unetOutBlock(spatialDims: Int, inChannels: Int, outChannels: Int) throws -> (Module, Convolution) {
    let ones = Array(repeating: 1, count: spatialDims)
    let conv = try dynConv(spatialDims, inChannels, outChannels, kernel: ones, stride: ones, dropout: nil, bias: true)
    let holder = Module()
    try holder.registerModule("conv", conv)
    return (holder, conv)
}

/// `monai.networks.nets.UNETR` (MONAI 1.x, convolutional patch projection): same module tree and state-dict
/// names ("vit.blocks.0.attn.qkv.weight", "encoder2.blocks.0.1.conv1.conv.weight", "out.conv.conv.bias"), so
/// MONAI checkpoints load. The input's spatial size must be `imgSize` (the position table is sized for it).
public final class UNETR: Module, Layer {
    public let imgSize: [Int]
    private let hiddenSize: Int
    private let featSize: [Int]
    private let vit: ViT
    private let encoder1: UnetrBasicBlock
    private let encoder2: UnetrPrUpBlock
    private let encoder3: UnetrPrUpBlock
    private let encoder4: UnetrPrUpBlock
    private let decoder5: DynUNetUpBlock
    private let decoder4: DynUNetUpBlock
    private let decoder3: DynUNetUpBlock
    private let decoder2: DynUNetUpBlock
    private let outConv: Convolution

    public init(spatialDims: Int = 3, inChannels: Int, outChannels: Int, imgSize: [Int], featureSize: Int = 16,
                hiddenSize: Int = 768, mlpDim: Int = 3072, numHeads: Int = 12, norm: NormType = .instance(),
                convBlock: Bool = true, resBlock: Bool = true, dropoutRate: Double = 0, qkvBias: Bool = false) throws
    {
        guard (2...3).contains(spatialDims) else {
            throw TorchError(operation: "UNETR", message: "spatial_dims must be 2 or 3, got \(spatialDims)")
        }
        guard (0...1).contains(dropoutRate) else {
            throw TorchError(operation: "UNETR", message: "dropout_rate should be between 0 and 1")
        }
        // Bounds far above any published configuration keep the channel arithmetic and allocations in range.
        guard (1...2048).contains(featureSize), (1...16384).contains(hiddenSize), (0...65536).contains(mlpDim),
              (1...4096).contains(inChannels), (1...4096).contains(outChannels)
        else {
            throw TorchError(operation: "UNETR", message: "feature_size (1...2048), hidden_size (1...16384), mlp_dim "
                + "(0...65536) or in/out channels (1...4096) out of range")
        }
        let size = imgSize.count == 1 ? Array(repeating: imgSize[0], count: spatialDims) : imgSize
        guard size.count == spatialDims, size.allSatisfy({ (16...4096).contains($0) }) else {
            throw TorchError(operation: "UNETR", message: "img_size \(imgSize) needs 1 or \(spatialDims) sizes in 16...4096")
        }
        let patch = Array(repeating: 16, count: spatialDims)
        self.imgSize = size
        self.hiddenSize = hiddenSize
        featSize = size.map { $0 / 16 }
        vit = try ViT(spatialDims: spatialDims, inChannels: inChannels, imgSize: size, patchSize: patch,
                      hiddenSize: hiddenSize, mlpDim: mlpDim, numLayers: 12, numHeads: numHeads,
                      dropoutRate: dropoutRate, qkvBias: qkvBias)
        let f = featureSize
        encoder1 = try UnetrBasicBlock(spatialDims: spatialDims, inChannels: inChannels, outChannels: f, norm: norm,
                                       residual: resBlock)
        func prUp(_ outC: Int, _ layers: Int) throws -> UnetrPrUpBlock {
            try UnetrPrUpBlock(spatialDims: spatialDims, inChannels: hiddenSize, outChannels: outC, numLayer: layers,
                               norm: norm, convBlock: convBlock, residual: resBlock)
        }
        encoder2 = try prUp(2 * f, 2)
        encoder3 = try prUp(4 * f, 1)
        encoder4 = try prUp(8 * f, 0)
        func upBlock(_ inC: Int, _ outC: Int) throws -> DynUNetUpBlock {
            try DynUNetUpBlock(spatialDims: spatialDims, inChannels: inC, outChannels: outC,
                               kernel: Array(repeating: 3, count: spatialDims),
                               upKernel: Array(repeating: 2, count: spatialDims), norm: norm,
                               act: .leakyRelu(slope: 0.01), dropout: nil, transBias: false, residual: resBlock)
        }
        decoder5 = try upBlock(hiddenSize, 8 * f)
        decoder4 = try upBlock(8 * f, 4 * f)
        decoder3 = try upBlock(4 * f, 2 * f)
        decoder2 = try upBlock(2 * f, f)
        let (out, conv) = try unetOutBlock(spatialDims: spatialDims, inChannels: f, outChannels: outChannels)
        outConv = conv
        super.init()
        try registerModule("vit", vit)
        try registerModule("encoder1", encoder1)
        try registerModule("encoder2", encoder2)
        try registerModule("encoder3", encoder3)
        try registerModule("encoder4", encoder4)
        try registerModule("decoder5", decoder5)
        try registerModule("decoder4", decoder4)
        try registerModule("decoder3", decoder3)
        try registerModule("decoder2", decoder2)
        try registerModule("out", out)
    }

    /// Tokens [b, patches, hidden] back to a [b, hidden, feat...] feature map.
    private func projFeat(_ x: Tensor) throws -> Tensor {
        let b = x.shape[0]
        let n = featSize.count
        return try x.reshape([b] + featSize + [hiddenSize]).permute([0, n + 1] + (1...n).map { $0 })
    }

    public func forward(_ input: Tensor) throws -> Tensor {
        guard input.rank == imgSize.count + 2, Array(input.shape.dropFirst(2)) == imgSize else {
            throw TorchError(operation: "UNETR", message: "input spatial size \(Array(input.shape.dropFirst(2))) must equal img_size \(imgSize)")
        }
        let (x, hidden) = try vit.forward(input)
        let enc1 = try encoder1(input)
        let enc2 = try encoder2(projFeat(hidden[3]))
        let enc3 = try encoder3(projFeat(hidden[6]))
        let enc4 = try encoder4(projFeat(hidden[9]))
        let dec3 = try decoder5.forward(projFeat(x), skip: enc4)
        let dec2 = try decoder4.forward(dec3, skip: enc3)
        let dec1 = try decoder3.forward(dec2, skip: enc2)
        return try outConv(decoder2.forward(dec1, skip: enc1))
    }
}
