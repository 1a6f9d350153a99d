import DICOMweb
import Foundation
import HTTPClient
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// A real Orthanc (Debian `orthanc` + `orthanc-dicomweb`) on free loopback ports with its storage in a temp
/// folder, started and stopped by the test. Tests skip when the binary is absent (scripts/install-deps.sh
/// installs it).
final class Orthanc: @unchecked Sendable {
    static let binary = "/usr/sbin/Orthanc"
    static let plugin = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
    static var available: Bool {
        FileManager.default.isExecutableFile(atPath: binary) && FileManager.default.fileExists(atPath: plugin)
    }

    let dir: URL
    let httpPort: Int
    private var process: Process?

    /// The DICOMweb root, as given to `--studies`.
    var root: String { "http://127.0.0.1:\(httpPort)/dicom-web" }

    init(dir: URL) throws {
        self.dir = dir
        httpPort = try freePort()
        let dicomPort = try freePort()
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("db"), withIntermediateDirectories: true)
        let config = """
            {"Name": "monailabel-test", "StorageDirectory": "\(dir.path)/db", "IndexDirectory": "\(dir.path)/db",
             "HttpPort": \(httpPort), "DicomPort": \(dicomPort), "DicomAet": "MLTEST",
             "RemoteAccessAllowed": false, "AuthenticationEnabled": false,
             "Plugins": ["\(Self.plugin)"],
             "DicomWeb": {"Enable": true, "Root": "/dicom-web/", "Host": "127.0.0.1:\(httpPort)"}}
            """
        try Data(config.utf8).write(to: dir.appendingPathComponent("orthanc.json"))
        try start()
    }

    deinit { stop() }

    /// Starts Orthanc on the same storage and waits until `/system` answers.
    func start() throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.binary)
        p.arguments = [dir.appendingPathComponent("orthanc.json").path]
        let log = dir.appendingPathComponent("orthanc.log")
        guard FileManager.default.createFile(atPath: log.path, contents: nil) else {
            throw OrthancError(description: "cannot create \(log.path)")
        }
        let handle = try FileHandle(forWritingTo: log)
        handle.seekToEndOfFile()
        p.standardOutput = handle
        p.standardError = handle
        try p.run()
        process = p
        let client = HTTPClient(configuration: HTTPClientConfiguration(connectTimeout: 1, readTimeout: 5))
        let deadline = Date().addingTimeInterval(15)
        while Date() < deadline {
            if let r = try? client.get(URL(string: "http://127.0.0.1:\(httpPort)/system")!), r.status == 200 { return }
            guard p.isRunning else { break }
            Thread.sleep(forTimeInterval: 0.05)
        }
        let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
        stop()
        throw OrthancError(description: "Orthanc did not start on port \(httpPort): \(text.suffix(2000))")
    }

    /// Kills Orthanc (a PACS crash) and waits for the process to exit (a restart before that finds the database
    /// locked). SIGKILL because children spawned from Swift's worker threads inherit a mask blocking SIGTERM.
    func stop() {
        guard let p = process else { return }
        process = nil
        stopChild(p, signal: SIGKILL)
    }

    /// A client for the test's own uploads and checks.
    func client() -> DICOMwebClient {
        DICOMwebClient(DICOMwebConfiguration(baseURL: URL(string: root)!, maxAttempts: 1))
    }
}

struct OrthancError: Error, CustomStringConvertible {
    let description: String
}

/// A loopback TCP port that was free a moment ago (bound to port 0, then released).
func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw OrthancError(description: "socket() failed") }
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = 0
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    let bound = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard bound == 0 else { throw OrthancError(description: "bind() failed") }
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    let named = withUnsafeMutablePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
    }
    guard named == 0 else { throw OrthancError(description: "getsockname() failed") }
    return Int(UInt16(bigEndian: addr.sin_port))
}
