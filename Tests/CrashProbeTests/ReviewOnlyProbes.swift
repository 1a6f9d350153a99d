import Foundation
import Testing
import TestSupport

/// Review-only mode (`--conf models none`): the real binary serves the datastore, sessions, labels and active
/// learning with no model, and never maps libtorch or our backend into its process.
extension CrashProbes {
    @Suite struct ReviewOnlyProbes {
        /// The libtorch objects mapped into a live process, from `/proc/<pid>/maps`.
        static func torchMappings(_ pid: Int32) throws -> [String] {
            // Read to the end: /proc files report a size of 0, which whole-file readers trust.
            guard let handle = FileHandle(forReadingAtPath: "/proc/\(pid)/maps") else { throw ProbeError("no process \(pid)") }
            defer { try? handle.close() }
            let maps = String(decoding: handle.readDataToEndOfFile(), as: UTF8.self)
            guard !maps.isEmpty else { throw ProbeError("/proc/\(pid)/maps is empty") }
            return Set(maps.split(separator: "\n").compactMap { line -> String? in
                guard let path = line.split(separator: " ", omittingEmptySubsequences: true).last,
                      path.contains("libtorch") || path.contains("libmonailabel_torch") || path.contains("libc10")
                else { return nil }
                return String(path)
            }).sorted()
        }

        @Test func modelsNone_servesStoreSessionsLabelsAndActiveLearning_withoutMappingLibtorch() throws {
            let server = try ProbeServer(models: "none")
            defer { server.stop() }
            let info = try server.curl("GET", "/info/")
            #expect(info.status == 200, "\(info.body.prefix(300))")
            let json = try JSONSerialization.jsonObject(with: Data(info.body.utf8)) as? [String: Any]
            #expect((json?["models"] as? [String: Any])?.isEmpty == true, "\(info.body.prefix(300))")
            #expect(Set(((json?["strategies"] as? [String: Any]) ?? [:]).keys) == ["random", "first", "last"])

            #expect(try server.curl("GET", "/datastore/?output=all").status == 200)
            let next = try server.curl("POST", "/activelearning/first", ["-H", "Content-Type: application/json", "-d", "{}"])
            #expect(next.status == 200 && next.body.contains("\"id\""), "\(next.status) \(next.body.prefix(300))")
            let image = server.studies.appendingPathComponent("spleen_00.nii.gz").path
            let label = server.studies.appendingPathComponent("labels/final/spleen_00.nii.gz").path
            let saved = try server.curl("PUT", "/datastore/label?image=spleen_02&tag=reviewed", ["-F", "label=@\(label)"])
            #expect(saved.status == 200, "\(saved.status) \(saved.body.prefix(300))")
            #expect(try server.curl("GET", "/datastore/label?label=spleen_02&tag=reviewed").status == 200)
            let session = try server.curl("PUT", "/session/", ["-F", "files=@\(image)"])
            #expect(session.status == 200 && session.body.contains("session_id"), "\(session.status) \(session.body.prefix(300))")
            // No model: an inference is the client's mistake, not a crash.
            #expect(try server.curl("POST", "/infer/segmentation_spleen?image=spleen_00", ["-F", "params={}"]).status == 404)

            #expect(server.isRunning)
            #expect(try Self.torchMappings(server.pid) == [], "\(server.log)")
        }

        /// The control: the same check sees the backend in a server with a model, so an empty list above means
        /// something.
        @Test func withAModel_theServerMapsTheBackend() throws {
            let server = try ProbeServer(models: "segmentation_spleen")
            defer { server.stop() }
            #expect(try server.curl("GET", "/info/").status == 200)
            let mapped = try Self.torchMappings(server.pid)
            #expect(mapped.contains { $0.hasSuffix("libmonailabel_torch.so") }, "\(mapped)")
        }
    }
}
