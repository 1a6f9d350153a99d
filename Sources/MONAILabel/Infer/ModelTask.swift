import Foundation
import Imaging

/// An infer task that runs a network of its own (segmentation, DeepGrow, DeepEdit). What they share lives
/// here: the loader of their weights (so `/info/` can say which weights serve and `PUT /model/` can check an
/// upload) and the start of inference, loading the image.
public protocol ModelTask: InferTask {
    /// The network and its weights, reloaded when the file on disk changes.
    var loader: ModelLoader { get }
}

extension ModelTask {
    public var modelPaths: [URL] { loader.paths }

    /// The weights in use, for `/info/`: a file name, or that the network is untrained.
    public var weights: String { loader.weightsDescription }

    public func verifyWeights(_ file: URL, as destination: URL) throws { try loader.verify(file, as: destination) }

    /// `LoadImaged`, timed: an image that cannot be read is the client's error (422), named by its file name only.
    func loadImage(_ path: String, timings: inout Timings) throws -> Volume {
        try timings.measure("pre", "LoadImaged") { () throws -> Volume in
            let url = URL(fileURLWithPath: path)
            do {
                return try ImageIO.load(url)
            } catch {
                throw MONAILabelError.invalid("cannot read image \(url.lastPathComponent): \(error)")
            }
        }
    }
}
