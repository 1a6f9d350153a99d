import DICOMwebDatastore
import Foundation
import MONAILabel

/// The DICOMweb datastore's conversions, each in a `monailabel dicom_convert` process under the model workers'
/// memory limit and `MONAI_LABEL_DICOM_CONVERT_TIMEOUT`: a series that crashes, aborts, exhausts memory or
/// hangs in DCMTK ends that process, and the request gets a 502 naming the series (the datastore remembers it).
struct IsolatedDicomConverter: DicomConverter {
    let runner: IsolatedJobRunner

    init(settings: Settings) {
        runner = IsolatedJobRunner(launch: .dicomConverter(settings: settings), timeout: Double(settings.dicomConvertTimeout))
    }

    init(runner: IsolatedJobRunner) { self.runner = runner }

    func run(_ request: JSONValue) throws -> JSONValue {
        do {
            return try runner.run(request)
        } catch let f as IsolatedJobRunner.Failure {
            switch f {
            case .died(let how):
                throw MONAILabelError(.badUpstream, "the DICOM converter process died on it (\(how); its memory limit is "
                    + "\(InferWorkerPool.bytesText(runner.launch.maxMemory)))")
            case .timedOut(let s):
                throw MONAILabelError(.badUpstream, "the DICOM conversion ran longer than MONAI_LABEL_DICOM_CONVERT_TIMEOUT "
                    + "(\(Int(s)) s) and was stopped")
            case .broken(let why):
                throw MONAILabelError.io("the DICOM converter process failed: \(why)")
            }
        }
    }
}
