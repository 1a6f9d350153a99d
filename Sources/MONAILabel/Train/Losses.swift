import Foundation
import TorchKit

/// MONAI's `DiceCELoss(to_onehot_y=True, softmax=True, squared_pred=..., batch=...)` (background included,
/// smooth_nr = smooth_dr = 1e-5, both terms weighted 1 by default): the mean soft Dice loss over channels times
/// `lambdaDice` plus the cross-entropy against the class indices times `lambdaCE`. With `lambdaCE` 0 it is
/// MONAI's `DiceLoss(to_onehot_y=True, softmax=True)`.
public struct DiceCELoss: Sendable {
    public var squaredPred: Bool
    public var batch: Bool
    public var smoothNr = 1e-5
    public var smoothDr = 1e-5
    public var lambdaDice = 1.0
    public var lambdaCE = 1.0

    public init(squaredPred: Bool = false, batch: Bool = false) {
        self.squaredPred = squaredPred
        self.batch = batch
    }

    /// `logits` `[B, C, *spatial]`; `target` `[B, 1, *spatial]` holding class indices as floats.
    public func callAsFunction(_ logits: Tensor, _ target: Tensor) throws -> Tensor {
        let shape = logits.shape
        guard shape.count >= 3, target.shape.count == shape.count, target.shape[1] == 1 else {
            throw MONAILabelError.invalid("DiceCELoss: logits \(shape) and target \(target.shape) do not match")
        }
        let channels = shape[1]
        let onehot = try OneHot.encode(target, channels: channels)
        let probs = try logits.softmax(dim: 1)
        let spatial = Array(2..<shape.count)
        let reduce = batch ? [0] + spatial : spatial
        let intersection = try (probs * onehot).sum(dims: reduce)
        let groundO = try onehot.sum(dims: reduce)
        let predO = squaredPred ? try probs.square().sum(dims: reduce) : try probs.sum(dims: reduce)
        let dice = try 1.0 - (intersection * 2.0 + smoothNr) / (groundO + predO + smoothDr)
        guard lambdaCE != 0 else { return try dice.mean() * lambdaDice }
        let ce = try -(onehot * logits.logSoftmax(dim: 1)).sum(dims: [1]).mean()
        return try dice.mean() * lambdaDice + ce * lambdaCE
    }
}

enum OneHot {
    /// `[B, 1, *spatial]` class indices to `[B, C, *spatial]` floats.
    static func encode(_ target: Tensor, channels: Int) throws -> Tensor {
        try Tensor.cat((0..<channels).map { try target.eq(Double($0)).to(.float32) }, dim: 1)
    }
}

/// MONAI's `MeanDice(include_background=False)` on discrete predictions: per image and foreground class,
/// `2|P∩G| / (|P| + |G|)`; pairs whose ground truth is empty are left out (`ignore_empty`).
public enum DiceMetric {
    /// Mean Dice of `prediction` against `truth` (flat class-index arrays of one image) over `classes`;
    /// nil when no class is present in the ground truth.
    public static func mean(prediction: [Float], truth: [Float], classes: Int) -> Double? {
        var inter = [Int](repeating: 0, count: classes), p = inter, g = inter
        for i in 0..<min(prediction.count, truth.count) {
            let a = Int(prediction[i]), b = Int(truth[i])
            if a > 0 && a < classes { p[a] += 1 }
            if b > 0 && b < classes { g[b] += 1 }
            if a == b && a > 0 && a < classes { inter[a] += 1 }
        }
        var scores: [Double] = []
        for c in 1..<max(classes, 2) where c < classes && g[c] > 0 {
            scores.append(2 * Double(inter[c]) / Double(p[c] + g[c]))
        }
        return scores.isEmpty ? nil : scores.reduce(0, +) / Double(scores.count)
    }
}

/// MONAI's `DiceLoss(sigmoid=True, squared_pred=...)` with its defaults (background included, per item and
/// channel, smooth_nr = smooth_dr = 1e-5, mean reduction): the DeepGrow trainers' loss on one-channel logits.
public struct SigmoidDiceLoss: Sendable {
    public var squaredPred: Bool
    public var smoothNr = 1e-5
    public var smoothDr = 1e-5

    public init(squaredPred: Bool = true) { self.squaredPred = squaredPred }

    /// `logits` and `target` `[B, C, *spatial]`, the target binary.
    public func callAsFunction(_ logits: Tensor, _ target: Tensor) throws -> Tensor {
        guard logits.shape.count >= 3, target.shape == logits.shape else {
            throw MONAILabelError.invalid("DiceLoss: logits \(logits.shape) and target \(target.shape) do not match")
        }
        let probs = try logits.sigmoid()
        let spatial = Array(2..<logits.shape.count)
        let intersection = try (probs * target).sum(dims: spatial)
        let groundO = squaredPred ? try target.square().sum(dims: spatial) : try target.sum(dims: spatial)
        let predO = squaredPred ? try probs.square().sum(dims: spatial) : try probs.sum(dims: spatial)
        let dice = try 1.0 - (intersection * 2.0 + smoothNr) / (groundO + predO + smoothDr)
        return try dice.mean()
    }
}
