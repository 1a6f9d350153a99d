import ArgumentParser
import MONAILabelServer

@main
struct MONAILabelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "monailabel", abstract: "MONAI Label server")
    func run() throws {}
}
