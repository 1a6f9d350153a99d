import ArgumentParser
import Foundation
import MONAILabel
import MONAILabelServer

/// `monailabel`: upstream's command line (spec section 6) over the Swift server.
struct MONAILabelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "monailabel",
        abstract: "MONAI Label server: AI-assisted annotation of 3D medical images.",
        discussion: "Wire-compatible with MONAI Label 0.8.5's REST API (3D Slicer's MONAILabel plugin and "
            + "monailabel.client work unmodified).",
        subcommands: [StartServer.self, Apps.self, Datasets.self, RunTask.self, InferWorkerCommand.self, DicomConvertCommand.self, TrainWorkerCommand.self, Users.self, Models.self, SelfTestCommand.self])

    @Flag(name: [.customShort("v"), .long], help: "Print versions and exit.")
    var version = false

    func run() throws {
        guard version else { throw CleanExit.helpRequest(self) }
        print(ServerInfo.versionText())
    }
}

/// `monailabel start_server`.
struct StartServer: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "start_server", abstract: "Start the MONAI Label server for an app and a studies folder.")

    @Option(name: [.customShort("a"), .long], help: "App directory (e.g. sample-apps/radiology).")
    var app: String

    @Option(name: [.customShort("s"), .long], help: "Studies folder (created when missing).")
    var studies: String

    @Option(
        name: [.customShort("c"), .long],
        help: ArgumentHelp("App setting, repeatable: --conf KEY VALUE (e.g. --conf models segmentation_spleen).",
                           valueName: "KEY VALUE"))
    var conf: [String] = []

    @Option(name: [.customShort("i"), .long], help: "Address to listen on.")
    var host = "0.0.0.0"

    @Option(name: [.customShort("p"), .long], help: "Port to listen on (0 picks a free one).")
    var port = 8000

    @Option(name: .customLong("ssl_keyfile"), help: "TLS private key (PEM).")
    var sslKeyfile: String?

    @Option(name: .customLong("ssl_certfile"), help: "TLS certificate chain (PEM).")
    var sslCertfile: String?

    @Option(name: .customLong("ssl_keyfile_password"), help: "Password of an encrypted TLS key.")
    var sslKeyfilePassword: String?

    @Option(name: .customLong("workers"), help: "Request worker threads (default: 2 x cores, at least 8).")
    var workers: Int?

    @Option(name: .customLong("limit_concurrency"), help: "Most requests queued for a worker before 503.")
    var limitConcurrency: Int?

    @Option(name: .customLong("log_level"), help: "Log level: debug, info, warning, error.")
    var logLevel = "info"

    @Option(name: .customLong("root_path"), help: "Accepted for compatibility; the API is served at /.")
    var rootPath = ""

    @Flag(name: .customLong("access_log"), help: "Accepted for compatibility; the access log is always on.")
    var accessLog = false

    @Flag(name: .customLong("dryrun"), help: "Write <app>/.env with the settings and exit.")
    var dryrun = false

    func validate() throws {
        for c in conf where !c.contains("=") {
            throw ValidationError("--conf takes KEY VALUE (got '\(c)')")
        }
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0...65535") }
        guard LogLevel(name: logLevel) != nil else { throw ValidationError("--log_level must be debug, info, warning or error") }
        if (sslKeyfile == nil) != (sslCertfile == nil) {
            throw ValidationError("--ssl_keyfile and --ssl_certfile go together")
        }
    }

    func run() throws {
        let confDict = confDictionary(conf)
        let options = ServerOptions(
            appDir: app, studies: studies, conf: confDict, host: host, port: port, sslCertfile: sslCertfile,
            sslKeyfile: sslKeyfile, sslKeyfilePassword: sslKeyfilePassword, workers: workers,
            queueLimit: limitConcurrency, logLevel: LogLevel(name: logLevel) ?? .info)
        if dryrun {
            let path = try ServerMain.writeDotEnv(options)
            print("settings written to \(path)")
            return
        }
        do {
            try ServerMain.run(options)
        } catch let e as MONAILabelError {
            FileHandle.standardError.write(Data("error: \(e.message)\n".utf8))
            throw ExitCode(1)
        }
    }
}

/// `monailabel apps`: list the bundled sample apps or copy one.
struct Apps: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List sample apps, or copy one with --download.")

    @Flag(name: [.customShort("d"), .long], help: "Copy the app named by --name to --output.")
    var download = false
    @Option(name: [.customShort("n"), .long], help: "Sample app name.")
    var name: String?
    @Option(name: [.customShort("o"), .long], help: "Destination folder.")
    var output: String?

    func run() throws {
        let apps = try SampleApps.locate()
        if !download {
            print("Available Sample Apps are: (\(apps.path))")
            for a in SampleApps.list(apps) { print("  \(a)") }
            return
        }
        guard let name, let output else { throw ValidationError("--download needs --name and --output") }
        let dest = try SampleApps.copy(name, from: apps, to: URL(fileURLWithPath: output))
        print("\(name) is copied at: \(dest.path)")
    }
}

