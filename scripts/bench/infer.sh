#!/usr/bin/env bash
# Inference benchmark: a synthetic 512x512x120 CT (0.78 x 0.78 x 2.5 mm) through segmentation_spleen with the
# full-size UNet (16-32-64-128-256, untrained weights: timing only) on CPU. Prints upstream's per-stage
# latencies (cold and warm), the server's peak RSS, and the network stage against MONAI 1.4's own
# sliding_window_inference of the same network on the same libtorch (Debian's python3-torch), as a ratio.
# Then the model worker split's overhead: warm latency on a 96x96x64 CT with MONAI_LABEL_INFER_WORKERS=0
# (in-process) against =1 (one model worker), both servers up at once and measured alternately.
# Usage: scripts/bench/infer.sh [THREADS=cores] [overhead]   ("overhead": only the worker split's overhead)
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/bench/lib.sh
THREADS="${1:-$(nproc)}"
ONLY_OVERHEAD="${2:-}"
bench_build release
bench_start_server segmentation_spleen "$THREADS"
if [ "$ONLY_OVERHEAD" != overhead ]; then
infer() { curl -sf -X POST "http://127.0.0.1:$PORT/infer/segmentation_spleen?image=spleen_00&output=json"; }
# The cold run goes in the background while /info/ is timed: the accept loop must not wait for the network.
# The warm run then runs alone, so its latencies are not disturbed by the probing.
infer >"$WORK/cold.json" &
INFER_PID=$!
sleep 1
INFO_TIMES=()
for _ in $(seq 1 20); do
  INFO_TIMES+=("$(curl -s -o /dev/null -w '%{time_total}' "http://127.0.0.1:$PORT/info/")")
  sleep 0.2
done
wait $INFER_PID
COLD=$(cat "$WORK/cold.json")
WARM=$(infer)
RSS=$(bench_peak_rss_kb)
WORKER_RSS=$(bench_worker_peak_rss_kb)
echo "image: 512x512x120 int16, 0.78 x 0.78 x 2.5 mm; threads: $THREADS"
printf '%s\n' "${INFO_TIMES[@]}" | sort -n | awk '{a[NR]=$1} END {printf "/info/ during an inference: %d requests, median %.1f ms, max %.1f ms (target < 100 ms)\n", NR, a[int((NR+1)/2)]*1000, a[NR]*1000}'
python3 - "$COLD" "$WARM" "$RSS" "$WORKER_RSS" <<'PY'
import json, sys
cold, warm, rss, worker_rss = json.loads(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
for name, r in (("cold", cold), ("warm", warm)):
    l = r["latencies"]
    print(f"{name:5s} pre {l['pre']:6.2f}  infer {l['infer']:6.2f}  invert {l['invert']:5.2f}  post {l['post']:6.2f}"
          f"  write {l['write']:5.2f}  total {l['total']:6.2f} s")
l = warm["latencies"]
print("warm transforms:", json.dumps(l["transform"]))
rest = l["total"] - l["infer"]
print(f"everything but the network: {rest:.2f} s (target < 1.5 s: {'met' if rest < 1.5 else 'NOT met'})")
print(f"server peak RSS: {rss // 1024} MB; model worker peak RSS: {worker_rss // 1024} MB")
open("/tmp/.ml_infer_bench", "w").write(str(l["infer"]))
PY
# The same network stage in MONAI 1.4 on the same libtorch, when Debian's python3-torch is installed.
if /usr/bin/python3 -c "import torch" 2>/dev/null; then
  /usr/bin/python3 -m venv --system-site-packages "$WORK/venv" >/dev/null
  "$WORK/venv/bin/pip" install -q --no-deps monai==1.4.0 nibabel packaging importlib_resources >/dev/null 2>&1 || true
  "$WORK/venv/bin/python" - "$WORK/studies/spleen_00.nii.gz" "$THREADS" <<'PY' || echo "MONAI comparison unavailable"
import sys, time, json
import torch
from monai.networks.nets import UNet
from monai.inferers import sliding_window_inference
from monai.transforms import LoadImage, EnsureChannelFirst, Orientation, Spacing, ScaleIntensityRange, ScaleIntensity
torch.set_num_threads(int(sys.argv[2]))
img = LoadImage(image_only=True)(sys.argv[1])
x = ScaleIntensity(-1, 1)(ScaleIntensityRange(-57, 164, 0, 1, clip=True)(Spacing((1.0, 1.0, 1.0))(Orientation("RAS")(EnsureChannelFirst()(img)))))
net = UNet(3, 1, 2, (16, 32, 64, 128, 256), (2, 2, 2, 2), num_res_units=2, norm="batch").eval()
with torch.no_grad():
    t = x.as_tensor()[None].float()
    sliding_window_inference(t, (160, 160, 160), 1, net, overlap=0.25)
    start = time.time()
    sliding_window_inference(t, (160, 160, 160), 1, net, overlap=0.25)
    bare = time.time() - start
ours = float(open("/tmp/.ml_infer_bench").read())
print(f"network stage, preprocessed {tuple(t.shape[2:])}: ours {ours:.2f} s, MONAI 1.4 + libtorch 1.13 {bare:.2f} s, "
      f"ratio {ours / bare:.2f} (target <= 1.10: {'met' if ours / bare <= 1.10 else 'NOT met'})")
PY
else
  echo "python3-torch is not installed: no MONAI comparison"
fi
fi

# Model worker overhead: the same binary twice, in-process and with one model worker, on a 96x96x64 CT.
kill "$PID" 2>/dev/null || true
wait "$PID" 2>/dev/null || true
"$BIN" datasets -d -o "$WORK/small" --count 1 --labeled 0 --shape 96,96,64 --spacing 1.5,1.5,2 >/dev/null
MONAI_LABEL_INFER_WORKERS=0 bench_serve "$WORK/app" "$WORK/small" segmentation_spleen "$THREADS"
PORT0=$PORT
PID=$SERVED_PID
MONAI_LABEL_INFER_WORKERS=1 bench_serve "$WORK/app" "$WORK/small" segmentation_spleen "$THREADS"
PORT1=$PORT
PID="$PID $SERVED_PID"
SERVER0=$(echo "$PID" | cut -d' ' -f1)
SERVER1=$SERVED_PID
timed() { curl -sf -o /dev/null -w '%{time_total}\n' -X POST "http://127.0.0.1:$1/infer/segmentation_spleen?image=spleen_00&output=image"; }
# CPU seconds (user + system, clock ticks) of a server and its model workers: on a shared machine the wall
# clock swings by seconds, the CPU a request costs much less.
ticks() { local t=0; for p in $1 $(pgrep -P "$1" -f infer_worker || true); do t=$((t + $(awk '{print $14 + $15}' /proc/$p/stat))); done; echo $t; }
for _ in 1 2 3; do timed "$PORT0" >/dev/null; timed "$PORT1" >/dev/null; done
: >"$WORK/t0"
: >"$WORK/t1"
C0=0
C1=0
RUNS=30
for _ in $(seq 1 $RUNS); do
  a=$(ticks "$SERVER0"); timed "$PORT0" >>"$WORK/t0"; C0=$((C0 + $(ticks "$SERVER0") - a))
  a=$(ticks "$SERVER1"); timed "$PORT1" >>"$WORK/t1"; C1=$((C1 + $(ticks "$SERVER1") - a))
done
python3 - "$WORK/t0" "$WORK/t1" "$C0" "$C1" "$(getconf CLK_TCK)" <<'PY'
import statistics, sys
t0 = [float(x) * 1000 for x in open(sys.argv[1]).read().split()]
t1 = [float(x) * 1000 for x in open(sys.argv[2]).read().split()]
c0, c1 = (int(sys.argv[3]) / int(sys.argv[5]) / len(t0) * 1000, int(sys.argv[4]) / int(sys.argv[5]) / len(t1) * 1000)
m0, m1 = statistics.median(t0), statistics.median(t1)
print(f"96x96x64 warm request (output=image), {len(t0)} alternating runs: in-process median {m0:.1f} ms, "
      f"one model worker median {m1:.1f} ms; overhead {m1 - m0:+.1f} ms (target <= +20 ms: "
      f"{'met' if m1 - m0 <= 20 else 'NOT met'})")
print(f"CPU per request (server + workers): in-process {c0:.0f} ms, one model worker {c1:.0f} ms ({c1 - c0:+.0f} ms)")
PY
# The split's own cost shows best on a request that does almost nothing else: a 32x32x16 upload, one window.
"$BIN" datasets -d -o "$WORK/tiny" --count 1 --labeled 0 --shape 32,32,16 --spacing 1,1,1 >/dev/null
tiny() { curl -sf -o /dev/null -w '%{time_total}\n' -X POST -F "file=@$WORK/tiny/spleen_00.nii.gz" \
  -F 'params={"roi_size":[32,32,16]}' "http://127.0.0.1:$1/infer/segmentation_spleen?output=image"; }
for _ in 1 2 3; do tiny "$PORT0" >/dev/null; tiny "$PORT1" >/dev/null; done
: >"$WORK/s0"
: >"$WORK/s1"
for _ in $(seq 1 50); do tiny "$PORT0" >>"$WORK/s0"; tiny "$PORT1" >>"$WORK/s1"; done
python3 - "$WORK/s0" "$WORK/s1" <<'PY'
import statistics, sys
t0 = [float(x) * 1000 for x in open(sys.argv[1]).read().split()]
t1 = [float(x) * 1000 for x in open(sys.argv[2]).read().split()]
m0, m1 = statistics.median(t0), statistics.median(t1)
print(f"32x32x16 upload, one window, {len(t0)} alternating runs: in-process median {m0:.1f} ms, one model worker "
      f"median {m1:.1f} ms; overhead {m1 - m0:+.1f} ms")
PY
