/// Deterministic label payloads for the datastore crash test: the child process writes them and the test
/// regenerates them from the seed to compare byte for byte.
public enum CrashPayload {
    public static func bytes(seed: UInt64) -> [UInt8] {
        var rng = SplitMix64(seed: seed)
        let count = Int(rng.next() % 200_000) + 1_000
        var out = [UInt8](repeating: 0, count: count)
        var i = 0
        while i < count {
            var v = rng.next()
            for _ in 0..<8 where i < count {
                out[i] = UInt8(v & 0xFF)
                v >>= 8
                i += 1
            }
        }
        return out
    }
}
