import Foundation
import Testing
import TestSupport

extension CrashProbes {
    /// Hostile inputs against the datastore, sessions and temp files (issue 14): each is a clear 4xx or harmless,
    /// the server serves a normal inference afterwards, and what could poison the store survives a restart.
    @Suite struct StoreProbes {
        /// A private sessions folder (never the user's `~/.cache/monailabel/sessions`).
        private static func server(_ tmp: TempDir, environment: [String: String] = [:]) throws -> ProbeServer {
            try ProbeServer(environment: ["MONAI_LABEL_SESSION_PATH": tmp.url.appendingPathComponent("sessions").path]
                .merging(environment) { $1 })
        }

        private static func isDirectory(_ path: String) -> Bool {
            var dir: ObjCBool = false
            return FileManager.default.fileExists(atPath: path, isDirectory: &dir) && dir.boolValue
        }

        private static func nestedJSON(_ depth: Int) -> String {
            String(repeating: #"{"a":"#, count: depth) + "1" + String(repeating: "}", count: depth)
        }

        @Test func deepParams_areRefused_andTheStoreStillLoadsAfterRestart() throws {
            let tmp = TempDir()
            let s = try Self.server(tmp)
            let params = tmp.write("params.json", Array(Self.nestedJSON(510).utf8))
            let image = s.studies.appendingPathComponent("spleen_00.nii.gz").path
            let r = try s.curl("PUT", "/datastore/image?image=deep",
                               ["-F", "params=<\(params.path)", "-F", "file=@\(image);filename=deep.nii.gz"])
            #expect(r.status == 422, "\(r.status) \(r.body.prefix(300))")
            #expect(detail(r.body).contains("params"))
            let info = try s.curl("PUT", "/datastore/image/info?image=spleen_00", ["-F", "info=<\(params.path)"])
            #expect(info.status == 422, "\(info.status) \(info.body.prefix(300))")
            try s.expectAlive("deep params")
            try s.restart()
            try s.expectAlive("restart after deep params")
        }

        @Test(arguments: [
            ("garbage", Array("{\"objects\": {\"spleen_00\": ".utf8)),
            ("nested past the reader's limit",
             Array((#"{"objects":{"spleen_00":{"image":{"ext":".nii.gz","info":"# + String(repeating: "[", count: 600)
                 + String(repeating: "]", count: 600) + "}}}}").utf8)),
        ])
        func corruptDatastoreJSON_inTheStudiesFolder_isSetAsideAtRestart(_ what: String, _ document: [UInt8]) throws {
            let tmp = TempDir()
            let s = try Self.server(tmp)
            s.stop()
            try Data(document).write(to: s.studies.appendingPathComponent("datastore_v2.json"))
            try s.start()
            try s.expectAlive("restart with a \(what) datastore_v2.json")
            let kept = FileManager.default.subpaths(atPath: s.studies.path)?.filter { $0.hasPrefix("datastore_v2.json.corrupt-") }
            #expect(kept?.count == 1, "the bad file is kept aside")
            let stats = try s.curl("GET", "/datastore/")
            #expect(stats.body.contains(#""total":3"#), "rebuilt from the files: \(stats.body)")
            #expect(s.log.contains("datastore_v2.json could not be loaded"), "logged")
        }

        @Test func truncatedUploads_areRefusedAtUpload() throws {
            let tmp = TempDir()
            let s = try Self.server(tmp)
            let whole = try Data(contentsOf: s.studies.appendingPathComponent("spleen_00.nii.gz"))
            let cut = tmp.url.appendingPathComponent("cut.nii.gz")
            try whole.prefix(whole.count / 2).write(to: cut)
            let image = try s.curl("PUT", "/datastore/image?image=cut", ["-F", "file=@\(cut.path);filename=cut.nii.gz"])
            #expect(image.status == 422, "\(image.status) \(image.body.prefix(300))")
            #expect(!detail(image.body).contains(tmp.url.path) && !detail(image.body).contains("/tmp/"))
            let label = try s.curl("PUT", "/datastore/label?image=spleen_02&tag=final",
                                   ["-F", "label=@\(cut.path);filename=spleen_02.nii.gz"])
            #expect(label.status == 422, "\(label.status) \(label.body.prefix(300))")
            let stats = try s.curl("GET", "/datastore/")
            #expect(stats.body.contains(#""total":3"#) && stats.body.contains(#""completed":2"#), "\(stats.body)")
            try s.expectAlive("truncated uploads")
        }

        @Test func sessionArchiveExpandingTo2GB_isRefusedWithoutWritingIt() throws {
            let tmp = TempDir()
            let s = try Self.server(tmp)
            // One tar member of 2.1 GB of zeros, gzipped: about 2 MB on the wire.
            let archive = tmp.url.appendingPathComponent("bomb.tar.gz")
            let script = """
                import tarfile, sys
                n = 2_100_000_000
                t = tarfile.TarInfo("zeros.bin"); t.size = n
                sys.stdout.buffer.write(t.tobuf(format=tarfile.GNU_FORMAT))
                sys.stdout.buffer.write(str(n + (-n % 512) + 1024).encode())
                """
            let (status, out) = try runProcess(URL(fileURLWithPath: "/bin/sh"), ["-c", """
                python3 -c '\(script)' > \(tmp.url.path)/head && \
                size=$(tail -c +513 \(tmp.url.path)/head) && \
                { head -c 512 \(tmp.url.path)/head; head -c "$size" /dev/zero; } | gzip -9 > \(archive.path)
                """])
            try #require(status == 0, "making the archive: \(out)")
            #expect(((try? FileManager.default.attributesOfItem(atPath: archive.path)[.size] as? NSNumber)?.intValue ?? 0) < 4 << 20)
            let r = try s.curl("PUT", "/session/?uncompress=true", ["-F", "files=@\(archive.path);filename=bomb.tar.gz"],
                               timeout: 300)
            #expect(r.status == 422 || r.status == 413, "\(r.status) \(r.body.prefix(300))")
            #expect(detail(r.body).contains("MONAI_LABEL_SESSION_MAX_BYTES"), "\(r.body.prefix(300))")
            let sessions = tmp.url.appendingPathComponent("sessions")
            #expect(((try? FileManager.default.contentsOfDirectory(atPath: sessions.path)) ?? []).isEmpty, "the partial extraction is removed")
            let meta = tmp.write("meta.info", [1])
            let m = try s.curl("PUT", "/session/", ["-F", "files=@\(meta.path);filename=meta.info"])
            #expect(m.status == 422, "\(m.status) \(m.body.prefix(300))")
            try s.expectAlive("session bomb")
        }

        @Test func imageIdOf255Characters_isA422WithoutServerPaths() throws {
            let tmp = TempDir()
            let s = try Self.server(tmp)
            let image = s.studies.appendingPathComponent("spleen_00.nii.gz").path
            let id = String(repeating: "a", count: 255)
            let r = try s.curl("PUT", "/datastore/image?image=\(id)", ["-F", "file=@\(image);filename=x.nii.gz"])
            #expect(r.status == 422, "\(r.status) \(r.body.prefix(300))")
            #expect(!r.body.contains(s.studies.path) && !r.body.contains(s.dir.url.path), "\(r.body)")
            try s.expectAlive("255-character id")
        }

        @Test func symlinkPlantedToAFileOutside_isNeitherListedNorServed() throws {
            let tmp = TempDir()
            let s = try Self.server(tmp)
            let secret = tmp.write("secret.nii.gz", Array("TOP-SECRET-BYTES".utf8))
            try FileManager.default.createSymbolicLink(atPath: s.studies.appendingPathComponent("evil.nii.gz").path,
                                                       withDestinationPath: secret.path)
            let label = s.studies.appendingPathComponent("labels/final/spleen_01.nii.gz")
            try FileManager.default.removeItem(at: label)
            try FileManager.default.createSymbolicLink(atPath: label.path, withDestinationPath: secret.path)
            usleep(500_000)  // auto-reload sees the new entries
            for path in ["/datastore/image?image=evil", "/datastore/label?label=spleen_01&tag=final"] {
                let r = try s.curl("GET", path)
                #expect(r.status == 404, "\(path): \(r.status)")
                #expect(!r.body.contains("TOP-SECRET"))
            }
            #expect(!(try s.curl("GET", "/datastore/?output=all").body.contains("evil")))
            let zip = try s.curl("GET", "/datastore/dataset")
            #expect(zip.status == 200 && !zip.body.contains("TOP-SECRET"))
            try s.restart()
            #expect(!(try s.curl("GET", "/datastore/?output=all").body.contains("evil")))
            try s.expectAlive("planted symlink")
        }

        @Test func sigkilledServersTempFolder_isSweptAtTheNextStart_liveOnesAreKept() throws {
            let tmp = TempDir()
            let temp = tmp.url.appendingPathComponent("tmpdir")
            try FileManager.default.createDirectory(at: temp, withIntermediateDirectories: true)
            let mine = temp.appendingPathComponent("monailabel-\(getpid())")
            _ = tmp.write("tmpdir/monailabel-\(getpid())/keep.body", [1])
            let s = try Self.server(tmp, environment: ["TMPDIR": temp.path])
            let killed = temp.appendingPathComponent("monailabel-\(s.pid)")
            #expect(Self.isDirectory(killed.path), "the server's private temp folder")
            // A large upload spools to that folder; SIGKILL leaves it (and anything in it) behind.
            _ = tmp.write("tmpdir/monailabel-\(s.pid)/http-abcdefghijklmnop.body", [UInt8](repeating: 1, count: 1 << 20))
            kill(s.pid, SIGKILL)
            try s.restart()
            #expect(!FileManager.default.fileExists(atPath: killed.path), "swept at start-up")
            #expect(FileManager.default.fileExists(atPath: mine.appendingPathComponent("keep.body").path), "a live process's folder stays")
            #expect(Self.isDirectory(temp.appendingPathComponent("monailabel-\(s.pid)").path))
            try s.expectAlive("restart after SIGKILL")
        }
    }
}
