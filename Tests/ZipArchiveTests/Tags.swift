import Testing

// The three test tiers (README, Development): `scripts/test-tier.sh unit` runs one (a swift-testing with tag
// filters also takes `swift test --filter tag:unit` / `--skip tag:live`). Suites carry the tag; their tests
// inherit it.
extension Tag {
    /// Pure tests: no server, no socket to a peer process.
    @Tag static var unit: Self
    /// Through the in-process router (`TestClient`) with a fresh temporary app and datastore.
    @Tag static var router: Self
    /// A real server or tool on 127.0.0.1: the HTTP server over sockets, the `monailabel` binary, the Python
    /// client, Orthanc, a browser.
    @Tag static var live: Self
}
