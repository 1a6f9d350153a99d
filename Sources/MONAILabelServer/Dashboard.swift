import HTTPServer

/// `GET /`: a dashboard over the REST API (plain HTML/CSS/JS, no CDN, no build step, SVG plots): models and
/// their weights, datastore progress, jobs with a training curve, strategies, the log tail, and an image
/// browser over `/datastore/image/preview`. Everything it shows comes from the public endpoints, so it needs
/// nothing the API does not already offer.
enum Dashboard {
    static func register(_ r: inout HTTPRouter) {
        r.get("/", { _ in
            var resp = HTTPResponse.bytes(Array(page.utf8), contentType: "text/html; charset=utf-8")
            resp.headers.add("Cache-Control", "no-cache")
            return resp
        })
    }

    static let page = """
        <!doctype html><html lang="en"><head><meta charset="utf-8"><title>MONAI Label</title>
        <meta name="viewport" content="width=device-width,initial-scale=1"><link rel="icon" href="data:,">
        <style>
        :root{--bg:#f4f6f8;--card:#fff;--ink:#1c2530;--muted:#5c6b7a;--accent:#2f7dd1;--ok:#2e9d5b;--warn:#c98a1b;--bad:#c53b3b}
        *{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,sans-serif;background:var(--bg);color:var(--ink)}
        header{background:#1d2b3a;color:#fff;padding:10px 20px;display:flex;gap:18px;align-items:baseline;flex-wrap:wrap}
        header h1{font-size:18px;margin:0}header a{color:#9cd;text-decoration:none}header .v{color:#9ab}
        main{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:14px;padding:14px 20px}
        section{background:var(--card);border:1px solid #dde3ea;border-radius:8px;padding:12px 14px;min-width:0}
        section h2{font-size:15px;margin:0 0 8px}table{width:100%;border-collapse:collapse}
        td,th{text-align:left;padding:3px 6px;border-bottom:1px solid #eef1f4;vertical-align:top}th{color:var(--muted);font-weight:600}
        .bar{height:14px;background:#e6ebf0;border-radius:7px;overflow:hidden}.bar>div{height:100%;background:var(--ok)}
        .muted{color:var(--muted)}.pill{display:inline-block;padding:0 7px;border-radius:9px;color:#fff;font-size:12px}
        .DONE{background:var(--ok)}.RUNNING{background:var(--accent)}.ERROR,.STOPPED{background:var(--bad)}.QUEUED{background:var(--warn)}
        pre{background:#0f1720;color:#cfe;padding:8px;border-radius:6px;max-height:260px;overflow:auto;font-size:12px;margin:0}
        #browser{grid-column:1/-1}#browser .row{display:flex;gap:14px;flex-wrap:wrap;align-items:flex-start}
        #imglist{max-height:420px;overflow:auto;min-width:220px}#imglist div{padding:2px 6px;cursor:pointer;border-radius:4px}
        #imglist div.sel{background:#dbe9f8}#preview{background:#000;min-width:256px;min-height:256px;image-rendering:pixelated}
        label{margin-right:10px}svg text{font-size:10px;fill:var(--muted)}
        </style></head><body>
        <header><h1 id="name">MONAI Label</h1><span class="v" id="version"></span>
        <a href="/ohif/">OHIF viewer</a><a href="/docs">API docs</a><a href="/logs/">full log</a><a href="/info/">/info/</a></header>
        <main>
        <section id="models"><h2>Models</h2><table><thead><tr><th>model</th><th>type</th><th>labels</th><th>weights</th><th>val Dice</th></tr></thead><tbody></tbody></table></section>
        <section id="datastore"><h2>Datastore</h2><div id="dsbar" class="bar"><div style="width:0"></div></div><p id="dscount"></p><table id="dstags"></table></section>
        <section id="jobs"><h2>Jobs</h2><table><thead><tr><th>kind</th><th>id</th><th>status</th><th>started</th></tr></thead><tbody></tbody></table>
        <h2 style="margin-top:12px">Training</h2><div id="curve"></div></section>
        <section id="strategies"><h2>Active learning</h2><div id="strats"></div><p id="next" class="muted"></p></section>
        <section id="log"><h2>Log</h2><pre id="logtail">…</pre></section>
        <section id="browser"><h2>Images</h2><div class="row"><div id="imglist"></div><div>
        <div style="margin-bottom:6px"><label>plane <select id="plane"><option>axial</option><option>coronal</option><option>sagittal</option></select></label>
        <label>window <select id="preset"><option value="auto">auto (MR)</option><option value="ct-soft-tissue">CT soft tissue</option>
        <option value="ct-lung">CT lung</option><option value="ct-bone">CT bone</option><option value="ct-brain">CT brain</option></select></label>
        <label>label <select id="label"><option value="">none</option></select></label></div>
        <div><input id="slice" type="range" min="0" max="0" value="0" style="width:384px"> <span id="sliceno" class="muted"></span></div>
        <img id="preview" alt="slice preview" width="384"></div></div></section>
        </main>
        <script>
        "use strict";
        const $ = id => document.getElementById(id);
        const esc = s => String(s ?? "").replace(/[&<>"]/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;","\\"":"&quot;"}[c]));
        const getJSON = async url => { const r = await fetch(url); if (!r.ok) throw new Error(url + ": " + r.status); return r.json(); };
        const when = ts => ts ? new Date(ts * 1000).toLocaleString() : "";
        const history = {};  // trainer -> [{epoch, train, eval}], from train_stats and the train job's log
        const historyRun = {};  // trainer -> the train job whose epochs `history` holds
        const runEpoch = {};  // trainer -> the epoch that job has reached (its `progress`)
        let trainRunning = false;
        let objects = {}, current = null;

        async function models(info) {
          const rows = [];
          for (const [name, m] of Object.entries(info.models || {})) {
            let weights = "untrained (random)";
            try { const w = await getJSON("/model/info/" + encodeURIComponent(name)); weights = "trained " + when(w.modified_time); } catch (e) {}
            const stats = (info.train_stats || {})[name] || {};
            const dice = stats.eval ? Number(stats.eval.best_metric).toFixed(3) : (stats.best_metric != null ? Number(stats.best_metric).toFixed(3) : "");
            const labels = Array.isArray(m.labels) ? m.labels : Object.keys(m.labels || {});
            rows.push(`<tr><td><b>${esc(name)}</b></td><td>${esc(m.type)}</td><td>${esc(labels.join(", "))}</td><td>${esc(weights)}</td><td>${dice}</td></tr>`);
          }
          $("models").querySelector("tbody").innerHTML = rows.join("") || "<tr><td colspan=5 class=muted>no models</td></tr>";
        }

        function datastore(info) {
          const d = info.datastore || {}, total = d.total || 0, done = d.completed || 0;
          $("dsbar").firstElementChild.style.width = (total ? 100 * done / total : 0) + "%";
          $("dscount").textContent = `${done} of ${total} images labelled, ${total - done} unlabelled` + (d.error ? ` (${d.error})` : "");
          const users = {};
          for (const o of Object.values(objects)) {
            const f = (o.labels || {}).final; if (!f) continue;
            const u = (f.info || {}).user || (f.info || {}).client_id || "unknown"; users[u] = (users[u] || 0) + 1;
          }
          $("dstags").innerHTML = Object.entries(d.label_tags || {}).map(([t, n]) => `<tr><th>tag ${esc(t)}</th><td>${n}</td></tr>`).join("")
            + Object.entries(users).map(([u, n]) => `<tr><th>by ${esc(u)}</th><td>${n}</td></tr>`).join("");
        }

        // The per-epoch Dice lines of a train job's log (its last lines, `details`): epochs that ended between two
        // refreshes still get their point. A new job of the same model starts a new curve.
        function epochsFromLog(t) {
          const model = (t.request || {}).model;
          if (!model) return;
          if (historyRun[model] !== t.id) { historyRun[model] = t.id; history[model] = []; }
          runEpoch[model] = (t.progress || {}).epoch || 0;
          const h = history[model];
          for (const line of t.details || []) {
            const m = /Epoch\\[([0-9]+)\\] Metrics -- (train|val)_mean_dice: ([0-9.]+)/.exec(line);
            if (!m) continue;
            const epoch = Number(m[1]);
            let p = h.find(p => p.epoch === epoch);
            if (!p) { p = {epoch, train: null, eval: null}; h.push(p); h.sort((a, b) => a.epoch - b.epoch); }
            p[m[2] === "train" ? "train" : "eval"] = Number(m[3]);
          }
        }

        async function jobs() {
          const rows = [];
          trainRunning = false;
          for (const [kind, url] of [["train", "/train/?all=true"], ["scoring", "/scoring/?all=true"], ["batch infer", "/batch/infer?all=true"]]) {
            let list = [];
            try { const j = await getJSON(url); list = Array.isArray(j) ? j : Object.values(j || {}); } catch (e) {}
            if (kind === "train" && list.length) {
              epochsFromLog(list[list.length - 1]);
              trainRunning = list.some(t => t.status === "RUNNING" || t.status === "SUBMITTED");
            }
            for (const t of list.slice(-5).reverse())
              rows.push(`<tr><td>${kind}</td><td class=muted>${esc(t.id)}</td><td><span class="pill ${esc(t.status)}">${esc(t.status)}</span></td><td>${esc(t.start_ts)}</td></tr>`);
          }
          $("jobs").querySelector("tbody").innerHTML = rows.join("") || "<tr><td colspan=4 class=muted>no jobs yet</td></tr>";
        }

        function curve(info) {
          const svgs = [];
          for (const [name, s] of Object.entries(info.train_stats || {})) {
            if (!s || s.epoch == null) continue;
            const h = (history[name] ??= []);
            const point = {epoch: s.epoch, train: s.train ? Object.values(s.train.metrics || {})[0] : null,
                           eval: s.eval ? Object.values(s.eval.metrics || {})[0] : null};
            // train_stats may still be the previous run's until this job's first epoch ends.
            const ours = !historyRun[name] || runEpoch[name] >= point.epoch;
            if (ours && !h.some(p => p.epoch === point.epoch)) { h.push(point); h.sort((a, b) => a.epoch - b.epoch); }
            const W = 380, H = 130, P = 26, maxE = Math.max(s.total_epochs || 1, ...h.map(p => p.epoch));
            const x = e => P + (W - 2 * P) * e / maxE, y = v => H - P + (2 * P - H) * Math.max(0, Math.min(1, v));
            const line = (key, color) => { const pts = h.filter(p => p[key] != null);
              return pts.length ? `<polyline fill=none stroke="${color}" stroke-width=2 points="${pts.map(p => x(p.epoch) + "," + y(p[key])).join(" ")}"/>`
                + pts.map(p => `<circle cx="${x(p.epoch)}" cy="${y(p[key])}" r=2.5 fill="${color}"/>`).join("") : ""; };
            svgs.push(`<div><b>${esc(name)}</b> <span class=muted>epoch ${s.epoch} of ${s.total_epochs ?? "?"}</span>
              <svg class="trainplot" data-points="${h.length}" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}">
              <line x1=${P} y1=${H - P} x2=${W - P} y2=${H - P} stroke="#ccd"/><line x1=${P} y1=${P} x2=${P} y2=${H - P} stroke="#ccd"/>
              <text x=2 y=${P + 4}>1.0</text><text x=2 y=${H - P + 4}>0</text><text x=${W - P - 30} y=${H - 8}>epoch ${maxE}</text>
              ${line("train", "#2f7dd1")}${line("eval", "#2e9d5b")}</svg>
              <div class=muted><span style="color:#2f7dd1">&#9632;</span> train metric <span style="color:#2e9d5b">&#9632;</span> validation Dice</div></div>`);
          }
          $("curve").innerHTML = svgs.join("") || "<p class=muted>no training run yet</p>";
        }

        function strategies(info) {
          $("strats").innerHTML = Object.entries(info.strategies || {}).map(([n, s]) =>
            `<button data-s="${esc(n)}">${esc(n)}</button> <span class=muted>${esc(s.description)}</span><br>`).join("");
          for (const b of $("strats").querySelectorAll("button")) b.onclick = async () => {
            const r = await fetch("/activelearning/" + encodeURIComponent(b.dataset.s), {method: "POST", headers: {"Content-Type": "application/json"}, body: "{}"});
            const j = await r.json().catch(() => ({}));
            $("next").textContent = r.ok ? `${b.dataset.s} would serve: ${j.id || "nothing left"}` : `${b.dataset.s}: ${JSON.stringify(j.detail)}`;
          };
        }

        async function log() {
          try { const r = await fetch("/logs/?lines=40&text=true"); $("logtail").textContent = await r.text(); } catch (e) {}
        }

        function imageList() {
          const ids = Object.keys(objects).sort();
          $("imglist").innerHTML = ids.map(id => `<div data-id="${esc(id)}" class="${id === current ? "sel" : ""}">${esc(id)}
            ${(objects[id].labels || {}).final ? "<span class=muted>&#10003;</span>" : ""}</div>`).join("") || "<span class=muted>no images</span>";
          for (const d of $("imglist").children) d.onclick = () => select(d.dataset.id);
          if (!current && ids.length) select(ids[0]);
        }

        function select(id) {
          current = id; $("slice").dataset.fresh = "1";
          for (const d of $("imglist").children) d.classList.toggle("sel", d.dataset.id === id);
          const tags = Object.keys((objects[id] || {}).labels || {});
          $("label").innerHTML = "<option value=''>none</option>" + tags.map(t => `<option>${esc(t)}</option>`).join("");
          if (tags.includes("final")) $("label").value = "final";
          preview();
        }

        let shown = null;
        async function preview() {
          if (!current) return;
          const q = new URLSearchParams({image: current, plane: $("plane").value, preset: $("preset").value, size: "384"});
          if ($("slice").dataset.fresh !== "1") q.set("index", $("slice").value);
          if ($("label").value) q.set("label", $("label").value);
          const r = await fetch("/datastore/image/preview?" + q);
          if (!r.ok) { $("sliceno").textContent = "preview: " + r.status; return; }
          const n = Number(r.headers.get("X-Slice-Count")), i = Number(r.headers.get("X-Slice-Index"));
          $("slice").max = String(n - 1); $("slice").value = String(i); $("slice").dataset.fresh = "0";
          $("sliceno").textContent = `slice ${i + 1} of ${n}`;
          if (shown) URL.revokeObjectURL(shown);
          shown = URL.createObjectURL(await r.blob());
          $("preview").src = shown;
          $("preview").dataset.query = q.toString();
        }
        for (const id of ["plane", "preset", "label"]) $(id).onchange = () => { if (id === "plane") $("slice").dataset.fresh = "1"; preview(); };
        $("slice").oninput = preview;

        async function refresh() {
          try {
            const info = await getJSON("/info/");
            $("name").textContent = info.name || "MONAI Label"; $("version").textContent = info.version ? "v" + info.version : "";
            try { objects = (await getJSON("/datastore/?output=all")).objects || {}; } catch (e) {}
            await jobs(); datastore(info); curve(info); await models(info); log();
            if (!$("strats").children.length) strategies(info);
            if ($("imglist").children.length !== Object.keys(objects).length || !current) imageList();
            document.body.dataset.loaded = "1";
          } catch (e) { $("dscount").textContent = "Cannot reach the server: " + e; }
        }
        // Every 2 s, every 0.5 s while a training job runs (its curve grows epoch by epoch).
        async function loop() { await refresh(); setTimeout(loop, trainRunning ? 500 : 2000); }
        loop();
        </script></body></html>
        """
}
