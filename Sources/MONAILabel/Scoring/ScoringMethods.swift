import Foundation
import Imaging

/// What a scoring run found: the method's result (the `run_sync` answer) and the datastore updates it asks
/// for. The child computes on a read-only datastore; the server applies `imageInfo`/`labelInfo`, so only the
/// server ever writes the datastore document.
public struct ScoringOutcome: Sendable, Equatable {
    public var result = JSONObject()
    /// `{image id: info to merge}`.
    public var imageInfo: [String: JSONObject] = [:]
    /// `[(label id, tag, info to merge)]`, in the order upstream writes them.
    public var labelInfo: [LabelInfoUpdate] = []

    public struct LabelInfoUpdate: Sendable, Equatable {
        public var id: String
        public var tag: String
        public var info: JSONObject
    }

    public init() {}

    /// The result file the child writes.
    public var json: JSONValue {
        var images = JSONObject()
        for (k, v) in imageInfo.sorted(by: { $0.key < $1.key }) { images[k] = .object(v) }
        let labels: [JSONValue] = labelInfo.map {
            ["id": .string($0.id), "tag": .string($0.tag), "info": .object($0.info)]
        }
        return ["result": .object(result), "image_info": .object(images), "label_info": .array(labels)]
    }

    public init(json: JSONValue) throws {
        guard let o = json.objectValue, let r = o["result"]?.objectValue else {
            throw MONAILabelError.invalid("scoring result has no 'result' object")
        }
        result = r
        for (k, v) in o["image_info"]?.objectValue ?? JSONObject() {
            if let info = v.objectValue { imageInfo[k] = info }
        }
        for v in o["label_info"]?.arrayValue ?? [] {
            guard let e = v.objectValue, let id = e["id"]?.stringValue, let tag = e["tag"]?.stringValue,
                let info = e["info"]?.objectValue
            else { throw MONAILabelError.invalid("malformed label_info entry in scoring result") }
            labelInfo.append(LabelInfoUpdate(id: id, tag: tag, info: info))
        }
    }

    /// Writes the updates into `datastore` (the server side).
    public func apply(to datastore: Datastore) throws {
        for (id, info) in imageInfo.sorted(by: { $0.key < $1.key }) { try datastore.updateImageInfo(id, info: info) }
        for u in labelInfo { try datastore.updateLabelInfo(u.id, tag: u.tag, info: u.info) }
    }
}

/// An active-learning scoring method (upstream's `ScoringMethod`), listed in `/info/` `scoring`.
public protocol ScoringMethod: Sendable {
    var name: String { get }
    var description: String { get }
    /// Scores the datastore; must not write it (see `ScoringOutcome`).
    func score(request: JSONObject, datastore: Datastore, log: (String) -> Void) throws -> ScoringOutcome
}

/// Reads a label as upstream's `LoadImage(image_only=True)` does: float voxels, spatial axis 0 first.
func loadLabelValues(_ path: String) throws -> (values: [Float], shape: [Int]) {
    let v = try ImageIO.load(URL(fileURLWithPath: path))
    return (v.data.asFloat(), v.channels > 1 ? v.shape : v.spatialShape)
}

/// Upstream's `Dice` (`tasks/scoring/dice.py`): for every image with both a `y` (default `final`) and a `y_pred`
/// (default `original`) label, 2Σ(y·ŷ)/(Σy+Σŷ) over the raw voxel values (not binarised), 1 when the
/// denominator is 0; stored as image info `dice`.
public struct DiceScoring: ScoringMethod {
    public let name = "dice"
    public let description = "Compute Dice between final vs original tags"

    public init() {}

    /// The score of one pair of flattened label volumes; the integer 1 when both are empty, as upstream.
    public static func dice(_ y: [Float], _ yPred: [Float]) throws -> JSONValue {
        guard y.count == yPred.count else {
            throw MONAILabelError.invalid("labels differ in size (\(y.count) vs \(yPred.count) voxels)")
        }
        var inter = 0.0, sy = 0.0, sp = 0.0
        for i in y.indices {
            let a = Double(y[i]), b = Double(yPred[i])
            inter += a * b
            sy += a
            sp += b
        }
        let union = sy + sp
        return union != 0 ? .double(2 * inter / union) : .int(1)
    }

    public func score(request: JSONObject, datastore: Datastore, log: (String) -> Void) throws -> ScoringOutcome {
        let tagY = request["y"]?.stringValue ?? LabelTag.final
        let tagPred = request["y_pred"]?.stringValue ?? LabelTag.original
        var out = ScoringOutcome()
        for id in datastore.listImages() {
            guard let y = datastore.labelURI(id, tag: tagY), let p = datastore.labelURI(id, tag: tagPred) else { continue }
            let d: JSONValue
            do {
                d = try Self.dice(try loadLabelValues(y).values, try loadLabelValues(p).values)
            } catch {
                log("\(id): cannot score dice: \(error)")
                continue
            }
            log("\(id) => \(d.compactString())")
            out.imageInfo[id] = ["dice": d]
            out.result[id] = d
        }
        return out
    }
}

/// Upstream's `Sum` (`tasks/scoring/sum.py`): for the `final` and `original` label of every image,
/// `{"sum": int(Σ voxels), "slices": [indices along axis 0 holding any voxel > 0]}` into the label's info.
public struct SumScoring: ScoringMethod {
    public let name = "sum"
    public let description = "Compute Numpy Sum for Final/Original Labels"
    public let tags = [LabelTag.final, LabelTag.original]

    public init() {}

    /// The info of one label, `shape` being its array shape (axis 0 outermost, C order).
    public static func info(_ values: [Float], shape: [Int]) -> JSONObject {
        let total = values.reduce(0.0) { $0 + Double($1) }
        let n0 = shape.first ?? 0
        let per = n0 > 0 ? values.count / n0 : 0
        var slices: [JSONValue] = []
        for s in 0..<n0 where values[(s * per)..<((s + 1) * per)].contains(where: { $0 > 0 }) {
            slices.append(.int(s))
        }
        // Python's int() truncates toward zero.
        let t = total.rounded(.towardZero)
        let sum: JSONValue = t.isFinite && abs(t) < 9.0e18 ? .int(Int(t)) : .double(total)
        return ["sum": sum, "slices": .array(slices)]
    }

    public func score(request: JSONObject, datastore: Datastore, log: (String) -> Void) throws -> ScoringOutcome {
        var out = ScoringOutcome()
        for id in datastore.listImages() {
            for tag in tags {
                guard let labelID = datastore.labelsByImage(id)[tag], let uri = datastore.labelURI(labelID, tag: tag)
                else { continue }
                let info: JSONObject
                do {
                    let (values, shape) = try loadLabelValues(uri)
                    info = Self.info(values, shape: shape)
                } catch {
                    log("\(labelID) (\(tag)): cannot read the label: \(error)")
                    continue
                }
                log("\(labelID) => \(JSONValue.object(info).compactString())")
                out.labelInfo.append(.init(id: labelID, tag: tag, info: info))
                out.result[labelID] = .object(info)
            }
        }
        return out
    }
}
