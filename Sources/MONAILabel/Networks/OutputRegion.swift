import TorchKit

// Boxes here are one half-open range of rows per spatial axis.

/// A network that can compute a box of its output for less than the whole output costs. The sliding window
/// asks for the part of each window that lies on the image: a window over an image smaller than the window
/// (MONAI pads it up to the window) keeps only that part once the padding is cropped away. MONAI's spleen UNet
/// on a 96x96x64 CT at 1.5 x 1.5 x 2 mm runs a 160^3 window of which 64% is kept (144x144x127 after Spacingd),
/// and its last two layers, at full resolution, took a third of the window's time (libtorch 1.13, 2 threads).
protocol OutputRegionForward: Layer {
    /// `forward(input)` narrowed to `region` (output coordinates), within float rounding of it.
    func forward(_ input: Tensor, outputRegion region: [Range<Int>]) throws -> Tensor
}

/// `network(input)` narrowed to `region`, computing only that where the network can (`OutputRegionForward`).
func forward(_ network: any Layer, _ input: Tensor, outputRegion region: [Range<Int>]) throws -> Tensor {
    if let r = network as? any OutputRegionForward { return try r.forward(input, outputRegion: region) }
    return try network(input).narrowed(to: region)
}

/// A layer that computes a box of its output from a box of its input.
protocol BoxForward: Layer {
    /// The output's spatial size for an input of spatial size `inputSize`; nil when the layer cannot tell.
    func outputSize(_ inputSize: [Int]) -> [Int]?
    /// The box of an input of spatial size `inputSize` that `region` of the output depends on; nil when this
    /// layer cannot compute part of its output (a norm over the whole image, a geometry without such a box).
    func inputBox(for region: [Range<Int>], inputSize: [Int]) -> [Range<Int>]?
    /// `region` of `forward(whole)`, within float rounding, from `input`: the box
    /// `inputBox(for: region, inputSize:)` of `whole`, whose spatial size is `inputSize`.
    func forward(_ input: Tensor, inputSize: [Int], region: [Range<Int>]) throws -> Tensor
}

extension Tensor {
    /// This tensor's spatial axes (2...) narrowed to `box`, given relative to `origin` (the row each axis of this
    /// tensor starts at; zeros when nil). A view; throws when the box leaves the tensor.
    func narrowed(to box: [Range<Int>], origin: [Int]? = nil) throws -> Tensor {
        guard box.count <= shape.count - 2, origin.map({ $0.count == box.count }) ?? true else {
            throw regionError("a box of \(box.count) axes for a tensor of shape \(shape)")
        }
        var t = self
        for (d, range) in box.enumerated() {
            let start = range.lowerBound - (origin?[d] ?? 0)
            if start == 0, range.count == t.shape[d + 2] { continue }
            t = try t.narrow(dim: d + 2, start: start, length: range.count)
        }
        return t
    }
}

/// The smallest box holding both.
private func union(_ a: [Range<Int>], _ b: [Range<Int>]) -> [Range<Int>] {
    zip(a, b).map { min($0.lowerBound, $1.lowerBound)..<max($0.upperBound, $1.upperBound) }
}

private func regionError(_ what: String) -> TorchError {
    TorchError(operation: "forward(outputRegion:)", message: what)
}

extension Convolution: BoxForward {
    func outputSize(_ inputSize: [Int]) -> [Int]? { conv.outputSize(inputSize: inputSize, kernel: conv.kernelSize) }

    func inputBox(for region: [Range<Int>], inputSize: [Int]) -> [Range<Int>]? {
        guard adn?.actsPerVoxel ?? true else { return nil }
        return conv.inputWindow(for: region, inputSize: inputSize, kernel: conv.kernelSize)?.box
    }

    func forward(_ input: Tensor, inputSize: [Int], region: [Range<Int>]) throws -> Tensor {
        guard adn?.actsPerVoxel ?? true,
              let w = conv.inputWindow(for: region, inputSize: inputSize, kernel: conv.kernelSize)
        else { throw regionError("this convolution block cannot compute part of its output") }
        return try forward(input).narrowed(to: region, origin: w.offset)
    }
}

extension ResidualUnit: BoxForward {
    func outputSize(_ inputSize: [Int]) -> [Int]? { units.outputSize(inputSize) }

    /// The residual path's box and, for a convolution, where its box run's output starts.
    private func residualWindow(for region: [Range<Int>], inputSize: [Int]) -> (box: [Range<Int>], offset: [Int])? {
        guard let conv = residual else {
            // The identity: only when the units keep the size.
            return outputSize(inputSize) == inputSize ? (region, Array(repeating: 0, count: region.count)) : nil
        }
        guard let c = conv as? Conv else { return nil }
        return c.inputWindow(for: region, inputSize: inputSize, kernel: c.kernelSize)
    }

