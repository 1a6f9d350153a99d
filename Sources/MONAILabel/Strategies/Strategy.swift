import Foundation

/// An active-learning strategy: picks the next image to label (spec section 4.3).
public protocol Strategy: Sendable {
    var description: String { get }
    /// The chosen image as `{"id": ..., ...strategy fields}`, or nil when nothing is left to label.
    func select(request: JSONObject, datastore: Datastore) throws -> JSONObject?
}

/// Upstream's `random`: a draw among unlabeled images weighted by how long ago each was last served by this
/// strategy, so images nobody has looked at recently come up more often. Upstream returns the first candidate's
/// weight whatever it picks; we return the chosen image's.
public struct RandomStrategy: Strategy {
    public let description = "Random Strategy"
    public init() {}

    public func select(request: JSONObject, datastore: Datastore) throws -> JSONObject? {
        let candidates = datastore.unlabeledImages()
        guard !candidates.isEmpty else { return nil }
        let now = Int(Date().timeIntervalSince1970)
        let weights = candidates.map { id -> Int in
            let last = datastore.imageInfo(id)?["strategy"]?["random"]?["ts"]?.intValue ?? 0
            return max(0, now - last)
        }
        let total = weights.reduce(0, +)
        var pick = 0
        if total > 0 {
            var r = Int.random(in: 0..<total)
            for (i, w) in weights.enumerated() {
                if r < w {
                    pick = i
                    break
                }
                r -= w
            }
        } else {
            pick = Int.random(in: 0..<candidates.count)
        }
        return ["id": .string(candidates[pick]), "weight": .int(weights[pick])]
    }
}

/// Upstream's `first`: the smallest unlabeled id.
public struct FirstStrategy: Strategy {
    public let description = "Get First Sample"
    public init() {}
    public func select(request: JSONObject, datastore: Datastore) throws -> JSONObject? {
        datastore.unlabeledImages().min().map { ["id": .string($0)] }
    }
}

/// The radiology app's `last`: the largest unlabeled id.
public struct LastStrategy: Strategy {
    public let description = "Get Last Sample"
    public init() {}
    public func select(request: JSONObject, datastore: Datastore) throws -> JSONObject? {
        datastore.unlabeledImages().max().map { ["id": .string($0)] }
    }
}
