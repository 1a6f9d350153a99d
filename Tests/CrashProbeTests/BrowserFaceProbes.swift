import Foundation
import Testing

extension CrashProbes {
    /// Hostile requests to the browser-facing routes (issue 17: the slice preview, OHIF files, the DICOMweb proxy)
    /// against the real binary: each is a clear 4xx and the server serves a normal inference afterwards.
    @Suite struct BrowserFaceProbes {
        @Test func preview_hostileParameters_are422NamingThem_andServerLives() throws {
            let s = try ProbeServer()
            for (query, name) in [("index=9223372036854775807", "index"), ("index=-9223372036854775808", "index"),
                                  ("size=9223372036854775807", "size"), ("window=1e308&level=0", "window"),
                                  ("window=-0&level=0", "window"), ("level=nan&window=10", "level"),
                                  ("plane=%00", "plane")] {
                let r = try s.curl("GET", "/datastore/image/preview?image=spleen_00&\(query)")
                #expect(r.status == 422, "\(query): \(r.status) \(r.body.prefix(200))")
                #expect(detail(r.body).contains(name), "\(query): \(r.body.prefix(200))")
            }
            let fine = try s.curl("GET", "/datastore/image/preview?image=spleen_00&plane=sagittal&label=final&size=1024")
            #expect(fine.status == 200, "\(fine.body.prefix(200))")
            try s.expectAlive("preview parameters")
        }

        @Test func ohifAndProxy_hostilePaths_are4xx_andServerLives() throws {
            let s = try ProbeServer()
            for path in ["/ohif/..%2F..%2Fetc%2Fpasswd", "/ohif/%00", "/ohif/" + String(repeating: "a/", count: 2000),
                         "/proxy/dicom/wado/..%2F..%2Ftools", "/proxy/dicom/qido/studies?" + String(repeating: "x=1&", count: 500)] {
                let r = try s.curl("GET", path)
                #expect((400..<500).contains(r.status), "\(path.prefix(60)): \(r.status) \(r.body.prefix(200))")
            }
            try s.expectAlive("OHIF and proxy paths")
        }
    }
}
