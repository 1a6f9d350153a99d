#!/usr/bin/env bash
# DeepEdit inference benchmark: a synthetic 512x512x120 CT (0.78 x 0.78 x 2.5 mm) through the radiology app's
# `deepedit` model at full size (DynUNet 32..320, 9 -> 8 channels, 128^3 input; untrained weights: timing only)
# on CPU, once with clicks for three labels (Slicer's multi-label call) and once without (automatic mode).
# Prints upstream's per-stage latencies of the warm runs and the server's peak RSS.
# Usage: scripts/bench/deepedit.sh [THREADS=cores]   (CONFIG=debug to reuse a debug build)
set -euo pipefail
cd "$(dirname "$0")/../.."
THREADS="${1:-$(nproc)}"
CONFIG="${CONFIG:-release}"
swift build -c "$CONFIG" --product monailabel >/dev/null
BIN="$(swift build -c "$CONFIG" --show-bin-path)/monailabel"
WORK="$(mktemp -d)"
trap 'kill $PID 2>/dev/null || true; wait $PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
mkdir -p "$WORK/app"
cp sample-apps/radiology/app.json "$WORK/app/"
"$BIN" datasets -d -o "$WORK/studies" --count 1 --labeled 0 --shape 512,512,120 --spacing 0.78,0.78,2.5 >/dev/null
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export MONAI_LABEL_SESSION_PATH="$WORK/sessions" MONAI_LABEL_TORCH_THREADS="$THREADS"
"$BIN" start_server --app "$WORK/app" --studies "$WORK/studies" --conf models deepedit \
  --host 127.0.0.1 --port "$PORT" --log_level warning >"$WORK/server.log" 2>&1 &
PID=$!
until curl -sf "http://127.0.0.1:$PORT/info/" >/dev/null; do sleep 0.05; done
CLICKS='{"spleen": [[350, 230, 60], [360, 240, 62]], "liver": [[150, 260, 60]], "aorta": [[256, 200, 60]], "label": "spleen"}'
infer() {
  curl -sf -X POST "http://127.0.0.1:$PORT/infer/deepedit?image=spleen_00&output=json" --data-urlencode "params=$1"
}
infer "$CLICKS" >/dev/null
CLICKED=$(infer "$CLICKS")
AUTO=$(infer '{}')
RSS=$(awk '/VmHWM/ {print $2}' /proc/$PID/status)
echo "image: 512x512x120 int16, 0.78 x 0.78 x 2.5 mm; threads: $THREADS; build: $CONFIG"
python3 - "$CLICKED" "$AUTO" "$RSS" <<'PY'
import json, sys
clicked, auto, rss = json.loads(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3])
for name, r in (("clicks", clicked), ("no clicks", auto)):
    l = r["latencies"]
    print(f"{name:9s} pre {l['pre']:6.2f}  infer {l['infer']:6.2f}  post {l['post']:6.2f}  write {l['write']:5.2f}"
          f"  total {l['total']:6.2f} s")
    print("          pre transforms:", json.dumps(l["transform"]["pre"]))
print(f"server peak RSS: {rss // 1024} MB")
PY
