import ArgumentParser
import Foundation
import MONAILabel

/// `monailabel run_task`: what the server starts as a child process for a background job (its arguments are
/// `JobLaunch.arguments`). Hidden: users start jobs through `POST /train/{model}`.
struct RunTask: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run_task", abstract: "Run one background task (the server's child process).",
        shouldDisplay: false)

    @Option(name: [.customShort("m"), .long], help: "Task method: train, scoring or batch_infer.")
    var method: String
    @Option(name: [.customShort("r"), .long], help: "The request as a JSON object.")
    var request: String
    @OptionGroup var child: ChildAppOptions
    @Option(name: [.customShort("o"), .long], help: "Write the result JSON here.")
    var output: String?

    func run() throws {
        do {
            try JobRunner.run(try JobChild(method: method, request: request, appDir: child.app, studies: child.studies,
                                           conf: confDictionary(child.conf), output: output))
        } catch {
            FileHandle.standardError.write(Data("ERROR: \(error)\n".utf8))
            ChildProcess.end(1)
        }
        ChildProcess.end(0)
    }
}
