import Foundation
import HTTPServer

/// `GET /ohif/{path}`: the OHIF viewer build (upstream ships it inside its wheel; `scripts/install-ohif.sh` copies
/// it to `Settings.defaultOHIFDirectory` or `MONAI_LABEL_OHIF_DIR`). The folder is looked up per request, so
/// installing the viewer needs no restart.
///
/// No cross-origin isolation headers are sent: the bundle's `app-config.js` sets `useSharedArrayBuffer: 'FALSE'`
/// and upstream serves it without them (its `serve.json` asks for COEP/COOP only for the multi-threaded decoders).
enum OHIFRoutes {
    static func register(_ r: inout HTTPRouter, directory: String) {
        // The app's own URLs all start with `/ohif/` (its router basename), so `/ohif` must gain the slash.
        r.get("/ohif", { _ in .redirect(to: "/ohif/") })
        r.get("/ohif/{path:path}", { req in
            guard let files = try? WebAppFiles(root: directory) else { return notInstalled() }
            return try files.response(for: req.pathParameters["path"] ?? "", requestHeaders: req.headers)
        })
    }

    /// The 404 page when the viewer is not installed: what to run, without the server's folders.
    static func notInstalled() -> HTTPResponse {
        let html = """
            <!doctype html><html lang="en"><head><meta charset="utf-8"><title>OHIF is not installed</title>
            <style>body{font:16px/1.5 system-ui,sans-serif;max-width:44em;margin:3em auto;padding:0 1em}
            code{background:#eee;padding:.1em .3em}</style></head><body>
            <h1>OHIF is not installed</h1>
            <p>This MONAI Label server serves the OHIF viewer from a folder that does not exist yet.
            Install the build that ships with MONAI Label 0.8.5 with</p>
            <pre><code>scripts/install-ohif.sh</code></pre>
            <p>(it copies <code>monailabel/endpoints/static/ohif</code> from the <code>monailabel==0.8.5</code> wheel to
            <code>~/.local/share/monailabel/ohif</code>), or point <code>MONAI_LABEL_OHIF_DIR</code> at an OHIF build
            and restart the server. The REST API is unaffected: see <a href="/">the start page</a> and
            <a href="/info/">/info/</a>.</p></body></html>
            """
        var r = HTTPResponse.bytes(Array(html.utf8), contentType: "text/html; charset=utf-8", status: .notFound)
        r.headers.add("Cache-Control", "no-cache")
        return r
    }
}
