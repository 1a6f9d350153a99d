import Foundation
import MONAILabel

/// Upstream's `MONAI_LABEL_AUTH_*` settings, same names and defaults (monailabel/config.py), plus
/// `MONAI_LABEL_AUTH_ISSUER`: when set, tokens must carry exactly this `iss` (upstream does not check it).
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

    public init() {}

    public static func fromEnvironment(_ environment: [String: String]) throws -> AuthSettings {
        var s = AuthSettings()
        func value(_ key: String) -> String? { environment["MONAI_LABEL_AUTH_" + key] }
        if let v = value("ENABLE") {
            switch v.lowercased() {
            case "true", "1", "yes", "on": s.enable = true
            case "false", "0", "no", "off": s.enable = false
            default: throw MONAILabelError.invalid("MONAI_LABEL_AUTH_ENABLE must be true or false, not '\(v)'")
            }
        }
        if let v = value("TIMEOUT") {
            guard let t = Int(v.trimmingCharacters(in: .whitespaces)), (1...600).contains(t) else {
                throw MONAILabelError.invalid("MONAI_LABEL_AUTH_TIMEOUT must be seconds from 1 to 600, not '\(v)'")
            }
            s.timeout = t
        }
        let strings: [(String, WritableKeyPath<AuthSettings, String>)] = [
            ("REALM_URI", \.realmURI), ("TOKEN_USERNAME", \.tokenUsername), ("TOKEN_EMAIL", \.tokenEmail),
            ("TOKEN_NAME", \.tokenName), ("TOKEN_ROLES", \.tokenRoles), ("CLIENT_ID", \.clientID),
            ("ROLE_ADMIN", \.roleAdmin), ("ROLE_REVIEWER", \.roleReviewer), ("ROLE_ANNOTATOR", \.roleAnnotator),
            ("ROLE_USER", \.roleUser), ("ISSUER", \.issuer),
        ]
        for (key, path) in strings {
            if let v = value(key) { s[keyPath: path] = v }
        }
        if s.realmURI.hasSuffix("/") { s.realmURI.removeLast() }
        return s
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
