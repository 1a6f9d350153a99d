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

/// Upstream's `Epistemic` strategy (`tasks/activelearning/epistemic.py`, spec section 4.3), also its `TTA` with
/// another key: ranks unlabeled images by a score in their info (`epistemic_entropy`, 0 when unscored) so the
/// image the model is least sure of comes first, skipping images this strategy served in the last `reset`
/// seconds (a day), which then come last, least recently served first.
///
/// Upstream computes a top-k by score, discards it, and picks by "age" (`min(now - served, reset)`) with ties
/// in score order; that is the intended order when k covers every image, which is what we implement, in one
/// sort: age descending, then score descending, then id for a stable answer.
public struct ScoreRankingStrategy: Strategy {
    /// The name the strategy is registered under: it records and reads `info.strategy[name].ts`.
    public let name: String
    public let key: String
    public let description: String
    public let reset: Int

    public init(name: String, key: String = "epistemic_entropy",
                description: String = "Get First Sample Based on Epistemic score", reset: Int = 86400) {
        self.name = name
        self.key = key
        self.description = description
        self.reset = reset
    }

    /// The unlabeled images in the order the strategy would serve them, with upstream's `{"score", "ts"}`
    /// (`ts` being the capped age in seconds).
    public func ranking(datastore: Datastore, now: Int = Int(Date().timeIntervalSince1970))
        -> [(id: String, score: Double, age: Int)]
    {
        datastore.unlabeledImages().map { id in
            let info = datastore.imageInfo(id)
            let score = info?[key]?.doubleValue ?? 0
            let served = info?["strategy"]?[name]?["ts"]?.intValue ?? 0
            return (id, score.isFinite ? score : 0, min(now - served, reset))
        }.sorted { a, b in
            if a.age != b.age { return a.age > b.age }
            if a.score != b.score { return a.score > b.score }
            return a.id < b.id
        }
    }

    public func select(request: JSONObject, datastore: Datastore) throws -> JSONObject? {
        guard let first = ranking(datastore: datastore).first else { return nil }
        return ["id": .string(first.id), key: ["score": .double(first.score), "ts": .int(first.age)]]
    }
}
