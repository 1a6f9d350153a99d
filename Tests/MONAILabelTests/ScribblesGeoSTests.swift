import Foundation
import Imaging
import Testing
@testable import MONAILabel
import MONAILabelCore

/// Shortest paths over the 26-connected (8 in 2D) grid with GeoS's step cost, by Dijkstra in Double.
private func dijkstra(image: [Float], shape: [Int], spacing: [Double], seeds: [Bool], gamma: Double) -> [Double] {
    let dims = shape.count == 3 ? shape : [1] + shape
    let sp = shape.count == 3 ? spacing : [1] + spacing
    let n = image.count
    var dist = [Double](repeating: .infinity, count: n)
    var done = [Bool](repeating: false, count: n)
    for i in 0..<n where seeds[i] { dist[i] = 0 }
    // The grids are tiny: a linear scan for the closest open node keeps the reference obviously right.
    for _ in 0..<n {
        var u = -1
        for i in 0..<n where !done[i] && dist[i].isFinite && (u < 0 || dist[i] < dist[u]) { u = i }
        guard u >= 0 else { break }
        done[u] = true
        let (ui, uj, uk) = (u / (dims[1] * dims[2]), (u / dims[2]) % dims[1], u % dims[2])
        for di in -1...1 { for dj in -1...1 { for dk in -1...1 where di != 0 || dj != 0 || dk != 0 {
            let (vi, vj, vk) = (ui + di, uj + dj, uk + dk)
            guard vi >= 0, vj >= 0, vk >= 0, vi < dims[0], vj < dims[1], vk < dims[2] else { continue }
            let v = (vi * dims[1] + vj) * dims[2] + vk
            let dx = Double(di) * sp[0], dy = Double(dj) * sp[1], dz = Double(dk) * sp[2]
            let dI = Double(image[u]) - Double(image[v])
            let c = dist[u] + (dx * dx + dy * dy + dz * dz + gamma * gamma * dI * dI).squareRoot()
            if c < dist[v] { dist[v] = c }
        } } }
    }
    return dist
}

@Test(.tags(.unit), arguments: [1, 2, 3, 4])
func geodesicDistance_converged_matchesDijkstraOnRandomGrids(seed: UInt64) throws {
    var rng = SplitMix64(seed: seed)
    for trial in 0..<8 {
        let shape = trial % 3 == 0 ? [Int.random(in: 3...9, using: &rng), Int.random(in: 3...9, using: &rng)]
            : [Int.random(in: 2...6, using: &rng), Int.random(in: 2...7, using: &rng), Int.random(in: 2...7, using: &rng)]
        let n = shape.reduce(1, *)
        let spacing = shape.map { _ in Double.random(in: 0.5...3, using: &rng) }
        let image = (0..<n).map { _ in Float.random(in: 0...1, using: &rng) }
        let gamma = Double.random(in: 0...20, using: &rng)
        var seeds = [Bool](repeating: false, count: n)
        for _ in 0..<Int.random(in: 1...3, using: &rng) { seeds[Int.random(in: 0..<n, using: &rng)] = true }
        let expected = dijkstra(image: image, shape: shape, spacing: spacing, seeds: seeds, gamma: gamma)
        let initial = seeds.map { $0 ? Float(0) : .infinity }
        let exact = try GeodesicDistance.transform(
            image: image, shape: shape, spacing: spacing, initial: initial, gamma: Float(gamma), sweeps: nil)
        let twoSweeps = try GeodesicDistance.transform(
            image: image, shape: shape, spacing: spacing, initial: initial, gamma: Float(gamma), sweeps: 2)
        for i in 0..<n {
            let tolerance = 1e-4 * max(1, expected[i])
            #expect(abs(Double(exact[i]) - expected[i]) <= tolerance,
                    "seed \(seed) trial \(trial) \(shape) voxel \(i): \(exact[i]) vs Dijkstra \(expected[i])")
            // A fixed number of sweeps follows real paths only, so it can overestimate but never undercut.
            #expect(Double(twoSweeps[i]) >= expected[i] - tolerance)
        }
    }
}

