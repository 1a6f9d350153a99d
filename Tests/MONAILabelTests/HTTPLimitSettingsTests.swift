import Foundation
import Testing
@testable import MONAILabel

/// The `MONAI_LABEL_*` settings that bound what one client can make the HTTP server hold (issue 14 part 4).
@Suite(.tags(.unit))
struct HTTPLimitSettingsTests {
    private func settings(_ environment: [String: String]) throws -> Settings {
        try Settings.fromEnvironment(appDir: URL(fileURLWithPath: "/tmp/app"), studies: "/tmp/studies", conf: [:],
                                     environment: environment)
    }

    @Test func httpLimits_haveDefaults_andAreReadFromTheEnvironment() throws {
        let d = try settings([:])
        #expect(d.jsonMaxBytes == 8 << 20 && d.formFieldsMaxBytes == 8 << 20)
        #expect(d.minBodyRate == 256 && d.maxConnectionsPerPeer == 1024)
        let s = try settings(["MONAI_LABEL_JSON_MAX_BYTES": "1000", "MONAI_LABEL_FORM_FIELDS_MAX_BYTES": "2000",
                              "MONAI_LABEL_MIN_BODY_RATE": "0", "MONAI_LABEL_MAX_CONNECTIONS_PER_PEER": "16"])
        #expect(s.jsonMaxBytes == 1000 && s.formFieldsMaxBytes == 2000)
        #expect(s.minBodyRate == 0 && s.maxConnectionsPerPeer == 16)
    }

    @Test func httpLimits_outOfRange_areRefusedNamingTheVariable() throws {
        for (key, value) in [("JSON_MAX_BYTES", "0"), ("FORM_FIELDS_MAX_BYTES", "-1"), ("MAX_CONNECTIONS_PER_PEER", "0"),
                             ("MIN_BODY_RATE", "-5"), ("JSON_MAX_BYTES", "lots")] {
            do {
                _ = try settings(["MONAI_LABEL_" + key: value])
                Issue.record("MONAI_LABEL_\(key)=\(value) was accepted")
            } catch {
                #expect("\(error)".contains("MONAI_LABEL_" + key), "\(error)")
            }
        }
    }
}
