import Foundation

extension MONAILabelApp {
    /// The job list of `kind`.
    public func jobs(_ kind: JobKind) -> BackgroundJobs {
        switch kind {
        case .train: training.jobs
        case .scoring: scoring.jobs
        case .batchInfer: batchInfer.jobs
        }
    }

    /// Decodes a job request of `kind` into its typed settings: 404 for an unknown model or method, 422
    /// naming the parameter for a value of the wrong type or out of range. The server calls this before
    /// anything is queued, the child before it runs.
    public func jobRequest(_ kind: JobKind, _ json: JSONObject) throws -> JobRequest {
        switch kind {
        case .train: .train(try trainRequest(json))
        case .scoring: .scoring(try scoring.request(json))
        case .batchInfer: .batchInfer(try batchInferRequest(json))
        }
    }

    /// Queues `request` on the job list of its kind; throws `.busy` (429) when one runs and `enqueue` is false.
    public func submitJob(_ request: JobRequest, enqueue: Bool) throws -> Job {
        try jobs(request.kind).submit(request.json, enqueue: enqueue)
    }

    /// Stops every background job and model worker (server shutdown).
    public func shutdown() {
        for kind in JobKind.allCases { jobs(kind).shutdown() }
        inferWorkers?.shutdown()
    }
}
