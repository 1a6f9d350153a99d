import CTorch

extension Torch {
    /// Allows or forbids TF32 in CUDA float32 matmuls and convolutions and returns whether it was allowed
    /// before. With TF32 off, CUDA agrees with the CPU to float32 rounding (the self-test's comparisons need
    /// that); on a CPU-only backend the setting is recorded and changes nothing.
    @discardableResult
    public static func setAllowTF32(_ allow: Bool) throws -> Bool {
        var previous: Int32 = 0
        try checked("setAllowTF32") { mlt_cuda_set_allow_tf32(allow ? 1 : 0, &previous, $0) }
        return previous != 0
    }
}
