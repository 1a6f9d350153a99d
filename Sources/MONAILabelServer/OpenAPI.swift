import Foundation
import HTTPServer
import MONAILabel

/// `GET /openapi.json` (OpenAPI 3.0 of the routes this server registers) and `GET /docs` (a readable page of it,
/// self-contained: no CDN). `OpenAPITests` compares `operations` with the router's routes, so a route added
/// without its description (or a description left for a removed route) fails the build's tests.
enum OpenAPI {
    struct Param {
        let name: String
        let type: String
        let required: Bool
        let about: String
        init(_ name: String, _ type: String = "string", required: Bool = false, _ about: String = "") {
            (self.name, self.type, self.required, self.about) = (name, type, required, about)
        }
    }

    enum Body {
        case json(String)
        case multipart([(name: String, file: Bool)])
        case raw(String)
    }

    struct Operation {
        let method: String
        /// The router template (`{path:path}` for a rest-of-path parameter).
        let template: String
        let tag: String
        let summary: String
        var query: [Param] = []
        var body: Body?
        /// The success answer's media type.
        var produces = "application/json"
    }

    static let jobQuery = [Param("check_if_running", "boolean", "Only say whether a job runs"),
                           Param("all", "boolean", "Every job, not only the last")]

    /// Every route `makeRouter` registers.
    static let operations: [Operation] = [
        Operation(method: "GET", template: "/", tag: "Others", summary: "Dashboard: models, datastore, jobs, training curve, log, image browser", produces: "text/html"),
        Operation(method: "GET", template: "/docs", tag: "Others", summary: "This API description as a page", produces: "text/html"),
        Operation(method: "GET", template: "/openapi.json", tag: "Others", summary: "This API description (OpenAPI 3.0)"),
        Operation(method: "GET", template: "/info/", tag: "AppService", summary: "App info: models, trainers, strategies, scoring, datastore stats"),
        Operation(method: "POST", template: "/activelearning/{strategy}", tag: "ActiveLearning",
                  summary: "Next image to label by a strategy", body: .json("Strategy parameters, e.g. {\"client_id\": \"user\"}")),
        Operation(method: "GET", template: "/infer/", tag: "Infer", summary: "Inference queue: running and waiting requests per model"),
        Operation(method: "POST", template: "/infer/{model}", tag: "Infer", summary: "Run inference on a datastore image, session or upload",
                  query: [Param("image", "string", "Image id (or session via session_id)"), Param("session_id"),
                          Param("output", "string", "image, json, all or dicom_seg")],
                  body: .multipart([("params", false), ("file", true), ("label", true)]), produces: "application/octet-stream"),
        Operation(method: "GET", template: "/batch/infer", tag: "Infer", summary: "Batch inference status", query: jobQuery),
        Operation(method: "POST", template: "/batch/infer/{model}", tag: "Infer", summary: "Start batch inference",
                  query: [Param("images", "string", "all, labeled or unlabeled"), Param("run_sync", "boolean")], body: .json("Inference parameters")),
        Operation(method: "DELETE", template: "/batch/infer", tag: "Infer", summary: "Stop batch inference"),
        Operation(method: "GET", template: "/datastore/", tag: "Datastore", summary: "Datastore listing",
                  query: [Param("output", "string", "stats, all or train")]),
        Operation(method: "PUT", template: "/datastore/", tag: "Datastore", summary: "Add an image (alias of PUT /datastore/image)",
                  query: [Param("image")], body: .multipart([("file", true), ("params", false)])),
        Operation(method: "DELETE", template: "/datastore/", tag: "Datastore", summary: "Remove an image (alias)", query: [Param("id", required: true)]),
        Operation(method: "GET", template: "/datastore/image", tag: "Datastore", summary: "Download an image",
                  query: [Param("image", required: true), Param("check_sum")], produces: "application/octet-stream"),
        Operation(method: "HEAD", template: "/datastore/image", tag: "Datastore", summary: "Whether an image exists (headers only)",
                  query: [Param("image", required: true), Param("check_sum")]),
        Operation(method: "PUT", template: "/datastore/image", tag: "Datastore", summary: "Add an image",
                  query: [Param("image")], body: .multipart([("file", true), ("params", false)])),
        Operation(method: "DELETE", template: "/datastore/image", tag: "Datastore", summary: "Remove an image and its labels",
                  query: [Param("id", required: true)]),
        Operation(method: "GET", template: "/datastore/image/info", tag: "Datastore", summary: "Image info", query: [Param("image", required: true)]),
        Operation(method: "GET", template: "/datastore/image/preview", tag: "Datastore", summary: "A slice as PNG, windowed, label drawn over it",
                  query: [Param("image", required: true), Param("plane", "string", "axial, coronal or sagittal"),
                          Param("index", "integer", "Slice (default: the middle one)"),
                          Param("preset", "string", "auto, ct-soft-tissue, ct-lung, ct-bone or ct-brain"),
                          Param("window", "number"), Param("level", "number"), Param("size", "integer", "Longest side, 16...1024"),
                          Param("label", "string", "Label tag to draw, e.g. final")], produces: "image/png"),
        Operation(method: "PUT", template: "/datastore/image/info", tag: "Datastore", summary: "Update image info",
                  query: [Param("image", required: true)], body: .json("Info to merge")),
        Operation(method: "GET", template: "/datastore/label", tag: "Datastore", summary: "Download a label",
                  query: [Param("label", required: true), Param("tag", required: true), Param("check_sum")], produces: "application/octet-stream"),
        Operation(method: "HEAD", template: "/datastore/label", tag: "Datastore", summary: "Whether a label exists (headers only)",
                  query: [Param("image", required: true), Param("tag", required: true)]),
        Operation(method: "PUT", template: "/datastore/label", tag: "Datastore", summary: "Save a label for an image",
                  query: [Param("image", required: true), Param("tag")], body: .multipart([("label", true), ("params", false)])),
        Operation(method: "DELETE", template: "/datastore/label", tag: "Datastore", summary: "Remove a label",
                  query: [Param("id", required: true), Param("tag", required: true)]),
        Operation(method: "GET", template: "/datastore/label/info", tag: "Datastore", summary: "Label info",
                  query: [Param("label", required: true), Param("tag", required: true)]),
        Operation(method: "PUT", template: "/datastore/label/info", tag: "Datastore", summary: "Update label info",
                  query: [Param("label", required: true), Param("tag", required: true)], body: .json("Info to merge")),
        Operation(method: "PUT", template: "/datastore/updatelabelinfo", tag: "Datastore", summary: "Update label info (upstream's older name)",
                  query: [Param("label", required: true), Param("tag", required: true)], body: .json("Info to merge")),
        Operation(method: "GET", template: "/datastore/dataset", tag: "Datastore", summary: "The labelled dataset as a zip",
                  query: [Param("limit_cases", "integer")], produces: "application/zip"),
        Operation(method: "GET", template: "/model/{model}", tag: "Model", summary: "Download a model's weights", produces: "application/octet-stream"),
        Operation(method: "GET", template: "/model/info/{model}", tag: "Model", summary: "Checksum and time of a model's weights"),
        Operation(method: "PUT", template: "/model/{model}", tag: "Model", summary: "Upload weights for a model", body: .multipart([("file", true)])),
        Operation(method: "DELETE", template: "/model/{model}", tag: "Model", summary: "Remove a model's trained weights"),
        Operation(method: "GET", template: "/train/", tag: "Train", summary: "Training status", query: jobQuery),
        Operation(method: "POST", template: "/train/", tag: "Train", summary: "Train every trainer", body: .json("Training parameters")),
        Operation(method: "POST", template: "/train/{model}", tag: "Train", summary: "Train one model",
                  query: [Param("run_sync", "boolean"), Param("enqueue", "boolean")], body: .json("Training parameters")),
        Operation(method: "DELETE", template: "/train/", tag: "Train", summary: "Stop training"),
        Operation(method: "GET", template: "/scoring/", tag: "Scoring", summary: "Scoring status", query: jobQuery),
        Operation(method: "POST", template: "/scoring/", tag: "Scoring", summary: "Run every scoring method", body: .json("Scoring parameters")),
        Operation(method: "POST", template: "/scoring/{method}", tag: "Scoring", summary: "Run one scoring method",
                  query: [Param("run_sync", "boolean")], body: .json("Scoring parameters")),
        Operation(method: "DELETE", template: "/scoring/", tag: "Scoring", summary: "Stop scoring"),
        Operation(method: "PUT", template: "/session/", tag: "Session", summary: "Create a session from uploads",
                  query: [Param("uncompress", "boolean"), Param("expiry", "integer")], body: .multipart([("files", true), ("params", false)])),
        Operation(method: "GET", template: "/session/{session_id}", tag: "Session", summary: "Session info or image",
                  query: [Param("update_ts", "boolean"), Param("image", "boolean")]),
        Operation(method: "DELETE", template: "/session/{session_id}", tag: "Session", summary: "Remove a session"),
        Operation(method: "GET", template: "/logs/", tag: "Logs", summary: "Log tail",
                  query: [Param("lines", "integer"), Param("html", "boolean"), Param("text", "boolean"), Param("refresh", "integer")],
                  produces: "text/html"),
        Operation(method: "GET", template: "/logs/gpu", tag: "Logs", summary: "GPU info"),
        Operation(method: "GET", template: "/ohif", tag: "Viewer", summary: "Redirects to /ohif/", produces: "text/html"),
        Operation(method: "GET", template: "/ohif/{path:path}", tag: "Viewer", summary: "The OHIF viewer (MONAI_LABEL_OHIF_DIR)",
                  produces: "text/html"),
    ] + ["qido", "wado", "stow"].flatMap { service in
        ["GET", "POST"].map { method in
            Operation(method: method, template: "/proxy/dicom/\(service)/{path:path}", tag: "Viewer",
                      summary: "\(service.uppercased()) relayed to the DICOMweb datastore's server",
                      body: method == "POST" ? .raw("multipart/related") : nil, produces: "application/dicom+json")
        }
    }