/// `monailabel models`: the app's pretrained weights files, and `--import` for sites without internet (weights
/// files, or a MONAI bundle zip for a bundle app).
struct Models: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List an app's pretrained weights files, or install them (or a MONAI bundle zip) with --import.")

    @Option(name: [.customShort("a"), .long], help: "App folder.")
    var app: String
    @Option(name: .customLong("import"), help: ArgumentHelp(
        "A weights file, or a folder of them, named as upstream publishes them; or a MONAI bundle zip.",
        discussion: "A bundle zip is checked (paths, sizes, CRCs), must hold a bundle this server serves, and is "
            + "extracted into <app>/model/<its base folder>, the name --conf models then takes."))
    var source: String?

    func run() throws {
        let appDir = URL(fileURLWithPath: app).standardizedFileURL
        do {
            guard let source else {
                for line in try PretrainedImport.list(appDir: appDir) { print(line) }
                return
            }
            let url = URL(fileURLWithPath: source).standardizedFileURL
            if url.pathExtension.lowercased() == "zip" {
                guard FileOps.isDirectory(appDir.path) else {
                    throw MONAILabelError.notFound("App Directory does NOT exist: \(appDir.path)")
                }
                guard try AppDefinition.load(appDir: appDir).bundleModels else {
                    throw MONAILabelError.invalid("\(appDir.lastPathComponent) does not serve MONAI bundles (its app.json "
                        + "has no \"bundle_models\": true, as sample-apps/monaibundle has)")
                }
                let folder = try BundleArchive.install(
                    zip: url, modelDir: appDir.appendingPathComponent("model"), requireServable: true)
                print("\(url.lastPathComponent) -> model/\(folder.lastPathComponent) (bundle; start with --conf models "
                    + "\(folder.lastPathComponent))")
                return
            }
            for line in try PretrainedImport.run(source: url, appDir: appDir) {
                print(line)
            }
        } catch let e as MONAILabelError {
            FileHandle.standardError.write(Data("error: \(e.message)\n".utf8))
            throw ExitCode(1)
        }
    }
}

/// `monailabel datasets`: generates the synthetic demo studies (upstream downloads MSD tasks; nothing is
/// downloaded here).
struct Datasets: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List datasets, or generate one with --download (synthetic, no network).")

    @Flag(name: [.customShort("d"), .long], help: "Write the dataset named by --name to --output.")
    var download = false
    @Option(name: [.customShort("n"), .long], help: "Dataset name.")
    var name = DemoStudies.name
    @Option(name: [.customShort("o"), .long], help: "Destination studies folder.")
    var output: String?
    @Option(help: "Number of cases.")
    var count = 12
    @Option(help: "Cases that get a final label.")
    var labeled = 4
    @Option(help: "Volume shape i,j,k in voxels.")
    var shape = "96,96,64"
    @Option(help: "Voxel size i,j,k in mm.")
    var spacing = "1.5,1.5,2.0"

    func run() throws {
        if !download {
            print("Available Datasets are:")
            print("  \(DemoStudies.name): synthetic CT-like volumes with a spleen-shaped organ (generated, no download)")
            return
        }
        guard name == DemoStudies.name else { throw ValidationError("unknown dataset '\(name)'") }
        guard let output else { throw ValidationError("--download needs --output") }
        let dims = shape.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        let mm = spacing.split(separator: ",").compactMap { Double($0.trimmingCharacters(in: .whitespaces)) }
        guard dims.count == 3, dims.allSatisfy({ $0 > 0 && $0 <= 2048 }), mm.count == 3, mm.allSatisfy({ $0 > 0 }) else {
            throw ValidationError("--shape takes three sizes (1...2048) and --spacing three positive numbers")
        }
        let written = try DemoStudies.write(
            to: URL(fileURLWithPath: output), count: count, labeled: labeled, shape: dims, spacing: mm)
        print("\(written) cases written to \(output)")
    }
}

/// The app a server's child process (`run_task`, `infer_worker`) builds: the server passes its own.
struct ChildAppOptions: ParsableArguments {
    @Option(name: [.customShort("a"), .long], help: "App directory.")
    var app: String
    @Option(name: [.customShort("s"), .long], help: "Studies folder.")
    var studies: String
    @Option(name: [.customShort("c"), .long], help: ArgumentHelp("App setting: --conf KEY VALUE.", valueName: "KEY VALUE"))
    var conf: [String] = []
}

/// The `KEY=VALUE` words `joinConfPairs` made from `--conf KEY VALUE` pairs, as a dictionary (a word without `=`
/// is a key with an empty value).
func confDictionary(_ conf: [String]) -> [String: String] {
    var out: [String: String] = [:]
    for c in conf {
        let kv = c.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
        out[String(kv[0])] = kv.count > 1 ? String(kv[1]) : ""
    }
    return out
}

/// `--conf KEY VALUE` takes two words; swift-argument-parser options take one, so the pair is joined as
/// `KEY=VALUE` before parsing.
func joinConfPairs(_ args: [String]) -> [String] {
    var out: [String] = []
    var i = 0
    while i < args.count {
        if args[i] == "-c" || args[i] == "--conf", i + 2 < args.count {
            out.append(args[i])
            out.append(args[i + 1] + "=" + args[i + 2])
            i += 3
        } else {
            out.append(args[i])
            i += 1
        }
    }
    return out
}

MONAILabelCommand.main(joinConfPairs(Array(CommandLine.arguments.dropFirst())))
