import Foundation
import MONAILabel

/// Upstream's `MONAI_LABEL_AUTH_*` settings, same names and defaults (monailabel/config.py), plus
/// `MONAI_LABEL_AUTH_ISSUER`: when set, tokens must carry exactly this `iss` (upstream does not check it), and
/// `MONAI_LABEL_AUTH_CLIENT_SECRET` / `MONAI_LABEL_AUTH_SCOPE` for the password grant.
public struct AuthSettings: Sendable, Equatable {
    public var enable = false
    public var realmURI = "http://localhost:8080/realms/monailabel"
    /// Seconds for each request to the identity provider.
    public var timeout = 10
    public var tokenUsername = "preferred_username"
    public var tokenEmail = "email"
    public var tokenName = "name"
    /// Where the roles are in the token; `#` separates nested keys (`realm_access#roles`).
    public var tokenRoles = "realm_access#roles"
    public var clientID = "monailabel-app"
    public var roleAdmin = "monailabel-admin"
    public var roleReviewer = "monailabel-reviewer"
    public var roleAnnotator = "monailabel-annotator"
    public var roleUser = "monailabel-user"
    public var issuer = ""
    /// Sent as `client_secret` with the password grant when set (`MONAI_LABEL_AUTH_CLIENT_SECRET`): providers that
    /// allow that grant only to confidential clients (glewlwyd; Keycloak clients with client authentication on).
    public var clientSecret = ""
    /// Sent as `scope` with the password grant when set (`MONAI_LABEL_AUTH_SCOPE`): providers that grant roles as
    /// OAuth scopes, or require a scope, need it asked for.
    public var scope = ""
    /// Built-in accounts (`monailabel users`) and tokens signed by this server instead of a realm
    /// (`MONAI_LABEL_AUTH_BUILTIN`).
    public var builtin = false
    /// Seconds a built-in token stays valid (`MONAI_LABEL_AUTH_TOKEN_LIFETIME`).
    public var tokenLifetime = 3600

    public init() {}

    public static func fromEnvironment(_ environment: [String: String]) throws -> AuthSettings {
        var s = AuthSettings()
        func value(_ key: String) -> String? { environment["MONAI_LABEL_AUTH_" + key] }
        for (key, path) in [("ENABLE", \AuthSettings.enable), ("BUILTIN", \AuthSettings.builtin)] {
            guard let v = value(key) else { continue }
            switch v.lowercased() {
            case "true", "1", "yes", "on": s[keyPath: path] = true
            case "false", "0", "no", "off": s[keyPath: path] = false
            default: throw MONAILabelError.invalid("MONAI_LABEL_AUTH_\(key) must be true or false, not '\(v)'")
            }
        }
        for (key, path, range) in [("TIMEOUT", \AuthSettings.timeout, 1...600), ("TOKEN_LIFETIME", \AuthSettings.tokenLifetime, 60...604_800)] {
            guard let v = value(key) else { continue }
            guard let t = Int(v.trimmingCharacters(in: .whitespaces)), range.contains(t) else {
                throw MONAILabelError.invalid("MONAI_LABEL_AUTH_\(key) must be seconds from \(range.lowerBound) to \(range.upperBound), not '\(v)'")
            }
            s[keyPath: path] = t
        }
        let strings: [(String, WritableKeyPath<AuthSettings, String>)] = [
            ("REALM_URI", \.realmURI), ("TOKEN_USERNAME", \.tokenUsername), ("TOKEN_EMAIL", \.tokenEmail),
            ("TOKEN_NAME", \.tokenName), ("TOKEN_ROLES", \.tokenRoles), ("CLIENT_ID", \.clientID),
            ("ROLE_ADMIN", \.roleAdmin), ("ROLE_REVIEWER", \.roleReviewer), ("ROLE_ANNOTATOR", \.roleAnnotator),
            ("ROLE_USER", \.roleUser), ("ISSUER", \.issuer), ("CLIENT_SECRET", \.clientSecret), ("SCOPE", \.scope),
        ]
        for (key, path) in strings {
            if let v = value(key) { s[keyPath: path] = v }
        }
        if s.realmURI.hasSuffix("/") { s.realmURI.removeLast() }
        return s
    }

    /// The configured name of the role a short name (`admin`, `reviewer`, `annotator`, `user`) stands for;
    /// other names are taken as they are.
    public func roleName(_ short: String) -> String {
        switch short {
        case "admin": roleAdmin
        case "reviewer": roleReviewer
        case "annotator": roleAnnotator
        case "user": roleUser
        default: short
        }
    }

    /// The configured name of `role`.
    func name(of role: Role) -> String {
        switch role {
        case .admin: roleAdmin
        case .reviewer: roleReviewer
        case .annotator: roleAnnotator
        case .user: roleUser
        }
    }
}