    /// `{path:path}` -> `{path}`.
    static func openAPIPath(_ template: String) -> String {
        template.split(separator: "/", omittingEmptySubsequences: false).map { s -> String in
            s.hasPrefix("{") && s.hasSuffix(":path}") ? String(s.dropLast(6)) + "}" : String(s)
        }.joined(separator: "/")
    }

    static func pathParameters(_ template: String) -> [String] {
        template.split(separator: "/").compactMap { s in
            guard s.hasPrefix("{"), s.hasSuffix("}") else { return nil }
            return String(s.dropFirst().dropLast().split(separator: ":").first ?? "")
        }
    }

    /// The OpenAPI 3.0 document.
    static func document(title: String, version: String) -> JSONValue {
        var paths = JSONObject()
        for op in operations {
            let key = openAPIPath(op.template)
            var item = paths[key]?.objectValue ?? JSONObject()
            var o = JSONObject()
            o["tags"] = .array([.string(op.tag)])
            o["summary"] = .string(op.summary)
            o["operationId"] = .string(op.method.lowercased() + key.replacingOccurrences(of: "/", with: "_")
                .replacingOccurrences(of: "{", with: "").replacingOccurrences(of: "}", with: ""))
            var params: [JSONValue] = pathParameters(op.template).map { name in
                .object(["name": .string(name), "in": .string("path"), "required": .bool(true),
                         "schema": .object(["type": .string("string")])])
            }
            for q in op.query {
                var p: JSONObject = ["name": .string(q.name), "in": .string("query"), "required": .bool(q.required),
                                     "schema": .object(["type": .string(q.type)])]
                if !q.about.isEmpty { p["description"] = .string(q.about) }
                params.append(.object(p))
            }
            if !params.isEmpty { o["parameters"] = .array(params) }
            switch op.body {
            case .json(let about):
                o["requestBody"] = .object(["description": .string(about), "content": .object([
                    "application/json": .object(["schema": .object(["type": .string("object")])])])])
            case .multipart(let fields):
                var props = JSONObject()
                for f in fields {
                    props[f.name] = .object(f.file ? ["type": .string("string"), "format": .string("binary")] : ["type": .string("string")])
                }
                o["requestBody"] = .object(["content": .object([
                    "multipart/form-data": .object(["schema": .object(["type": .string("object"), "properties": .object(props)])])])])
            case .raw(let type):
                o["requestBody"] = .object(["content": .object([type: .object(["schema": .object(["type": .string("string"), "format": .string("binary")])])])])
            case nil: break
            }
            o["responses"] = .object([
                "200": .object(["description": .string("Successful Response"), "content": .object([op.produces: .object([:])])]),
                "422": .object(["description": .string("Validation Error: the detail names the parameter")]),
            ])
            item[op.method.lowercased()] = .object(o)
            paths[key] = .object(item)
        }
        return .object([
            "openapi": .string("3.0.2"),
            "info": .object(["title": .string(title), "version": .string(version),
                             "description": .string("MONAI Label REST API (0.8.5-compatible) served by monailabel-swift")]),
            "paths": .object(paths),
        ])
    }

