import Foundation
import MONAILabel
import WebToken

/// Accounts kept in the app folder for sites without an identity server (`monailabel users ...`), and the
/// server's own ES256 signing key. Both live in `<app>/.auth/` (0700); the files are 0600 and written crash-safe.
public final class BuiltinAccounts: Sendable {
    public struct Account: Sendable, Equatable {
        public var roles: [String]
        public var password: PasswordHash
    }

    public let folder: URL
    var usersFile: URL { folder.appendingPathComponent("users.json") }
    var keyFile: URL { folder.appendingPathComponent("signing-key.pem") }
    /// The issuer the server writes into its tokens and requires back.
    static let issuer = "monailabel"

    public init(appDir: URL) {
        folder = appDir.appendingPathComponent(".auth")
    }

    private func ensureFolder() throws {
        try FileOps.makeDirectory(folder)
        chmod(folder.path, 0o700)
    }

    /// The accounts on disk; none when the file does not exist yet.
    public func load() throws -> [String: Account] {
        guard FileOps.exists(usersFile.path) else { return [:] }
        let data = try Data(contentsOf: usersFile)
        guard let doc = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any],
            let users = doc["users"] as? [String: [String: Any]]
        else { throw MONAILabelError.invalid("users.json is not a users document") }
        var out: [String: Account] = [:]
        for (name, u) in users {
            guard let roles = u["roles"] as? [String], let s = u["scrypt"] as? [String: Any],
                let n = (s["n"] as? NSNumber)?.uint64Value, let r = (s["r"] as? NSNumber)?.uint64Value,
                let p = (s["p"] as? NSNumber)?.uint64Value,
                let salt = (s["salt"] as? String).flatMap({ Data(base64Encoded: $0) }),
                let hash = (s["hash"] as? String).flatMap({ Data(base64Encoded: $0) })
            else { throw MONAILabelError.invalid("users.json: entry for '\(name)' is incomplete") }
            out[name] = Account(roles: roles, password: PasswordHash(n: n, r: r, p: p, salt: Array(salt), hash: Array(hash)))
        }
        return out
    }

    public func save(_ accounts: [String: Account]) throws {
        try ensureFolder()
        var users: [String: Any] = [:]
        for (name, a) in accounts {
            users[name] = ["roles": a.roles, "scrypt": [
                "n": a.password.n, "r": a.password.r, "p": a.password.p,
                "salt": Data(a.password.salt).base64EncodedString(), "hash": Data(a.password.hash).base64EncodedString(),
            ] as [String: Any]]
        }
        let data = try JSONSerialization.data(withJSONObject: ["version": 1, "users": users], options: [.sortedKeys, .prettyPrinted])
        try FileOps.atomicWrite(Array(data), to: usersFile, mode: 0o600)
    }

    /// Adds an account, or replaces its password and roles when `replace`.
    public func add(_ username: String, password: String, roles: [String], replace: Bool = false) throws {
        try Self.checkName(username)
        var accounts = try load()
        if accounts[username] != nil, !replace { throw MONAILabelError.invalid("user '\(username)' exists") }
        accounts[username] = Account(roles: roles, password: try Self.hash(password))
        try save(accounts)
    }

    /// A new password for an existing account; its roles stay.
    public func setPassword(_ username: String, password: String) throws {
        var accounts = try load()
        guard accounts[username] != nil else { throw MONAILabelError.notFound("no user '\(username)'") }
        accounts[username]?.password = try Self.hash(password)
        try save(accounts)
    }

    public func remove(_ username: String) throws {
        var accounts = try load()
        guard accounts.removeValue(forKey: username) != nil else { throw MONAILabelError.notFound("no user '\(username)'") }
        try save(accounts)
    }

    /// Names and roles, by name.
    public func list() throws -> [(username: String, roles: [String])] {
        try load().map { ($0.key, $0.value.roles) }.sorted { $0.0 < $1.0 }
    }

    private static func checkName(_ name: String) throws {
        guard !name.isEmpty, name.count <= 256, !name.contains(where: { $0.isWhitespace || $0.isNewline }) else {
            throw MONAILabelError.invalid("a username is 1 to 256 characters without spaces")
        }
    }

    private static func hash(_ password: String) throws -> PasswordHash {
        guard password.count >= 8 else { throw MONAILabelError.invalid("a password has at least 8 characters") }
        guard let h = PasswordHash.make(password) else { throw MONAILabelError.io("cannot hash the password") }
        return h
    }

    /// The account when `password` is right; nil otherwise (unknown users cost the same scrypt as known ones).
    func check(_ username: String, _ password: String) throws -> Account? {
        let accounts = try load()
        guard let a = accounts[username] else {
            _ = Self.decoy.matches(password)
            return nil
        }
        return a.password.matches(password) ? a : nil
    }

    private static let decoy = PasswordHash(n: PasswordHash.defaultN, r: 8, p: 1, salt: [UInt8](repeating: 7, count: 16),
                                            hash: [UInt8](repeating: 0, count: 32))

    /// The server's signing key, generated (0600) at first start; its kid is derived from the public key.
    func signingKey() throws -> (kid: String, key: SigningKey) {
        try ensureFolder()
        if FileOps.exists(keyFile.path) {
            let pem = try String(contentsOf: keyFile, encoding: .utf8)
            guard let k = SigningKey(pem: pem, isPrivate: true), k.algorithm == .es256 else {
                throw MONAILabelError.invalid("\(keyFile.lastPathComponent) is not an ES256 private key")
            }
            return (Self.kid(k), k)
        }
        guard let k = SigningKey.generate(.es256), let pem = k.pem(isPrivate: true) else {
            throw MONAILabelError.io("cannot generate a signing key")
        }
        try FileOps.atomicWrite(Array(pem.utf8), to: keyFile, mode: 0o600)
        return (Self.kid(k), k)
    }

    private static func kid(_ key: SigningKey) -> String {
        let jwk = key.publicJWK(kid: "") ?? [:]
        return String((jwk["x"] ?? "").prefix(16))
    }
}

