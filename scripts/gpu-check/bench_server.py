"""The server's side of the GPU check (scripts/gpu-check/run.sh), through the REST API as a client sees it.

    python bench_server.py infer URL DEVICE RUNS SHAPE     segmentation_spleen (output=all), a DeepGrow 3D click, a
                                                          DeepEdit call (clicks for three labels): cold, then the
                                                          median of RUNS warm calls; `device` in every request
    python bench_server.py train URL DEVICE [LOG]          one segmentation_spleen epoch (run_sync), from the
                                                          task's log (its last lines in /train/, and the server's
                                                          log file LOG): the plan, the epoch's seconds

Prints one JSON line. SHAPE is the study's i,j,k size (the clicks of scripts/bench/deepgrow.sh and deepedit.sh are
given for 512x512x120 and scaled to it). An answer other than 200 ends the run with the server's detail.
"""
import json
import re
import statistics
import sys
import time
import urllib.error
import urllib.request
import uuid

KIND, BASE, DEVICE = sys.argv[1], sys.argv[2], sys.argv[3]


def wait_for_server():
    for _ in range(1200):
        try:
            return json.load(urllib.request.urlopen(BASE + "/info/"))
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.1)
    sys.exit("the server did not answer /info/ within 120 s")


def post(path, params, timeout=3600):
    """POST `params` as the multipart `params` field; returns (seconds, response bytes, content type)."""
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"params\"\r\n\r\n{json.dumps(params)}\r\n"
            f"--{boundary}--\r\n").encode()
    req = urllib.request.Request(BASE + path, data=body,
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            data = r.read()
            return time.perf_counter() - t0, data, r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        sys.exit(f"POST {path}: HTTP {e.code} {e.read()[:500]!r}")


def latencies(data, content_type):
    """The `latencies` of an output=all answer (a multipart body whose JSON part is the result's params)."""
    match = re.search(r"boundary=\"?([^\";]+)", content_type)
    if not match:
        return json.loads(data).get("latencies", {})
    for part in data.split(b"--" + match.group(1).encode()):
        head, _, payload = part.partition(b"\r\n\r\n")
        if b"application/json" in head or payload.lstrip().startswith(b"{"):
            try:
                return json.loads(payload.strip()).get("latencies", {})
            except ValueError:
                continue
    return {}


def infer(runs, shape):
    info = wait_for_server()
    image = sorted(json.load(urllib.request.urlopen(BASE + "/datastore/?output=all"))["objects"])[0]

    def at(i, j, k):
        return [shape[0] * i // 512, shape[1] * j // 512, shape[2] * k // 120]

    requests = {
        "segmentation_spleen": {},
        "deepgrow_3d": {"foreground": [at(340, 230, 60)], "background": [at(100, 256, 60)]},
        "deepedit": {"spleen": [at(350, 230, 60), at(360, 240, 62)], "liver": [at(150, 260, 60)],
                     "aorta": [at(256, 200, 60)], "label": "spleen"},
    }
    result = {"torch": info.get("torch"), "image": image}
    for model, params in requests.items():
        params = {**params, "device": DEVICE}
        calls = []
        for _ in range(1 + runs):
            seconds, data, ctype = post(f"/infer/{model}?image={image}&output=all", params)
            lat = latencies(data, ctype)
            calls.append({"total": seconds, "network": lat.get("infer"), "server_total": lat.get("total"),
                          "bytes": len(data)})
        warm = calls[1:]
        result[model] = {
            "cold_total": calls[0]["total"], "cold_network": calls[0]["network"],
            "total": statistics.median(c["total"] for c in warm),
            "network": statistics.median(c["network"] for c in warm if c["network"] is not None)
            if any(c["network"] is not None for c in warm) else None,
        }
    return result


def train():
    wait_for_server()
    request = {"max_epochs": 1, "name": "gpu_check", "device": DEVICE, "pretrained": False}
    body = json.dumps(request).encode()
    req = urllib.request.Request(BASE + "/train/segmentation_spleen?run_sync=true", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    t0 = time.perf_counter()
    try:
        urllib.request.urlopen(req, timeout=3600).read()
    except urllib.error.HTTPError as e:
        sys.exit(f"train: HTTP {e.code} {e.read()[:500]!r}")
    seconds = time.perf_counter() - t0
    task = json.load(urllib.request.urlopen(BASE + "/train/"))
    details = task.get("details", []) if isinstance(task, dict) else []
    text = "\n".join(details)
    if len(sys.argv) > 4:
        # /train/ keeps the task's last 20 lines; the server's log has them all.
        with open(sys.argv[4], errors="replace") as f:
            text = f.read() + "\n" + text
    # The last run's lines count (the log may hold earlier runs').
    plan = list(re.finditer(r"Plan: (\{[^\n]*\})", text))
    plan = plan[-1] if plan else None
    cases = list(re.finditer(r"Train: (\d+) cases", text))
    cases = cases[-1] if cases else None
    epoch = list(re.finditer(r"Epoch\[1\] Metrics -- [^\n]*\(([\d.]+) s\)", text))
    epoch = epoch[-1] if epoch else None
    if not (plan and cases and epoch):
        sys.exit("train: the task's log lacks the Plan:, Train: or Epoch[1] Metrics line:\n" + text[-2000:])
    return {"plan": {**json.loads(plan.group(1)), "train_cases": int(cases.group(1))},
            "epoch": float(epoch.group(1)), "request": seconds}


if KIND == "infer":
    out = infer(int(sys.argv[4]), [int(v) for v in sys.argv[5].split(",")])
else:
    out = train()
print(json.dumps({"kind": KIND, "device": DEVICE, **out}))
