import ArgumentParser
import Foundation
import MONAILabel

/// `monailabel train_worker`: one rank of a data-parallel train job (torchrun's vocabulary). The job's own
/// process starts the ranks on its machine; on another machine run it by hand to add that machine's
/// CPUs/GPUs to a job started with `world_size`, `local_ranks` and `rendezvous_port`.
struct TrainWorkerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train_worker",
        abstract: "Join a data-parallel train job as one of its ranks.",
        discussion: "The job's request comes from rank 0; images come from this machine's --studies "
            + "(a copy or shared folder of the server's datastore, or the DICOMweb cache).")

    @Option(name: .long, help: "Rank 0's address: HOST:PORT (the job's rendezvous_port).")
    var rendezvous: String
    @Option(name: .long, help: "This process's rank, 1...world size - 1.")
    var rank: Int
    @Option(name: .customLong("world-size"), help: "Number of ranks in the job.")
    var worldSize: Int
    @OptionGroup var child: ChildAppOptions
    @Flag(name: .customLong("exit-with-parent"), help: .hidden)
    var exitWithParent = false

    func run() throws {
        do {
            let (host, port) = try Rendezvous.parseAddress(rendezvous)
            try TrainWorker.run(appDir: child.app, studies: child.studies, conf: confDictionary(child.conf),
                                host: host, port: port, rank: rank, worldSize: worldSize,
                                exitWithParent: exitWithParent)
        } catch {
            FileHandle.standardError.write(Data("ERROR: \(error)\n".utf8))
            ChildProcess.end(1)
        }
        ChildProcess.end(0)
    }
}