/// Refuses sign-in after too many failures: per user and per client address, within a window.
final class LoginLimiter: @unchecked Sendable {
    let window: TimeInterval
    let maxPerUser: Int
    let maxPerAddress: Int
    private let lock = NSLock()
    // Guarded by `lock`: failures since `since` for "u:<name>" and "a:<address>".
    private var failures: [String: (count: Int, since: Date)] = [:]

    init(window: TimeInterval = 300, maxPerUser: Int = 5, maxPerAddress: Int = 20) {
        self.window = window
        self.maxPerUser = maxPerUser
        self.maxPerAddress = maxPerAddress
    }

    /// Seconds to wait when `username` or `address` is locked out, nil when a try is allowed.
    func retryAfter(username: String, address: String, now: Date = Date()) -> Int? {
        lock.lock()
        defer { lock.unlock() }
        var wait: TimeInterval = 0
        for (key, limit) in [("u:" + username, maxPerUser), ("a:" + address, maxPerAddress)] {
            guard let f = failures[key] else { continue }
            let left = window - now.timeIntervalSince(f.since)
            if left <= 0 { failures[key] = nil } else if f.count >= limit { wait = max(wait, left) }
        }
        return wait > 0 ? Int(wait.rounded(.up)) : nil
    }

    func failed(username: String, address: String, now: Date = Date()) {
        lock.lock()
        defer { lock.unlock() }
        if failures.count > 100_000 { failures = failures.filter { now.timeIntervalSince($0.value.since) < window } }
        for key in ["u:" + username, "a:" + address] {
            if let f = failures[key], now.timeIntervalSince(f.since) < window {
                failures[key] = (f.count + 1, f.since)
            } else {
                failures[key] = (1, now)
            }
        }
    }

    func succeeded(username: String) {
        lock.lock()
        defer { lock.unlock() }
        failures["u:" + username] = nil
    }
}
