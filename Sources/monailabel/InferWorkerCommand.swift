import ArgumentParser
import Foundation
import MONAILabel

/// `monailabel infer_worker`: a model worker the server starts and supervises (its stdin is the server's
/// socket). Hidden: it only makes sense as the server's child.
struct InferWorkerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "infer_worker", abstract: "Serve inference for the server (the server's child process).",
        shouldDisplay: false)

    @OptionGroup var child: ChildAppOptions
    @Option(name: .customLong("max-memory"), help: "Data-segment limit in bytes (0: none).")
    var maxMemory: UInt64 = 0

    func run() throws {
        do {
            try InferWorker.serve(appDir: child.app, studies: child.studies, conf: confDictionary(child.conf),
                                  maxMemory: maxMemory)
        } catch {
            FileHandle.standardError.write(Data("ERROR: \(error)\n".utf8))
            ChildProcess.end(1)
        }
        ChildProcess.end(0)
    }
}