    static func register(_ r: inout HTTPRouter, _ ctx: RouteContext) {
        r.get("/openapi.json", route { _ in
            let name = ctx.app.info()["name"]?.stringValue ?? "MONAI Label"
            return .json(document(title: name, version: ServerInfo.version))
        })
        r.get("/docs", route { _ in
            var resp = HTTPResponse.bytes(Array(docsPage.utf8), contentType: "text/html; charset=utf-8")
            resp.headers.add("Cache-Control", "no-cache")
            return resp
        })
    }

    /// Renders `/openapi.json` grouped by tag; everything inline.
    static let docsPage = """
        <!doctype html><html lang="en"><head><meta charset="utf-8"><title>MONAI Label API</title>
        <meta name="viewport" content="width=device-width,initial-scale=1">
        <style>
        body{font:15px/1.45 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d232b}
        header{background:#1d2b3a;color:#fff;padding:14px 24px}header a{color:#9cd}
        main{max-width:1000px;margin:0 auto;padding:12px 24px}
        h2{border-bottom:1px solid #ccd;padding-bottom:4px;margin-top:28px}
        details{background:#fff;border:1px solid #dde;border-radius:6px;margin:6px 0}
        summary{padding:8px 10px;cursor:pointer;font-family:ui-monospace,monospace}
        .m{display:inline-block;min-width:64px;text-align:center;border-radius:4px;color:#fff;font-weight:600;margin-right:8px}
        .GET,.HEAD{background:#2f7dd1}.POST{background:#2e9d5b}.PUT{background:#c98a1b}.DELETE{background:#c53b3b}
        .s{font-family:system-ui,sans-serif;color:#556;margin-left:10px}
        table{border-collapse:collapse;margin:6px 12px 12px}td,th{border-bottom:1px solid #eee;padding:3px 10px;text-align:left}
        .body{margin:0 12px 12px;color:#445}
        </style></head><body>
        <header><b id="title">MONAI Label</b> <span id="version"></span> &middot; <a href="/openapi.json">openapi.json</a>
        &middot; <a href="/">dashboard</a></header><main id="main">Loading&hellip;</main>
        <script>
        const esc = s => String(s ?? "").replace(/[&<>"]/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;","\\"":"&quot;"}[c]));
        fetch("/openapi.json").then(r => r.json()).then(doc => {
          document.getElementById("title").textContent = doc.info.title;
          document.getElementById("version").textContent = "v" + doc.info.version;
          const byTag = {};
          for (const [path, item] of Object.entries(doc.paths))
            for (const [method, op] of Object.entries(item))
              (byTag[op.tags[0]] ??= []).push({path, method: method.toUpperCase(), op});
          let html = "";
          for (const tag of Object.keys(byTag).sort()) {
            html += `<h2>${esc(tag)}</h2>`;
            for (const {path, method, op} of byTag[tag]) {
              html += `<details><summary><span class="m ${method}">${method}</span>${esc(path)}<span class="s">${esc(op.summary)}</span></summary>`;
              const ps = op.parameters || [];
              if (ps.length) html += "<table><tr><th>parameter</th><th>in</th><th>type</th><th>required</th><th></th></tr>" +
                ps.map(p => `<tr><td><code>${esc(p.name)}</code></td><td>${p.in}</td><td>${esc(p.schema.type)}</td><td>${p.required ? "yes" : ""}</td><td>${esc(p.description)}</td></tr>`).join("") + "</table>";
              if (op.requestBody) {
                const [type, c] = Object.entries(op.requestBody.content)[0];
                const fields = c.schema && c.schema.properties ? ": " + Object.keys(c.schema.properties).join(", ") : "";
                html += `<div class="body">Body: <code>${esc(type)}</code>${esc(fields)} ${esc(op.requestBody.description)}</div>`;
              }
              html += "</details>";
            }
          }
          document.getElementById("main").innerHTML = html;
        }).catch(e => { document.getElementById("main").textContent = "Could not load /openapi.json: " + e; });
        </script></body></html>
        """
}
