import DICOMwebDatastore
import Foundation
import MONAILabel

/// The DICOMweb datastore's conversions, each in a `monailabel dicom_convert` process under the model workers'
/// memory limit and `MONAI_LABEL_DICOM_CONVERT_TIMEOUT`: a series that crashes, aborts, exhausts memory or
/// hangs in DCMTK ends that process, and the request gets a 502 naming the series (the datastore remembers it).
/// At most `concurrent` conversions run at once (others wait their turn): each may use up to the memory limit.
final class IsolatedDicomConverter: DicomConverter {
    let runner: IsolatedJobRunner
    private let slots: DispatchSemaphore

    /// Conversions running at once.
    static let concurrent = 2

    init(settings: Settings) {
        runner = IsolatedJobRunner(launch: .dicomConverter(settings: settings), timeout: Double(settings.dicomConvertTimeout))
        slots = DispatchSemaphore(value: Self.concurrent)
    }

    func run(_ request: JSONValue) throws -> JSONValue {
        slots.wait()
        defer { slots.signal() }
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
