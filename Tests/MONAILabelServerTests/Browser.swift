import Foundation
import HTTPClient
import TestSupport
import MONAILabel
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Headless Chromium driven over the W3C WebDriver protocol (Debian's `chromium` + `chromium-driver`, plain
/// HTTP+JSON through our own HTTPClient: no Selenium, no npm). Tests that need it skip visibly when it is absent.
final class Browser: @unchecked Sendable {
    static let chromium = "/usr/bin/chromium"
    static let driver = "/usr/bin/chromedriver"
    static var available: Bool {
        FileManager.default.isExecutableFile(atPath: chromium) && FileManager.default.isExecutableFile(atPath: driver)
    }
    static let skipReason: Comment = "needs Debian's chromium and chromium-driver (scripts/install-deps.sh)"

    private let process: Process
    private let port: Int
    private let http = HTTPClient(configuration: HTTPClientConfiguration(connectTimeout: 5, readTimeout: 120))
    private var session = ""
    private var console: [(level: String, message: String)] = []
    /// Where screenshots go (created; kept after the test for a person to look at).
    let screenshots: URL

    init(screenshots: URL, width: Int = 1280, height: Int = 900) throws {
        self.screenshots = screenshots
        try FileManager.default.createDirectory(at: screenshots, withIntermediateDirectories: true)
        port = try freePort()
        process = Process()
        process.executableURL = URL(fileURLWithPath: Self.driver)
        process.arguments = ["--port=\(port)"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(15)
        while Date() < deadline {
            if let r = try? http.get(URL(string: "http://127.0.0.1:\(port)/status")!), r.status == 200 { break }
            Thread.sleep(forTimeInterval: 0.1)
        }
        // Headless as root needs --no-sandbox; SwiftShader gives WebGL (the viewer's renderer) without a GPU.
        let caps: JSONValue = ["capabilities": ["alwaysMatch": [
            "browserName": "chrome",
            "goog:loggingPrefs": ["browser": "ALL"],
            "goog:chromeOptions": [
                "binary": .string(Self.chromium),
                "args": .array(["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=\(width),\(height)",
                                "--enable-unsafe-swiftshader", "--use-angle=swiftshader", "--ignore-gpu-blocklist"].map { .string($0) }),
            ],
        ]]]
        let created = try command("POST", "/session", caps)
        guard let id = created["sessionId"]?.stringValue else {
            quitDriver()
            throw OrthancError(description: "chromedriver did not create a session: \(created.compactString().prefix(500))")
        }
        session = id
    }

    deinit {
        _ = try? command("DELETE", "/session/\(session)", nil)
        quitDriver()
    }

    private func quitDriver() {
        stopChild(process, signal: SIGKILL)
    }

    @discardableResult
    private func command(_ method: String, _ path: String, _ body: JSONValue?) throws -> JSONValue {
        var headers = HTTPHeaders()
        headers.add("Content-Type", "application/json")
        let r = try http.send(method: method, url: URL(string: "http://127.0.0.1:\(port)\(path)")!, headers: headers,
                              body: body.map { Array($0.compactString().utf8) } ?? [])
        let json = (try? JSONValue.parse(r.body)) ?? .null
        guard r.status == 200 else { throw OrthancError(description: "WebDriver \(path): \(r.status) \(r.text.prefix(500))") }
        return json["value"] ?? .null
    }

    func open(_ url: String) throws { try command("POST", "/session/\(session)/url", ["url": .string(url)]) }

    /// Runs `script` (a function body; `return` its result) in the page.
    func run(_ script: String) throws -> JSONValue {
        try command("POST", "/session/\(session)/execute/sync", ["script": .string(script), "args": []])
    }

    /// Polls `script` until it returns something truthy (a non-empty string, true, a number other than 0).
    @discardableResult
    func wait(_ what: String, timeout: Double = 30, _ script: String) throws -> JSONValue {
        let deadline = Date().addingTimeInterval(timeout)
        var last: JSONValue = .null
        while Date() < deadline {
            last = (try? run(script)) ?? .null
            switch last {
            case .bool(true): return last
            case .string(let s) where !s.isEmpty: return last
            case .int(let i) where i != 0: return last
            case .array(let a) where !a.isEmpty: return last
            case .object: return last
            default: Thread.sleep(forTimeInterval: 0.25)
            }
        }
        throw OrthancError(description: "timed out after \(timeout) s waiting for \(what) (last: \(last.compactString().prefix(300)))")
    }

    /// A PNG screenshot of the viewport, also written to `screenshots/name.png`.
    @discardableResult
    func screenshot(_ name: String) throws -> URL {
        let value = try command("GET", "/session/\(session)/screenshot", nil)
        guard let b64 = value.stringValue, let data = Data(base64Encoded: b64) else {
            throw OrthancError(description: "screenshot was not base64 PNG")
        }
        let url = screenshots.appendingPathComponent(name + ".png")
        try data.write(to: url)
        return url
    }

    /// Browser console entries (level, message) of this session so far (the driver hands each entry out once).
    func consoleMessages() -> [(level: String, message: String)] {
        if let log = try? command("POST", "/session/\(session)/se/log", ["type": "browser"]) {
            console += (log.arrayValue ?? []).map { ($0["level"]?.stringValue ?? "?", $0["message"]?.stringValue ?? "") }
        }
        return console
    }

    /// Browser console entries at level SEVERE of this session so far.
    func severeConsoleMessages() -> [String] {
        consoleMessages().filter { $0.level == "SEVERE" }.map(\.message)
    }
}

/// Pixel statistics of a region of a PNG, computed with Pillow from .venv-client (an independent decoder).
struct PixelStats: Decodable {
    /// Distinct RGB colours in the region.
    let colors: Int
    /// Pixels whose luma is above 40 (not background black).
    let bright: Int
    /// Distinct neutral grey levels above near-black (an image slice; the viewer's UI text is coloured).
    let greyLevels: Int
    /// Clearly coloured pixels (channels differing by more than 60): a label overlay on a grey image.
    let colored: Int
    let width: Int
    let height: Int

    static var available: Bool { FileManager.default.isExecutableFile(atPath: python.path) }
    static let python = repoRoot.appendingPathComponent(".venv-client/bin/python")

    /// Pixels of `box` (left, top, right, bottom) whose colour differs by more than 24 in some channel between two
    /// screenshots: what a drawing over an image changed.
    static func changed(_ a: URL, _ b: URL, box: (Int, Int, Int, Int)) throws -> Int {
        let script = """
            import sys
            from PIL import Image, ImageChops
            box = tuple(int(v) for v in sys.argv[3:7])
            a, b = (Image.open(p).convert("RGB").crop(box) for p in sys.argv[1:3])
            print(sum(1 for px in ImageChops.difference(a, b).getdata() if max(px) > 24))
            """
        let out = try run(script, [a.path, b.path, "\(box.0)", "\(box.1)", "\(box.2)", "\(box.3)"])
        guard let n = Int(String(decoding: out, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw OrthancError(description: "pixel difference: unexpected output \(String(decoding: out, as: UTF8.self).prefix(200))")
        }
        return n
    }

    /// `box` is (left, top, right, bottom) in pixels; nil for the whole image.
    static func of(_ png: URL, box: (Int, Int, Int, Int)? = nil) throws -> PixelStats {
        let crop = box.map { "im = im.crop((\($0.0), \($0.1), \($0.2), \($0.3)))" } ?? ""
        let script = """
            import json, sys
            from PIL import Image
            im = Image.open(sys.argv[1]).convert("RGB")
            \(crop)
            px = list(im.getdata())
            bright = sum(1 for r, g, b in px if 0.299 * r + 0.587 * g + 0.114 * b > 40)
            greys = {r for r, g, b in px if max(r, g, b) - min(r, g, b) <= 2 and r > 20}
            colored = sum(1 for r, g, b in px if max(r, g, b) - min(r, g, b) > 60)
            print(json.dumps({"colors": len(set(px)), "bright": bright, "greyLevels": len(greys), "colored": colored,
                              "width": im.width, "height": im.height}))
            """
        return try JSONDecoder().decode(PixelStats.self, from: try run(script, [png.path]))
    }

    /// Runs a Python `script` with `arguments` in .venv-client; its standard output.
    private static func run(_ script: String, _ arguments: [String]) throws -> Data {
        let p = Process()
        p.executableURL = python
        p.arguments = ["-W", "ignore::DeprecationWarning", "-c", script] + arguments
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return data
    }
}
