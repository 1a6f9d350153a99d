#!/usr/bin/env bash
# DeepEdit inference benchmark: a synthetic 512x512x120 CT (0.78 x 0.78 x 2.5 mm) through the radiology app's
# `deepedit` model at full size (DynUNet 32..320, 9 -> 8 channels, 128^3 input; untrained weights: timing only)
# on CPU, once with clicks for three labels (Slicer's multi-label call) and once without (automatic mode).
# Prints upstream's per-stage latencies of the warm runs and the server's peak RSS.
# Usage: scripts/bench/deepedit.sh [THREADS=cores]   (CONFIG=debug to reuse a debug build)
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/bench/lib.sh
THREADS="${1:-$(nproc)}"
CONFIG="${CONFIG:-release}"
bench_build "$CONFIG"
bench_start_server deepedit "$THREADS"
CLICKS='{"spleen": [[350, 230, 60], [360, 240, 62]], "liver": [[150, 260, 60]], "aorta": [[256, 200, 60]], "label": "spleen"}'
infer() {
  curl -sf -X POST "http://127.0.0.1:$PORT/infer/deepedit?image=spleen_00&output=json" --data-urlencode "params=$1"
}
infer "$CLICKS" >/dev/null
CLICKED=$(infer "$CLICKS")
AUTO=$(infer '{}')
RSS=$(bench_peak_rss_kb)
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
