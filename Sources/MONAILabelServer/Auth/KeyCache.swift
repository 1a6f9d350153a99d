import Foundation
import WebToken

/// The verification keys an identity provider publishes: by `kid` from its JWKS, and Keycloak's realm
/// `public_key` for tokens without a matching `kid`.
struct KeySet: Sendable {
    var byKid: [String: SigningKey] = [:]
    var realmKey: SigningKey?

    /// A kid the JWKS lists picks its key. A kid it does not list is unknown (so the cache fetches again: a
    /// rotated key) unless there is no JWKS at all, when the realm key is the only candidate.
    func find(kid: String?) -> SigningKey? {
        if let kid {
            if let k = byKid[kid] { return k }
            return byKid.isEmpty ? realmKey : nil
        }
        if let realmKey { return realmKey }
        return byKid.count == 1 ? byKid.values.first : nil
    }
}

/// Keys fetched once and kept; a token naming an unknown `kid` fetches them again (key rotation), at most once
/// per `minRefresh` so that made-up kids cannot drive traffic to the provider.
final class KeyCache: @unchecked Sendable {
    typealias Fetch = @Sendable () throws -> KeySet
    private let fetch: Fetch
    private let minRefresh: TimeInterval
    private let lock = NSLock()
    // Guarded by `lock`.
    private var current: KeySet?
    private var fetchedAt = Date.distantPast

    init(minRefresh: TimeInterval = 10, fetch: @escaping Fetch) {
        self.fetch = fetch
        self.minRefresh = minRefresh
    }

    /// A key only a fetch from the provider could find.
    struct FetchNeeded: Error {}

    /// The cached key for `kid`, never fetching or waiting (for the event loop): nil when the kid is unknown and no
    /// fetch is allowed yet, so `key(kid:algorithm:)` would not find it either; `FetchNeeded` when a fetch is
    /// allowed or one is under way.
    func cachedKey(kid: String?, algorithm: JWTAlgorithm) throws(FetchNeeded) -> SigningKey? {
        // `key` holds the lock while it fetches: taken, the answer may be about to change.
        guard lock.try() else { throw FetchNeeded() }
        defer { lock.unlock() }
        if let k = current?.find(kid: kid), k.algorithm == algorithm { return k }
        guard current == nil || Date().timeIntervalSince(fetchedAt) >= minRefresh else { return nil }
        throw FetchNeeded()
    }

    /// The key for `kid`, fetching when none is cached or the kid is unknown. Throws when fetching fails and
    /// nothing is cached.
    func key(kid: String?, algorithm: JWTAlgorithm) throws -> SigningKey? {
        lock.lock()
        defer { lock.unlock() }
        if let k = current?.find(kid: kid), k.algorithm == algorithm { return k }
        guard current == nil || Date().timeIntervalSince(fetchedAt) >= minRefresh else { return nil }
        fetchedAt = Date()
        do {
            current = try fetch()
        } catch {
            if current == nil { throw error }
            return nil
        }
        return current?.find(kid: kid)
    }
}
