#!/usr/bin/env bash
# Mixed precision on the CPU: bf16 autocast (`"amp": true, "amp_dtype": "bfloat16"`) against float32 for the network
# stage (`latencies.infer`) of segmentation_spleen (the radiology app's full-size untrained UNet, roi 160^3) on a
# 96x96x64 CT, for each libtorch backend (Debian's 1.13; PyTorch 2.13's CPU wheel unless SKIP_TORCH2=1). One
# server (one model worker) per backend; after one untimed request of each kind, float32 and bf16 requests
# alternate ROUNDS times so both see the same load on a shared machine; medians and the bf16/fp32 ratio are
# printed with the load average before and after.
# Usage: scripts/bench/amp.sh [THREADS=cores] [ROUNDS=5]; CONFIG=debug, SKIP_BUILD=1, TORCH2_BACKEND=FILE as infer.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/bench/lib.sh
THREADS="${1:-$(nproc)}"
ROUNDS="${2:-5}"
bench_build "${CONFIG:-release}"
mkdir -p "$WORK/app"
cp sample-apps/radiology/app.json "$WORK/app/"
"$BIN" datasets -d -o "$WORK/s96" --count 1 --labeled 0 --shape 96,96,64 --spacing 1.5,1.5,2 >/dev/null

BACKENDS=("1.13|")
if [ -z "${SKIP_TORCH2:-}" ]; then
  if [ -z "${TORCH2_BACKEND:-}" ]; then
    [ -x .build/torch2-venv/bin/python ] || python3 -m venv .build/torch2-venv
    .build/torch2-venv/bin/pip install -q torch==2.13.0+cpu >/dev/null
    TORCH2_BACKEND="$(scripts/build-torch-backend.sh --torch \
      "$(.build/torch2-venv/bin/python -c 'import os, torch; print(os.path.dirname(torch.__file__))')" | tail -1)"
  fi
  BACKENDS+=("2.13|$TORCH2_BACKEND")
fi

FP32='{}'
BF16='{"amp": true, "amp_dtype": "bfloat16"}'
# request PARAMS: one inference; prints the HTTP status and the answer (latencies, or the 422's detail).
request() {
  local status
  status=$(curl -s -o "$WORK/body" -w '%{http_code}' -X POST -F "params=$1" \
    "http://127.0.0.1:$PORT/infer/segmentation_spleen?image=spleen_00&output=json")
  echo "$status $(tr -d '\n' <"$WORK/body")"
}
for b in "${BACKENDS[@]}"; do
  torch="${b%%|*}" backend="${b#*|}"
  if [ -n "$backend" ]; then export MONAILABEL_TORCH_BACKEND="$backend"; else unset MONAILABEL_TORCH_BACKEND; fi
  bench_serve "$WORK/app" "$WORK/s96" segmentation_spleen "$THREADS"
  PID=$SERVED_PID
  load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
  request "$FP32" >/dev/null
  request "$BF16" >"$WORK/first-bf16"
  for _ in $(seq 1 "$ROUNDS"); do
    echo "fp32 $(request "$FP32")" >>"$WORK/runs-$torch"
    echo "bf16 $(request "$BF16")" >>"$WORK/runs-$torch"
  done
  load_after="$(cut -d' ' -f1-3 /proc/loadavg)"
  kill "$PID"; wait "$PID" 2>/dev/null || true
  PID=""
  python3 - "$torch" "$WORK/runs-$torch" "$WORK/first-bf16" "$load_before" "$load_after" <<'PY'
import json, statistics, sys
torch, runs, first, before, after = sys.argv[1:6]
times = {"fp32": [], "bf16": []}
for line in open(runs):
    kind, status, body = line.rstrip("\n").split(" ", 2)
    if status != "200":
        print(f"libtorch {torch}: {kind} answered {status}: {body[:300]}")
        continue
    times[kind].append(json.loads(body)["latencies"]["infer"])
if times["fp32"] and times["bf16"]:
    f, b = statistics.median(times["fp32"]), statistics.median(times["bf16"])
    print(f"libtorch {torch}: network stage fp32 {f:.2f} s, bf16 {b:.2f} s (median of {len(times['bf16'])}); "
          f"bf16/fp32 {b / f:.2f}; load average {before} before, {after} after")
    print(f"  fp32 runs {times['fp32']}\n  bf16 runs {times['bf16']}")
PY
done
