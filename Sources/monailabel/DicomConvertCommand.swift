import ArgumentParser
import DICOMwebDatastore
import Foundation
import MONAILabel

/// `monailabel dicom_convert`: one DICOM conversion of the DICOMweb datastore in a process of its own (the
/// server's child, its stdin the server's socket), so that a series that crashes or exhausts DCMTK ends this
/// process, not the server. Hidden: it only makes sense as the server's child.
struct DicomConvertCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dicom_convert", abstract: "Convert one DICOM series for the server (the server's child process).",
        shouldDisplay: false)

    @Option(name: .customLong("max-memory"), help: "Data-segment limit in bytes (0: none).")
    var maxMemory: UInt64 = 0

    func run() throws {
        do {
            try IsolatedJobRunner.serveOne(maxMemory: maxMemory) { try DicomConversion.perform($0) }
        } catch {
            FileHandle.standardError.write(Data("ERROR: \(error)\n".utf8))
            ChildProcess.end(1)
        }
        ChildProcess.end(0)
    }
}