    func inputBox(for region: [Range<Int>], inputSize: [Int]) -> [Range<Int>]? {
        guard let a = units.inputBox(for: region, inputSize: inputSize),
              let b = residualWindow(for: region, inputSize: inputSize)?.box
        else { return nil }
        return union(a, b)
    }

    func forward(_ input: Tensor, inputSize: [Int], region: [Range<Int>]) throws -> Tensor {
        guard let unitsBox = units.inputBox(for: region, inputSize: inputSize),
              let res = residualWindow(for: region, inputSize: inputSize)
        else { throw regionError("this residual unit cannot compute part of its output") }
        // `input` is `inputBox`'s box: the union of the two paths' boxes.
        let origin = union(unitsBox, res.box).map(\.lowerBound)
        let y = try units.forward(input.narrowed(to: unitsBox, origin: origin), inputSize: inputSize, region: region)
        let x = try input.narrowed(to: res.box, origin: origin)
        let r = try residual.map { try $0(x).narrowed(to: region, origin: res.offset) } ?? x
        return try sum(y, r)
    }
}

extension Sequential: BoxForward {
    /// Each layer's input size, then the output size; nil when a layer cannot compute boxes.
    private func sizes(_ inputSize: [Int]) -> [[Int]]? {
        var all = [inputSize]
        for layer in layers {
            guard let l = layer as? any BoxForward, let next = l.outputSize(all[all.count - 1]) else { return nil }
            all.append(next)
        }
        return all
    }

    /// The box each layer's input needs for `region` of the last output, first layer first.
    private func inputBoxes(for region: [Range<Int>], sizes: [[Int]]) -> [[Range<Int>]]? {
        var boxes: [[Range<Int>]] = []
        var wanted = region
        for (i, layer) in layers.enumerated().reversed() {
            guard let l = layer as? any BoxForward, let box = l.inputBox(for: wanted, inputSize: sizes[i]) else {
                return nil
            }
            boxes.append(box)
            wanted = box
        }
        return boxes.reversed()
    }

    func outputSize(_ inputSize: [Int]) -> [Int]? { sizes(inputSize)?.last }

    func inputBox(for region: [Range<Int>], inputSize: [Int]) -> [Range<Int>]? {
        guard let s = sizes(inputSize) else { return nil }
        return layers.isEmpty ? region : inputBoxes(for: region, sizes: s)?.first
    }

    func forward(_ input: Tensor, inputSize: [Int], region: [Range<Int>]) throws -> Tensor {
        guard let s = sizes(inputSize), let boxes = inputBoxes(for: region, sizes: s) else {
            throw regionError("this sequence cannot compute part of its output")
        }
        var x = input
        for (i, layer) in layers.enumerated() {
            guard let l = layer as? any BoxForward else { throw regionError("a layer cannot compute part of its output") }
            x = try l.forward(x, inputSize: s[i], region: i + 1 < boxes.count ? boxes[i + 1] : region)
        }
        return x
    }
}

extension UNet: OutputRegionForward {
    /// Levels below the top that compute boxes too; deeper ones run whole (their boxes cover most of their
    /// input by then, as each level's box grows by its kernels' reach and halves).
    static let regionLevels = 4

    /// Each level (down, skip connection, up) runs its down path whole; the up-sampling layer and its residual
    /// unit compute `region` and what it reads, and the level below is asked only for that box, down to
    /// `regionLevels` levels.
    func forward(_ input: Tensor, outputRegion region: [Range<Int>]) throws -> Tensor {
        try Self.level(model, input, region, depth: 0)
    }

    /// `region` of `block(input)` for one UNet level `block` = [down, SkipConnection(below), up].
    private static func level(_ block: any Layer, _ input: Tensor, _ region: [Range<Int>], depth: Int) throws -> Tensor {
        guard depth <= regionLevels, let seq = block as? Sequential, seq.layers.count == 3,
              let skip = seq.layers[1] as? SkipConnection, let up = seq.layers[2] as? any BoxForward
        else { return try block(input).narrowed(to: region) }
        let x = try seq.layers[0](input)
        let size = Array(x.shape.dropFirst(2))
        guard let box = up.inputBox(for: region, inputSize: size) else {
            return try up(skip(x)).narrowed(to: region)
        }
        // The skip connection's concatenation, of the box only; the level below computes just that box.
        let below = try level(skip.submodule, x, box, depth: depth + 1)
        guard Array(below.shape.dropFirst(2)) == box.map(\.count) else {
            throw regionError("the level below returned \(below.shape) for the box \(box)")
        }
        let joined = try Tensor.cat([x.narrowed(to: box), below], dim: 1)
        return try up.forward(joined, inputSize: size, region: region)
    }
}
