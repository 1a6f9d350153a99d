#!/usr/bin/env bash
# The GPU check, run on the GPU host from the unpacked bundle (scripts/gpu-check/make-bundle.sh): compiles the
# libtorch backend against the host's torch, prints what the binary sees (libtorch, devices), then starts the
# server on a synthetic study and times segmentation_spleen on every device the backend offers.
# Needs python3 with torch, g++; no Swift toolchain, no network. Env: PYTHON, WORK (scratch folder), JOBS (g++
# jobs, default 4), SHAPE (study size, default 96,96,64), PORT (default 8765), RUNS (inferences per device, 3).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
PY="${PYTHON:-python3}"
WORK="${WORK:-$(mktemp -d)}"
TORCH="$("$PY" -c 'import os, torch; print(os.path.dirname(torch.__file__))')"
echo "== torch: $("$PY" -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda, "devices", torch.cuda.device_count())')"
BACKEND="$WORK/libmonailabel_torch.so"
time "$HERE/src/scripts/build-torch-backend.sh" --torch "$TORCH" --out "$BACKEND" --jobs "${JOBS:-4}"
export MONAILABEL_TORCH_BACKEND="$BACKEND" LD_LIBRARY_PATH="$HERE/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
ML="$HERE/bin/monailabel"
echo "== monailabel --version"
"$ML" --version
"$ML" datasets --download --output "$WORK/studies" --count 2 --labeled 1 --shape "${SHAPE:-96,96,64}"
rm -rf "$WORK/app" && cp -r "$HERE/sample-apps/radiology" "$WORK/app"
PORT="${PORT:-8765}"
"$ML" start_server --app "$WORK/app" --studies "$WORK/studies" --conf models segmentation_spleen \
    --host 127.0.0.1 --port "$PORT" > "$WORK/server.log" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true' EXIT
PORT="$PORT" RUNS="${RUNS:-3}" "$PY" - <<'PY'
import json, os, time, urllib.error, urllib.request, uuid
base = f"http://127.0.0.1:{os.environ['PORT']}"
for _ in range(600):
    try:
        info = json.load(urllib.request.urlopen(base + "/info/"))
        break
    except (urllib.error.URLError, ConnectionError):
        time.sleep(0.1)
else:
    raise SystemExit("server did not answer /info/ within 60 s")
print("== /info/ torch:", json.dumps(info.get("torch")))
print("== segmentation_spleen config.device:", info["models"]["segmentation_spleen"]["config"].get("device"))
image = sorted(json.load(urllib.request.urlopen(base + "/datastore/?output=all"))["objects"])[0]

def infer(params):
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"params\"\r\n\r\n{json.dumps(params)}\r\n"
            f"--{boundary}--\r\n").encode()
    req = urllib.request.Request(f"{base}/infer/segmentation_spleen?image={image}&output=json", data=body,
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    t = time.perf_counter()
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, time.perf_counter() - t, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, time.perf_counter() - t, json.load(e)

devices = info["torch"]["devices"] + (["cpu"] if "cpu" not in info["torch"]["devices"] else [])
for device in devices:
    for run in range(int(os.environ["RUNS"])):
        status, seconds, answer = infer({"device": device})
        print(f"== infer segmentation_spleen device={device} run={run}: HTTP {status} in {seconds:.3f} s;",
              json.dumps(answer.get("latencies", answer))[:300])
        if status != 200:
            raise SystemExit(f"inference on {device} failed")
status, _, answer = infer({"device": "cuda:99"})
print(f"== infer device=cuda:99: HTTP {status} {answer}")
if status != 422:
    raise SystemExit("an unavailable device was not refused with 422")
PY
echo "== GPU check finished (scratch: $WORK)"
