import ArgumentParser
import Foundation
import MONAILabel

/// `monailabel infer_worker`: a model worker the server starts and supervises (its stdin is the server's
/// socket). Hidden: it only makes sense as the server's child.
struct InferWorkerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "infer_worker", abstract: "Serve inference for the server (the server's child process).",
        shouldDisplay: false)

    @Option(name: [.customShort("a"), .long], help: "App directory.")
    var app: String
    @Option(name: [.customShort("s"), .long], help: "Studies folder.")
    var studies: String
    @Option(name: [.customShort("c"), .long], help: ArgumentHelp("App setting: --conf KEY VALUE.", valueName: "KEY VALUE"))
    var conf: [String] = []
    @Option(name: .customLong("max-memory"), help: "Data-segment limit in bytes (0: none).")
    var maxMemory: UInt64 = 0

    func run() throws {
        let confDict = confDictionary(conf)
        do {
            try InferWorker.serve(appDir: app, studies: studies, conf: confDict, maxMemory: maxMemory)
        } catch {
            FileHandle.standardError.write(Data("ERROR: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}
