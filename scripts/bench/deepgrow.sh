#!/usr/bin/env bash
# DeepGrow click benchmark: a synthetic 512x512x120 CT (0.78 x 0.78 x 2.5 mm) through deepgrow_3d (model input
# 128x192x192) and deepgrow_2d (256x256) with upstream's full-size BasicUNet (32-64-128-256-512-32, untrained
# weights: timing only) on CPU. Prints upstream's per-stage latencies for a cold and a warm click of each.
# Usage: scripts/bench/deepgrow.sh [THREADS=cores]
set -euo pipefail
cd "$(dirname "$0")/../.."
THREADS="${1:-$(nproc)}"
swift build -c release --product monailabel >/dev/null
BIN="$(swift build -c release --show-bin-path)/monailabel"
WORK="$(mktemp -d)"
trap 'kill $PID 2>/dev/null || true; wait $PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
mkdir -p "$WORK/app"
cp sample-apps/radiology/app.json "$WORK/app/"
"$BIN" datasets -d -o "$WORK/studies" --count 1 --labeled 0 --shape 512,512,120 --spacing 0.78,0.78,2.5 >/dev/null
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export MONAI_LABEL_SESSION_PATH="$WORK/sessions" MONAI_LABEL_TORCH_THREADS="$THREADS"
"$BIN" start_server --app "$WORK/app" --studies "$WORK/studies" --conf models deepgrow_2d,deepgrow_3d \
  --host 127.0.0.1 --port "$PORT" --log_level warning >"$WORK/server.log" 2>&1 &
PID=$!
until curl -sf "http://127.0.0.1:$PORT/info/" >/dev/null; do sleep 0.05; done
click() {
  curl -sf -X POST "http://127.0.0.1:$PORT/infer/$1?image=spleen_00&output=json" \
    -F "params={\"foreground\": [[340, 230, 60]], \"background\": [[100, 256, 60]], \"slice\": 60}"
}
echo "image: 512x512x120 int16, 0.78 x 0.78 x 2.5 mm; threads: $THREADS"
for model in deepgrow_3d deepgrow_2d; do
  COLD=$(click $model)
  WARM=$(click $model)
  python3 - "$model" "$COLD" "$WARM" <<'PY'
import json, sys
model, cold, warm = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
for name, r in (("cold", cold), ("warm", warm)):
    l = r["latencies"]
    print(f"{model} {name:5s} pre {l['pre']:6.2f}  infer {l['infer']:6.2f}  post {l['post']:6.2f}"
          f"  write {l['write']:5.2f}  total {l['total']:6.2f} s")
print(f"{model} warm transforms:", json.dumps(warm["latencies"]["transform"]))
PY
done
echo "server peak RSS: $(( $(awk '/VmHWM/ {print $2}' /proc/$PID/status) / 1024 )) MB"
