import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// One job in a fresh child process of the server's own executable, built from the model workers' pieces
/// (`WorkerHandle`'s socketpair and output tail, `WorkerWire` frames, the worker's data-segment limit): the
/// child reads one request, answers once and exits. For work on data from outside (DICOM from a PACS) that
/// may crash, abort, exhaust memory or hang in C code: any of these ends the child and fails only this job.
///
/// One process per job rather than a long-lived pool: these jobs are rare (a series is converted once, then
/// served from the cache) and a fresh process carries no state, heap fragmentation or half-freed memory from
/// a previous hostile input, while the start-up cost (tens of milliseconds) is small beside a conversion.
public struct IsolatedJobRunner: Sendable {
    /// The child's command line (`monailabel dicom_convert`); `--max-memory` is appended.
    public var launch: InferWorkerPool.Launch
    /// Seconds a job may run before its process is killed.
    public var timeout: Double

    public init(launch: InferWorkerPool.Launch, timeout: Double) {
        self.launch = launch
        self.timeout = timeout
    }

    /// How the job ended when it gave no answer.
    public enum Failure: Error, Sendable, Equatable {
        /// The process died (crash, abort, out-of-memory kill): how, and its last output lines.
        case died(String)
        /// Killed after `timeout` seconds.
        case timedOut(Double)
        /// The process could not be started or its answer was malformed.
        case broken(String)
    }

    /// Runs `request` in a child: its answer's `result`, a domain error it raised (same kind and message), or
    /// a `Failure`.
    public func run(_ request: JSONValue) throws -> JSONValue {
        let frame = WorkerWire.frame(request)
        let root = try ProcessTemp.makeFolder()
        let h: WorkerHandle
        switch WorkerHandle.spawn(slot: 0, launch: launch, under: root, log: { _ in }) {
        case .failure(let e): throw Failure.broken(e.message)
        case .success(let handle): h = handle
        }
        defer {
            h.kill()
            h.reap()
            h.removeFolder()
        }
        guard WorkerWire.writeAll(h.fd, frame) else { throw died(h) }
        switch h.await(deadline: InferWorkerPool.now() + timeout, isCancelled: nil) {
        case .frame(let v):
            if let e = v["error"] {
                let kind = WorkerWire.kind(named: e["kind"]?.stringValue ?? "") ?? .internalError
                throw MONAILabelError(kind, e["message"]?.stringValue ?? "the job failed")
            }
            guard let result = v["result"] else { throw Failure.broken("malformed answer") }
            return result
        case .eof: throw died(h)
        case .timedOut: throw Failure.timedOut(timeout)
        case .cancelled: throw Failure.broken("cancelled")
        case .broken(let why): throw Failure.broken(why)
        }
    }

    private func died(_ h: WorkerHandle) -> Failure {
        let exit = h.reap()
        let tail = h.tail.lines()
        return .died(exit + (tail.isEmpty ? "" : "; its last output: " + tail.joined(separator: " | ")))
    }

    /// The child's side: applies the memory limit, reads one request from stdin (the server's socket), answers
    /// with `handler`'s result or the domain error it threw, and returns.
    public static func serveOne(maxMemory: UInt64, _ handler: (JSONValue) throws -> JSONValue) throws {
        ChildProcess.unblockSignals()
        ChildProcess.exitWhenOrphaned()
        if maxMemory > 0 { try InferWorker.limitMemory(maxMemory) }
        var buffer: [UInt8] = []
        guard let request = try WorkerWire.readFrame(0, &buffer) else { return }
        let reply: JSONValue
        do {
            reply = ["result": try handler(request)]
        } catch let e as MONAILabelError {
            reply = ["error": ["kind": .string(WorkerWire.kindName(e.kind)), "message": .string(e.message)]]
        } catch {
            reply = ["error": ["kind": "internalError", "message": .string(OutputTail.withoutPaths("\(error)"))]]
        }
        _ = WorkerWire.writeAll(0, WorkerWire.frame(reply))
    }
}

extension InferWorkerPool.Launch {
    /// `monailabel dicom_convert`: DICOM conversions of the DICOMweb datastore, under the model workers' memory
    /// limit (`MONAI_LABEL_WORKER_MAX_MEMORY`), with the server's voxel limit.
    public static func dicomConverter(settings: Settings) -> Self {
        // As for model workers: a crashing converter must end at once, not symbolicate for minutes.
        let env = ["SWIFT_BACKTRACE": "enable=no", "MONAI_LABEL_MAX_VOXELS": String(settings.maxVoxels)]
        return Self(executable: settings.childExecutable, arguments: ["dicom_convert"], environment: env,
                    maxMemory: settings.effectiveWorkerMaxMemory)
    }
}
