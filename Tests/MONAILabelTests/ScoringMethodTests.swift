import Foundation
import Testing
@testable import MONAILabel

@Suite(.tags(.unit))
struct ScoringMethodTests {
    @Test func dice_rawValuesNotBinarised_matchesHandComputed() throws {
        // Σy·ŷ = 2·1 + 1·3 = 5; Σy = 3; Σŷ = 4 -> 10 / 7.
        let d = try DiceScoring.dice([2, 1, 0, 0], [1, 3, 0, 0])
        #expect(d == .double(10.0 / 7.0))
    }

    @Test func dice_disjointLabels_isZero() throws {
        #expect(try DiceScoring.dice([1, 1, 0, 0], [0, 0, 1, 0]) == .double(0))
    }

    @Test func dice_bothEmpty_isTheInteger1() throws {
        #expect(try DiceScoring.dice([0, 0, 0], [0, 0, 0]) == .int(1))
    }

    @Test func dice_sizeMismatch_throws() {
        #expect(throws: MONAILabelError.self) { try DiceScoring.dice([1, 0], [1, 0, 0]) }
    }

    @Test func sum_countsValuesAndNonEmptyAxis0Slices() {
        // Shape [3, 2, 2]: slice 0 empty, slice 1 holds 2 and 3, slice 2 holds a negative and a 0.5.
        let values: [Float] = [0, 0, 0, 0, 2, 0, 3, 0, -1, 0, 0.5, 0]
        let info = SumScoring.info(values, shape: [3, 2, 2])
        // 2 + 3 - 1 + 0.5 = 4.5, truncated as Python's int().
        #expect(info["sum"] == .int(4))
        #expect(info["slices"] == [1, 2])
        #expect(info.keys == ["sum", "slices"])
    }

    @Test func sum_negativeTotal_truncatesTowardZero() {
        #expect(SumScoring.info([-1.5, 0], shape: [2, 1])["sum"] == .int(-1))
        #expect(SumScoring.info([-1.5, 0], shape: [2, 1])["slices"] == [])
    }

    @Test func scoringOutcome_jsonRoundTrips() throws {
        var o = ScoringOutcome()
        o.result = ["a": .double(0.5)]
        o.imageInfo = ["a": ["dice": .double(0.5)]]
        o.labelInfo = [.init(id: "a", tag: "final", info: ["sum": 3, "slices": [0]])]
        #expect(try ScoringOutcome(json: o.json) == o)
        #expect(throws: MONAILabelError.self) { try ScoringOutcome(json: ["image_info": [:]]) }
    }
}
