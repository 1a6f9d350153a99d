#!/usr/bin/env bash
# DeepGrow click benchmark: a synthetic 512x512x120 CT (0.78 x 0.78 x 2.5 mm) through deepgrow_3d (model input
# 128x192x192) and deepgrow_2d (256x256) with upstream's full-size BasicUNet (32-64-128-256-512-32, untrained
# weights: timing only) on CPU. Prints upstream's per-stage latencies for a cold and a warm click of each.
# Usage: scripts/bench/deepgrow.sh [THREADS=cores]
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/bench/lib.sh
THREADS="${1:-$(nproc)}"
bench_build release
bench_start_server deepgrow_2d,deepgrow_3d "$THREADS"
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
echo "server peak RSS: $(( $(bench_peak_rss_kb) / 1024 )) MB"
