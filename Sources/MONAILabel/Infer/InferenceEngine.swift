import Foundation
import TorchKit

/// What inference does to a network once its weights are loaded, beyond PyTorch's eval mode.
enum InferenceEngine {
    /// Folds every BatchNorm that directly follows a convolution into it (MONAI's `Convolution` blocks with
    /// norm first in their ADN: UNet's and BasicUNet's). Outputs stay within float rounding of the unfolded
    /// network (the parity tests hold them to 1e-4); evaluating dropout is skipped by the blocks themselves.
    /// Returns how many convolutions were folded.
    @discardableResult
    static func prepare(_ network: Module) throws -> Int {
        try Torch.withNoGrad { try fold(network) }
    }

    private static func fold(_ module: Module) throws -> Int {
        if let c = module as? Convolution { return try c.foldBatchNorm() ? 1 : 0 }
        return try module.children.reduce(0) { $0 + (try fold($1.module)) }
    }
}
