import Foundation
import HTTPServer
import MONAILabel

/// `GET /logs/` and `GET /logs/gpu` (spec section 1.11).
enum LogsRoutes {
    static func register(_ r: inout HTTPRouter, _ ctx: RouteContext) {
        r.get("/logs/", route { req in
            let lines = try req.intQuery("lines") ?? 300
            let html = try req.boolQuery("html", default: true)
            let text = try req.boolQuery("text", default: false)
            let refresh = try req.intQuery("refresh") ?? 0
            // Seconds between reloads of the viewer; the page multiplies it by 1000, so it must stay small.
            guard (0...86_400).contains(refresh) else {
                throw MONAILabelError.invalid("refresh must be from 0 to 86400 seconds, got \(refresh)")
            }
            let file = ctx.app.logFile
            guard FileOps.isRegularFile(file.path) else {
                throw MONAILabelError.notFound("Log File \(file.path) NOT Found")
            }
            if lines <= 0 { return .file(file.path, contentType: "text/plain; charset=utf-8") }
            if html && !text { return .bytes(Array(viewer(refresh: refresh).utf8), contentType: "text/html; charset=utf-8") }
            return .text(try tail(file, lines: lines))
        })

        r.get("/logs/gpu", route { _ in
            .text(try NvidiaSMI.report(searchPath: ctx.app.settings.executableSearchPath))
        })
    }

    /// The last `lines` lines of a file, reading backwards so a 100 MB log costs one block per few lines.
    static func tail(_ url: URL, lines: Int) throws -> String {
        guard let h = FileHandle(forReadingAtPath: url.path) else { throw MONAILabelError.io("cannot read \(url.path)") }
        defer { try? h.close() }
        let size = (try? h.seekToEnd()) ?? 0
        var pos = size
        var chunk = Data()
        var newlines = 0
        while pos > 0 && newlines <= lines {
            let n = min(UInt64(64 * 1024), pos)
            pos -= n
            try h.seek(toOffset: pos)
            let d = h.readData(ofLength: Int(n))
            newlines += d.reduce(0) { $0 + ($1 == 0x0A ? 1 : 0) }
            chunk = d + chunk
        }
        var all = String(decoding: chunk, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
        if all.last == "" { all.removeLast() }
        return all.suffix(lines).joined(separator: "\n") + "\n"
    }

    /// A self-contained viewer (no CDN scripts: servers often sit on networks without internet access).
    static func viewer(refresh: Int) -> String {
        let every = refresh > 0 ? max(refresh, 3) : 0
        return """
            <html>
            <head><title>MONAI Label logs</title>
            <style>body{margin:0;font-family:monospace}pre{margin:0;padding:8px;white-space:pre-wrap}</style>
            <script>
            function load() {
              fetch("?text=true").then(r => r.text()).then(t => {
                const e = document.getElementById("log"); e.textContent = t; window.scrollTo(0, document.body.scrollHeight);
              });
            }
            window.onload = function () { load(); \(every > 0 ? "setInterval(load, \(every * 1000));" : "") };
            </script>
            </head>
            <body><pre id="log"></pre></body>
            </html>

            """
    }
}
