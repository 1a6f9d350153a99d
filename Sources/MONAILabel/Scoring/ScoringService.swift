import Foundation

/// The app's scoring side (spec sections 1.8 and 4.4): the methods `/info/` lists and their job list. Jobs run
/// in child processes that only read the datastore; the server applies the updates they report.
public final class ScoringService: Sendable {
    public let methods: OrderedMap<any ScoringMethod>
    public let jobs: BackgroundJobs

    private let datastore: Datastore

    /// - Parameter modelMethods: the app's model-based methods (epistemic), listed after dice and sum.
    init(settings: Settings, datastore: Datastore, modelMethods: [any ScoringMethod] = []) {
        var m = OrderedMap<any ScoringMethod>()
        if settings.tasksScoring {
            for s: any ScoringMethod in [DiceScoring(), SumScoring()] + modelMethods { m[s.name] = s }
        }
        self.datastore = datastore
        methods = m
        jobs = BackgroundJobs(kind: .scoring, launch: JobLaunch(settings: settings),
                              stopGrace: Double(settings.trainStopGrace)) { value in
            let outcome = try ScoringOutcome(json: value)
            try outcome.apply(to: datastore)
            return .object(outcome.result)
        }
    }

    /// `/info/` `scoring`: `{name: {"description"}}`.
    public var info: JSONObject {
        var o = JSONObject()
        for (name, s) in methods { o[name] = ["description": .string(s.description)] }
        return o
    }

    /// Queues a job for each model-based method whose scores are stale (a new model file was published since
    /// they were computed, or the images were never scored), one per kind of score and model. Upstream re-runs
    /// every scoring method at start-up, after each next-sample and after training; dice and sum do not depend
    /// on the model, so only these are re-run. Cheap when nothing is stale (image infos are in memory).
    ///
    /// - Parameter newModel: a model was just published: a job already running may have loaded the previous
    ///   weights, so only queued ones count as covering the refresh.
    /// - Returns: the jobs queued.
    @discardableResult
    public func refreshStale(newModel: Bool = false) -> [Job] {
        let waiting = Set(jobs.all.filter { $0.status == .submitted || (!newModel && $0.status == .running) }
            .compactMap { $0.request["method"]?.stringValue })
        // `epistemic` and `<model>_epistemic` compute the same scores: one job per kind of score and model.
        var covered = Set<String>()
        var queued: [Job] = []
        for (name, method) in methods {
            guard let m = method as? any ModelDependentScoring else { continue }
            let key = "\(type(of: m))/\(m.modelName)"
            guard !covered.contains(key) else { continue }
            if waiting.contains(name) || m.isStale(datastore: datastore) {
                covered.insert(key)
                guard !waiting.contains(name), let r = try? request(["method": .string(name)]),
                    let job = try? jobs.submit(r.json, enqueue: true)
                else { continue }
                queued.append(job)
            }
        }
        return queued
    }

    /// Throws 404 for a method this app does not have (upstream queues it and lets the child fail), and
    /// `invalidInput` naming the parameter for a numeric one out of range, before any job is queued.
    public func requireMethod(_ name: String, request: JSONObject = JSONObject()) throws -> any ScoringMethod {
        guard let m = methods[name] else {
            throw MONAILabelError.notFound(
                "Scoring method '\(name)' not found; available: \(methods.keys.joined(separator: ", "))")
        }
        _ = try Self.numSamples(request)
        // The networks of model-based methods run on the request's `device` (a 422 naming it when the backend lacks it).
        _ = try DeviceList.requested(request["device"])
        return m
    }

    /// Decodes a scoring job's request (`method` and the client's params): 404 for a method this app does not
    /// have, 422 naming a parameter of the wrong type or out of range.
    public func request(_ json: JSONObject) throws -> ScoringRequest {
        guard let method = try json.stringParam("method") else { throw MONAILabelError.invalid("scoring request has no method") }
        _ = try requireMethod(method, request: json)
        return ScoringRequest(method: method, json: json)
    }

    /// The client's `num_samples` (forward passes per image for epistemic and TTA scoring), range-checked.
    static func numSamples(_ request: JSONObject) throws -> Int? {
        try request.intParam("num_samples", in: 1...1000)
    }
}

/// A scoring job's request decoded (`ScoringService.request`).
public struct ScoringRequest: Sendable {
    public let method: String
    /// The request as the job shows it and the child receives it.
    public let json: JSONObject
}