@Test(.tags(.unit)) func geodesicDistance_wallWithGap_isWalkedAround() throws {
    // A bright wall with a gap at the far end: the shortest path from the seed runs down, through the gap and
    // back up instead of across the wall.
    let shape = [1, 9, 9]
    var image = [Float](repeating: 0, count: 81)
    for j in 0..<8 { image[j * 9 + 4] = 1 }
    let initial = (0..<81).map { $0 == 0 ? Float(0) : .infinity }
    let exact = try GeodesicDistance.transform(
        image: image, shape: shape, spacing: [1, 1, 1], initial: initial, gamma: 1000, sweeps: nil)
    let seeds = (0..<81).map { $0 == 0 }
    let expected = dijkstra(image: image, shape: shape, spacing: [1, 1, 1], seeds: seeds, gamma: 1000)
    for i in 0..<81 { #expect(abs(Double(exact[i]) - expected[i]) <= 1e-3 * max(1, expected[i])) }
    // The top-right corner is reached around the wall, far less than crossing it (≥ 1000).
    #expect(exact[8] < 30)
}

private func runGeoS(_ c: ScribbledCase, _ params: JSONObject = [:]) throws -> (Volume, JSONObject) {
    try runScribbles(GeoSTask(labels: ["spleen": 1]), image: c.imageURL, scribbles: c.scribblesURL, params)
}

@Test(.tags(.unit)) func geos_scribblesAlone_segmentTheSpleen() throws {
    let tmp = TempDir()
    let c = try ScribbledCase(in: tmp.url)
    let (result, json) = try runGeoS(c)
    #expect(result.spatialShape == c.study.shape)
    let d = dice(result.floats, c.study.label)
    #expect(d >= 0.9, "Dice \(d)")
    #expect(json["bbox"]?.arrayValue?.count == 6)
    #expect(json["label_names"] == ["spleen": 1])
    // Without the intensity term the distances are purely spatial and the answer degrades.
    let (flat, _) = try runGeoS(c, ["gamma": 0])
    #expect(dice(flat.floats, c.study.label) < d)
}

@Test(.tags(.unit)) func geos_symmetricFilter_removesSpecklesAndKeepsTheSpleen() throws {
    let tmp = TempDir()
    let c = try ScribbledCase(in: tmp.url)
    let (result, _) = try runGeoS(c, ["theta": 3])
    #expect(dice(result.floats, c.study.label) >= 0.9)

    // Pure filter check on a plane: a one-voxel speck disappears, a 5x5 block stays.
    var mask = [UInt8](repeating: 0, count: 20 * 20)
    mask[2 * 20 + 2] = 1
    for j in 8..<13 { for k in 8..<13 { mask[j * 20 + k] = 1 } }
    let image = [Float](repeating: 0.5, count: mask.count)
    let ids = try ScribbleIDs(labelInfo: nil, background: 2, foreground: 3)
    let filtered = try GeoS.symmetricFilter(
        mask, image: image, shape: [20, 20], spacing: [1, 1], gamma: 10, theta: 1.5,
        scribbles: [Float](repeating: 0, count: mask.count), ids: ids)
    #expect(filtered[2 * 20 + 2] == 0)
    #expect(filtered[10 * 20 + 10] == 1)
}

@Test(.tags(.unit)) func geos_missingScribbles_andBadParams_areClearErrors() throws {
    let tmp = TempDir()
    let c = try ScribbledCase(in: tmp.url)
    #expect(throws: MONAILabelError.self) { try runGeoS(c, ["gamma": -1]) }
    #expect(throws: MONAILabelError.self) { try runGeoS(c, ["theta": "wide"]) }
    // label_info moves the foreground value to one no voxel has.
    #expect(throws: MONAILabelError.self) {
        try runGeoS(c, ["label_info": [["name": "foreground_scribbles", "id": 7]]])
    }
}

@Test(.tags(.unit)) func geos_info_isAScribblesTask() {
    let task = GeoSTask(labels: ["spleen": 1])
    #expect(task.name == "Scribbles+GeoS")
    #expect(task.info["type"] == "scribbles")
    #expect(task.info["config"]?.objectValue?.keys == ["gamma", "theta", "device"])
}
