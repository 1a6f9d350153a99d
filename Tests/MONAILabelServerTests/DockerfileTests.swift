import Foundation
import Testing
import TestSupport

/// There is no Docker engine here, so the Dockerfile is checked against what is: its build stage installs
/// exactly scripts/install-deps.sh's build packages, its runtime stage (with the base image's required packages and
/// everything they depend on) provides every shared library `ldd` finds for the binary and the libtorch backend,
/// it builds and ships the backend, and its Swift image is the toolchain's version.
@Suite(.tags(.unit)) struct DockerfileTests {
    static let dockerfile = (try? String(contentsOf: repoRoot.appendingPathComponent("Dockerfile"), encoding: .utf8)) ?? ""
    static let installDeps = (try? String(contentsOf: repoRoot.appendingPathComponent("scripts/install-deps.sh"),
                                          encoding: .utf8)) ?? ""

    /// The `apt-get install` packages of each stage (`FROM` to the next `FROM`).
    static func stagePackages(_ text: String) -> [[String]] {
        var stages: [[String]] = []
        for line in text.replacingOccurrences(of: "\\\n", with: " ").split(separator: "\n") {
            let t = line.trimmingCharacters(in: .whitespaces)
            if t.hasPrefix("#") { continue }
            if t.uppercased().hasPrefix("FROM ") {
                stages.append([])
                continue
            }
            guard !stages.isEmpty, let r = t.range(of: "apt-get install") else { continue }
            let words = t[r.upperBound...].components(separatedBy: "&&")[0].split(separator: " ").map(String.init)
            stages[stages.count - 1] += words.filter { !$0.hasPrefix("-") }
        }
        return stages
    }

    /// The words of the bash array assignment `NAME=(...)` in `text`.
    static func shellArray(_ name: String, in text: String) -> [String] {
        guard let start = text.range(of: "\n\(name)=(") ?? text.range(of: "\(name)=("),
              let end = text[start.upperBound...].firstIndex(of: ")")
        else { return [] }
        return text[start.upperBound..<end].split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init)
    }

    @Test func buildStage_installsExactlyTheBuildPackagesOfInstallDeps() {
        let build = Self.shellArray("BUILD_PKGS", in: Self.installDeps)
        #expect(!build.isEmpty, "scripts/install-deps.sh has no BUILD_PKGS array")
        #expect(build.contains("libdcmtk-dev"))
        let stages = Self.stagePackages(Self.dockerfile)
        #expect(stages.count == 2, "a build and a runtime stage: \(stages)")
        #expect(Set(stages.first ?? []) == Set(build), "Dockerfile build stage \(stages.first ?? []) vs BUILD_PKGS \(build)")
        // The script installs the build packages too (tests need what the build needs).
        #expect(Self.shellArray("PKGS", in: Self.installDeps).first == "\"${BUILD_PKGS[@]}\"")
    }

    @Test func dockerfile_buildsAndShipsTheBackendBesideTheBinary() {
        let text = Self.dockerfile
        #expect(text.contains("--static-swift-stdlib --product monailabel "), "the runtime image has no Swift runtime")
        #expect(text.contains("--product monailabel_torch"))
        let copy = text.split(separator: "\n").first { $0.hasPrefix("COPY --from=build") } ?? ""
        #expect(copy.contains("/usr/local/bin/monailabel") && copy.contains("/usr/local/bin/libmonailabel_torch.so")
                    && copy.hasSuffix(" /usr/local/bin/"), "\(copy)")
        #expect(text.contains("libdcmtk17"))
    }

    @Test func swiftImage_isTheToolchainsVersion() throws {
        let (status, out) = try runProcess(URL(fileURLWithPath: "/usr/bin/env"), ["swift", "--version"])
        #expect(status == 0)
        guard let r = out.range(of: #"Swift version (\d+\.\d+)"#, options: .regularExpression) else {
            Issue.record("cannot read the toolchain version: \(out)")
            return
        }
        let version = out[r].replacingOccurrences(of: "Swift version ", with: "")
        #expect(Self.dockerfile.contains("FROM swift:\(version)-bookworm AS build"), "toolchain \(version)")
    }

    /// Installed Debian packages: priority, dependencies (first alternative of each), provided names.
    struct Installed {
        var priority: [String: String] = [:]
        var depends: [String: [[String]]] = [:]
        var providers: [String: [String]] = [:]
        var owner: [String: String] = [:]

        static func read() throws -> Installed {
            var db = Installed()
            let (status, out) = try runProcess(
                URL(fileURLWithPath: "/usr/bin/dpkg-query"),
                ["-W", "-f", "${db:Status-Abbrev}\t${Package}\t${Priority}\t${Depends}, ${Pre-Depends}\t${Provides}\n"])
            guard status == 0 else { throw ProbeFailure("dpkg-query failed: \(out)") }
            func names(_ field: Substring) -> [[String]] {
                field.split(separator: ",").map { alt in
                    alt.split(separator: "|").compactMap { w in
                        let n = w.trimmingCharacters(in: .whitespaces).split(separator: " ").first.map(String.init) ?? ""
                        let base = n.split(separator: ":").first.map(String.init) ?? ""
                        return base.isEmpty ? nil : base
                    }
                }.filter { !$0.isEmpty }
            }
            for line in out.split(separator: "\n") {
                let f = line.split(separator: "\t", omittingEmptySubsequences: false)
                guard f.count == 5, f[0].hasPrefix("ii") else { continue }
                let pkg = String(f[1])
                db.priority[pkg] = String(f[2])
                db.depends[pkg] = names(f[3])
                for p in names(f[4]).flatMap({ $0 }) { db.providers[p, default: []].append(pkg) }
            }
            let info = URL(fileURLWithPath: "/var/lib/dpkg/info")
            for file in try FileManager.default.contentsOfDirectory(atPath: info.path) where file.hasSuffix(".list") {
                let pkg = String(file.dropLast(5).split(separator: ":").first ?? "")
                guard let text = try? String(contentsOf: info.appendingPathComponent(file), encoding: .utf8) else { continue }
                for path in text.split(separator: "\n") where path.contains(".so") { db.owner[String(path)] = pkg }
            }
            return db
        }

        /// `roots` and every package they depend on (first installed alternative, virtual names to providers).
        func closure(_ roots: [String]) -> Set<String> {
            var seen = Set<String>()
            var todo = roots
            while let p = todo.popLast() {
                guard seen.insert(p).inserted else { continue }
                for alternatives in depends[p] ?? [] {
                    if let real = alternatives.first(where: { priority[$0] != nil }) {
                        todo.append(real)
                    } else if let provided = alternatives.lazy.compactMap({ providers[$0] }).first {
                        todo += provided
                    }
                }
            }
            return seen
        }

        /// The package owning a library path, trying its real path and the merged-/usr alias.
        func owner(of path: String) -> String? {
            var candidates = [path, URL(fileURLWithPath: path).resolvingSymlinksInPath().path]
            for c in candidates {
                if c.hasPrefix("/usr/lib/") { candidates.append(String(c.dropFirst(4))) }
                if c.hasPrefix("/lib/") { candidates.append("/usr" + c) }
            }
            return candidates.lazy.compactMap { owner[$0] }.first
        }
    }

    struct ProbeFailure: Error, CustomStringConvertible {
        var description: String
        init(_ d: String) { description = d }
    }

    /// The release binary when it and its backend are built (what the image ships), else the debug ones beside
    /// the tests.
    static var binary: URL {
        let release = repoRoot.appendingPathComponent(".build/release/monailabel")
        let backend = repoRoot.appendingPathComponent(".build/release/libmonailabel_torch.so")
        return FileManager.default.isExecutableFile(atPath: release.path) && FileManager.default.fileExists(atPath: backend.path)
            ? release : monailabelBinary
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/ldd")
                       && FileManager.default.isExecutableFile(atPath: "/usr/bin/dpkg-query"),
                   "needs ldd and dpkg (Debian)"))
    func runtimeStage_providesEveryLibraryOfTheBinaryAndTheBackend() throws {
        let db = try Installed.read()
        let runtime = Self.stagePackages(Self.dockerfile).last ?? []
        #expect(runtime.allSatisfy { db.priority[$0] != nil || $0 == "ca-certificates" },
                "runtime packages not known here: \(runtime.filter { db.priority[$0] == nil })")
        // What debian:bookworm-slim has: the required packages (apt among them) and their dependencies.
        let base = db.priority.filter { $0.value == "required" }.map(\.key)
        let image = db.closure(base + runtime)
        let backend = Self.binary.deletingLastPathComponent().appendingPathComponent("libmonailabel_torch.so")
        #expect(FileManager.default.fileExists(atPath: backend.path), "no backend beside \(Self.binary.path)")
        var missing: [String] = []
        for object in [Self.binary, backend] where FileManager.default.fileExists(atPath: object.path) {
            let (status, out) = try runProcess(URL(fileURLWithPath: "/usr/bin/ldd"), [object.path])
            #expect(status == 0, "\(out)")
            #expect(!out.contains("not found"), "\(object.lastPathComponent): \(out)")
            for line in out.split(separator: "\n") {
                guard let arrow = line.range(of: "=> /") else { continue }
                let path = String(line[line.index(before: arrow.upperBound)...].prefix { $0 != " " })
                // The Swift runtime is linked into the image's binary (--static-swift-stdlib, checked above).
                if path.contains("/swift/linux/") { continue }
                guard let pkg = db.owner(of: path) else {
                    missing.append("\(path) (no Debian package owns it)")
                    continue
                }
                if !image.contains(pkg) { missing.append("\(path) (\(pkg))") }
            }
        }
        #expect(missing.isEmpty, "libraries the runtime image would lack:\n\(Set(missing).sorted().joined(separator: "\n"))")
    }
}
