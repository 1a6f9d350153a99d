import Foundation

/// Process-wide bounds on what the imaging layer allocates, so that a header or a parameter that claims a huge
/// volume is refused with an error before any memory is taken, instead of aborting the process.
///
/// The limit is read from `MONAI_LABEL_MAX_VOXELS` on first use (so child and worker processes, which inherit the
/// environment, apply the server's value) and may be set explicitly with `configure(maxVoxels:)`.
public enum ImagingLimits {
    /// The environment variable that carries the limit to this process and its children.
    public static let environmentKey = "MONAI_LABEL_MAX_VOXELS"
    /// 2^30: volumes must stay below 4 GiB as float32 (a 1024^3 volume is refused: its two-class logits alone
    /// would take 8 GiB).
    public static let defaultMaxVoxels = 1 << 30

    private static let box = LimitBox()

    /// The bound on elements (voxels x channels) of a decoded image or a transform output: they must have fewer.
    public static var maxVoxels: Int { box.value }

    /// Sets the limit for this process and exports it to the environment, so processes started from here
    /// (train jobs, inference workers) apply the same one.
    public static func configure(maxVoxels: Int) {
        box.set(max(1, maxVoxels))
        setenv(environmentKey, String(max(1, maxVoxels)), 1)
    }

    /// The element count of `shape` times `channels`, or an error naming `what` when the product overflows or
    /// reaches `maxVoxels`. Call it with an output shape before allocating the output.
    @discardableResult
    public static func checkVoxels(_ shape: [Int], channels: Int = 1, what: String) throws -> Int {
        guard channels >= 0, shape.allSatisfy({ $0 >= 0 }) else {
            throw ImagingError("\(what): negative size \(shape) x \(channels) channels")
        }
        var total = channels
        for n in shape {
            let (p, o) = total.multipliedReportingOverflow(by: n)
            guard !o else { throw tooLarge(shape, channels: channels, what: what) }
            total = p
        }
        guard total < maxVoxels else { throw tooLarge(shape, channels: channels, what: what) }
        return total
    }

    private static func tooLarge(_ shape: [Int], channels: Int, what: String) -> ImagingError {
        ImagingError(
            "\(what): \(shape)\(channels == 1 ? "" : " x \(channels) channels") reaches the limit of \(maxVoxels) "
                + "voxels (\(environmentKey))")
    }

    /// Parses a limit as the environment carries it; nil for anything but a positive integer.
    static func parse(_ text: String?) -> Int? {
        guard let t = text?.trimmingCharacters(in: .whitespaces), let v = Int(t), v > 0 else { return nil }
        return v
    }

    private final class LimitBox: @unchecked Sendable {
        private let lock = NSLock()
        private var current: Int?

        var value: Int {
            lock.lock()
            defer { lock.unlock() }
            if let current { return current }
            let v = ImagingLimits.parse(ProcessInfo.processInfo.environment[ImagingLimits.environmentKey])
                ?? ImagingLimits.defaultMaxVoxels
            current = v
            return v
        }

        func set(_ v: Int) {
            lock.lock()
            current = v
            lock.unlock()
        }
    }
}
