import Foundation

/// Turns SIGINT/SIGTERM into a shutdown on a normal thread: the handler only writes to a pipe.
enum SignalRelay {
    nonisolated(unsafe) private static var writeFD: Int32 = -1
    nonisolated(unsafe) private static var count: Int32 = 0

    static func install(_ server: HTTPServer, grace: Double) {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { return }
        writeFD = fds[1]
        let readFD = fds[0]
        let handler: @convention(c) (Int32) -> Void = { _ in
            SignalRelay.count += 1
            if SignalRelay.count > 1 { _exit(130) }
            var b: UInt8 = 1
            _ = Glibc.write(SignalRelay.writeFD, &b, 1)
        }
        signal(SIGINT, handler)
        signal(SIGTERM, handler)
        let t = Thread {
            var b: UInt8 = 0
            while Glibc.read(readFD, &b, 1) < 0 && errno == EINTR {}
            server.shutdown(gracePeriod: grace)
        }
        t.name = "http-signals"
        t.start()
    }
}
