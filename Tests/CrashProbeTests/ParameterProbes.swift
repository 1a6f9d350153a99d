import Foundation
import Testing

/// Hostile parameters that once ended the daemon (issue 14): each must be a clear 4xx naming the parameter, and
/// the server must serve a normal inference afterwards.
@Suite(.serialized) struct ParameterProbes {
    @Test func logsRefresh_overflowingValue_isRefusedAndServerLives() throws {
        let s = try ProbeServer()
        let r = try s.curl("GET", "/logs/?refresh=9223372036854775807")
        #expect(r.status == 422, "\(r.status) \(r.body.prefix(200))")
        #expect(detail(r.body).contains("refresh"))
        try s.expectAlive("refresh overflow")
    }
}
