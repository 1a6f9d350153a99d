import ArgumentParser
import Foundation
import MONAILabel
import MONAILabelServer

/// `monailabel users`: the built-in accounts of an app (`MONAI_LABEL_AUTH_BUILTIN=true`), kept in
/// `<app>/.auth/users.json` (0600) with salted scrypt hashes.
struct Users: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manage built-in sign-in accounts (for sites without an identity server).",
        subcommands: [Add.self, Remove.self, List.self, Passwd.self])

    struct AppOption: ParsableArguments {
        @Option(name: [.customShort("a"), .long], help: "App folder.")
        var app: String

        var accounts: BuiltinAccounts {
            get throws {
                let url = URL(fileURLWithPath: app).standardizedFileURL
                guard FileOps.isDirectory(url.path) else { throw ValidationError("App Directory does NOT exist: \(app)") }
                return BuiltinAccounts(appDir: url)
            }
        }
    }

    /// The password from stdin: prompted without echo on a terminal, else the first line (for scripts).
    static func readPassword(_ prompt: String) throws -> String {
        if isatty(STDIN_FILENO) == 1 {
            guard let p = getpass(prompt) else { throw ValidationError("no password given") }
            let first = String(cString: p)
            guard let q = getpass("Repeat: "), String(cString: q) == first else { throw ValidationError("passwords differ") }
            return first
        }
        guard let line = readLine(strippingNewline: true) else { throw ValidationError("no password on stdin") }
        return line
    }

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add an account; the password is read from stdin.")
        @OptionGroup var options: AppOption
        @Argument(help: "Username.") var username: String
        @Option(help: "Comma-separated roles: admin, reviewer, annotator, user (or full role names).")
        var roles = "user"

        func run() throws {
            let settings = try AuthSettings.fromEnvironment(ProcessInfo.processInfo.environment)
            let names = roles.split(separator: ",").map { settings.roleName($0.trimmingCharacters(in: .whitespaces)) }
            try options.accounts.add(username, password: try Users.readPassword("Password for \(username): "), roles: names)
            print("Added \(username): \(names.joined(separator: ", "))")
        }
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove an account.")
        @OptionGroup var options: AppOption
        @Argument(help: "Username.") var username: String

        func run() throws {
            try options.accounts.remove(username)
            print("Removed \(username)")
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List accounts and their roles.")
        @OptionGroup var options: AppOption

        func run() throws {
            for u in try options.accounts.list() { print("\(u.username)\t\(u.roles.joined(separator: ","))") }
        }
    }

    struct Passwd: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Set an account's password (read from stdin).")
        @OptionGroup var options: AppOption
        @Argument(help: "Username.") var username: String

        func run() throws {
            try options.accounts.setPassword(username, password: try Users.readPassword("New password for \(username): "))
            print("Password changed for \(username)")
        }
    }
}
