#!/usr/bin/env bash
# Inference benchmark: segmentation_spleen (the full-size UNet 16-32-64-128-256, untrained weights: timing only) on
# CPU, ours beside MONAI 1.4's and beside upstream MONAI Label 0.8.5's own server, in one run on one machine:
#  - for each libtorch backend (Debian's 1.13, which `swift build` builds against, and PyTorch 2.13's CPU wheel,
#    whose backend scripts/build-torch-backend.sh builds) and each volume (a synthetic 96x96x64 CT at
#    1.5 x 1.5 x 2 mm; a 512x512x120 CT at 0.78 x 0.78 x 2.5 mm): our network stage (`latencies.infer`) and
#    end-to-end time (curl's, output=json) for the first inference after start-up and the median of the warm
#    ones, in float32 and with bf16 autocast (`{"amp": true}`), and the model worker's peak RSS per request
#    (`latencies.peak_rss_mb`); on the 96x96x64 CT also the first inference on a server started with
#    `--conf preload true`, once its background pre-warm is done;
#  - on the 96x96x64 CT: the window channels-last or contiguous (request param `channels_last`), sw_batch_size 1
#    or 2 (roi 96^3, 8 windows), and the server's and its model worker's RSS once idle after N inferences;
#  - MONAI 1.4 with the same network and pipeline on the same torch (Debian's python3-torch, the 2.13 wheel), fp32
#    and bf16 autocast: scripts/bench/monai_infer.py, run right after ours on the same volume (the machine's load
#    drifts);
#  - upstream's server (UPSTREAM=0 skips it): MONAI Label 0.8.5 from PyPI on the 2.13 CPU wheel, serving its own
#    radiology sample app (tag 0.8.5 of its repository: UPSTREAM_SRC names a clone, else one is made in
#    .build/upstream-MONAILabel) with `--conf models segmentation_spleen --conf use_pretrained_model false`, the
#    same POST /infer request (cold and warm, its `latencies.infer` and curl's time) and its process's peak RSS,
#    right after MONAI's rows on the same volume; then the ratios.
# Every inference of ours runs in the default single model worker. Each row is printed as soon as it is measured,
# the summary at the end, with the load average.
# Usage: scripts/bench/infer.sh [THREADS=cores] [full|quick|overhead|alternate|upstream]
#   full: both volumes, 5 warm runs on the 96x96x64 CT (WARM_RUNS) and 2 on the 512x512x120 one (WARM_LARGE), RSS
#   after 100 more inferences; quick: the 96x96x64 CT only, 2 warm runs, RSS after 10 more; overhead: only the
#   model worker split's overhead (in-process against one model worker); alternate: our network stage and MONAI's
#   on the 96x96x64 CT, request by request (ROUNDS, default 7; scripts/bench/monai_alternate.py); upstream: our
#   server and upstream's on the 96x96x64 CT, request by request (ROUNDS, default 15), end to end.
#   CONFIG=debug measures a debug build (the network stage is libtorch's either way);
#   SKIP_TORCH2=1 or TORCHES=1.13 measures Debian's libtorch only, TORCHES=2.13 the 2.13 wheel only;
#   TORCH2_BACKEND=FILE uses an already built 2.13 backend; WARM_RUNS, WARM_LARGE and MANY_RUNS override the counts;
#   BF16=0 skips the bf16 rows.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/bench/lib.sh
THREADS="${1:-$(nproc)}"
MODE="${2:-full}"
bench_build "${CONFIG:-release}"
mkdir -p "$WORK/app"
cp sample-apps/radiology/app.json "$WORK/app/"
"$BIN" datasets -d -o "$WORK/s96" --count 1 --labeled 0 --shape 96,96,64 --spacing 1.5,1.5,2 >/dev/null
# Upstream's server: MONAI Label 0.8.5 and what its radiology app imports, on the 2.13 CPU wheel, in its own venv.
# Its declared requirements are installed one by one rather than resolved (`--no-deps` for monailabel): they pull
# sam2 (off here: `--conf sam2 false`) and PyPI's CUDA torch; pydicom 2.x is what its pydicom-seg still imports.
# upstream_setup: makes that venv (once) and unpacks the app into WORK/upstream; sets UPSTREAM_PY. UPSTREAM=0 skips it.
UPSTREAM_PY=""
upstream_setup() {
  [ "${UPSTREAM:-1}" != 0 ] || return 0
  UPSTREAM_VENV=.build/upstream-venv
  if ! "$UPSTREAM_VENV/bin/python" -c "import monailabel, monai, torch, itk, fastapi, ignite" 2>/dev/null; then
    python3 -m venv "$UPSTREAM_VENV"
    "$UPSTREAM_VENV/bin/pip" install -q torch==2.13.0+cpu monai==1.4.0 'numpy<2' nibabel scikit-image itk tqdm \
      psutil pillow tensorboard fire lmdb fastapi uvicorn python-multipart pydantic pydantic-settings httpx \
      requests requests-toolbelt schedule timeloop expiringdict expiring_dict cachetools watchdog filelock pyyaml \
      python-dotenv einops pynrrd pydicom==2.4.4 'dicomweb-client[gcp]==0.59.1' pynetdicom==2.0.2 pydicom-seg \
      scipy scikit-learn shapely passlib pyjwt bcrypt girder-client numpymaxflow google-auth ninja >/dev/null
    "$UPSTREAM_VENV/bin/pip" install -q --no-deps monailabel==0.8.5 pytorch-ignite==0.4.11 >/dev/null
  fi
  # The radiology app is not in the wheel: it comes from the repository's 0.8.5 tag.
  UPSTREAM_SRC="${UPSTREAM_SRC:-.build/upstream-MONAILabel}"
  [ -e "$UPSTREAM_SRC" ] || git clone -q --bare --depth 1 --branch 0.8.5 \
    https://github.com/Project-MONAI/MONAILabel "$UPSTREAM_SRC"
  mkdir -p "$WORK/upstream/stubs/torchvision"
  git -C "$UPSTREAM_SRC" archive 0.8.5 sample-apps/radiology | tar -x -C "$WORK/upstream"
  # monailabel.transform.post imports torchvision.utils' make_grid and save_image (used by none of
  # segmentation_spleen's transforms); PyPI's torchvision wheels link CUDA's torch libraries and fail to import
  # over the CPU wheel, so those two names are supplied as functions that raise.
  : >"$WORK/upstream/stubs/torchvision/__init__.py"
  printf 'def make_grid(*args, **kwargs):\n    raise NotImplementedError("bench stub")\n\n\ndef save_image(*args, **kwargs):\n    raise NotImplementedError("bench stub")\n' \
    >"$WORK/upstream/stubs/torchvision/utils.py"
  UPSTREAM_PY="$UPSTREAM_VENV/bin/python"
}
# upstream_start SIZE: upstream's server on a copy of that volume's studies, its torch on THREADS threads; returns
# once it answers /info/ (sets UP_PORT and UP_PID) or fails (prints its log's tail).
upstream_start() {
  rm -rf "$WORK/upstream/s$1"
  cp -r "$WORK/s$1" "$WORK/upstream/s$1"
  UP_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  PYTHONPATH="$WORK/upstream/stubs" MONAILABEL_PYEXE="$UPSTREAM_PY" MONAI_LABEL_SESSION_PATH="$WORK/upstream/sessions" \
    MPLCONFIGDIR="$WORK/upstream/mpl" OMP_NUM_THREADS="$THREADS" "$(dirname "$UPSTREAM_PY")/monailabel" start_server \
    --app "$WORK/upstream/sample-apps/radiology" --studies "$WORK/upstream/s$1" --conf models segmentation_spleen \
    --conf use_pretrained_model false --conf sam2 false --conf skip_scoring true --conf skip_strategies true \
    --host 127.0.0.1 --port "$UP_PORT" >>"$WORK/upstream.log" 2>&1 &
  UP_PID=$!
  for _ in $(seq 1 1200); do
    curl -sf -o /dev/null "http://127.0.0.1:$UP_PORT/info/" && return 0
    kill -0 "$UP_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "upstream's server did not start: $WORK/upstream.log" >&2
  tail -5 "$WORK/upstream.log" >&2
  return 1
}
if [ "$MODE" = alternate ]; then
  # Our network stage and MONAI's alternating on the 96x96x64 CT (ROUNDS, default 7), per backend.
  [ "${TORCHES:-1.13 2.13}" = 2.13 ] || {
    unset MONAILABEL_TORCH_BACKEND
    [ -x .build/bench-venv-1.13/bin/python ] || { echo "run infer.sh full once first: it makes .build/bench-venv-1.13" >&2; exit 2; }
    bench_serve "$WORK/app" "$WORK/s96" segmentation_spleen "$THREADS"; PID=$SERVED_PID
    echo "torch 1.13:"
    .build/bench-venv-1.13/bin/python scripts/bench/monai_alternate.py "$WORK/s96/spleen_00.nii.gz" "$PORT" "${ROUNDS:-7}" "$THREADS" 2>/dev/null
    kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
  }
  [ "${TORCHES:-1.13 2.13}" = 1.13 ] || {
    export MONAILABEL_TORCH_BACKEND="${TORCH2_BACKEND:-$(scripts/build-torch-backend.sh --torch "$(.build/torch2-venv/bin/python -c 'import os, torch; print(os.path.dirname(torch.__file__))')" | tail -1)}"
    bench_serve "$WORK/app" "$WORK/s96" segmentation_spleen "$THREADS"; PID=$SERVED_PID
    echo "torch 2.13:"
    .build/torch2-venv/bin/python scripts/bench/monai_alternate.py "$WORK/s96/spleen_00.nii.gz" "$PORT" "${ROUNDS:-7}" "$THREADS" 2>/dev/null
    kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
  }
  exit 0
fi
if [ "$MODE" = upstream ]; then
  # Our server and upstream's, both up on the 96x96x64 CT, the same request (output=json) alternating ROUNDS times
  # (default 15) after two untimed requests each, per backend of ours: the end-to-end ratio with both sides under
  # the same load (the sequential rows of `full` favour whichever side runs while the load falls).
  upstream_setup
  [ -n "$UPSTREAM_PY" ] || { echo "UPSTREAM=0: no upstream server to compare with" >&2; exit 2; }
  upstream_start 96 || exit 1
  UP=$UP_PID
  PID=$UP
  req() {
    curl -sf -o /dev/null -w '%{time_total}\n' -X POST -F 'params={}' \
      "http://127.0.0.1:$1/infer/segmentation_spleen?image=spleen_00&output=json"
  }
  for torch in ${TORCHES:-1.13 2.13}; do
    if [ "$torch" = 1.13 ]; then
      unset MONAILABEL_TORCH_BACKEND
    else
      export MONAILABEL_TORCH_BACKEND="${TORCH2_BACKEND:-$(scripts/torch-wheel-backend.sh | tail -1)}"
    fi
    bench_serve "$WORK/app" "$WORK/s96" segmentation_spleen "$THREADS"
    PID="$UP $SERVED_PID"
    for _ in 1 2; do req "$PORT" >/dev/null; req "$UP_PORT" >/dev/null; done
    : >"$WORK/alt.ours"
    : >"$WORK/alt.up"
    for _ in $(seq 1 "${ROUNDS:-15}"); do req "$PORT" >>"$WORK/alt.ours"; req "$UP_PORT" >>"$WORK/alt.up"; done
    kill "$SERVED_PID"; wait "$SERVED_PID" 2>/dev/null || true
    PID=$UP
    python3 - "$torch" "$WORK/alt.ours" "$WORK/alt.up" <<'PY'
import statistics, sys
ours = [float(v) for v in open(sys.argv[2]).read().split()]
up = [float(v) for v in open(sys.argv[3]).read().split()]
mo, mu = statistics.median(ours), statistics.median(up)
print(f"96x96x64 POST /infer (output=json), {len(ours)} alternating rounds: ours (torch {sys.argv[1]}) median {mo:.3f} s "
      f"({min(ours):.3f}-{max(ours):.3f}), upstream's server (torch 2.13) median {mu:.3f} s ({min(up):.3f}-{max(up):.3f}): "
      f"{mu / mo:.2f}x (target >= 2)", flush=True)
PY
  done
  echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
  exit 0
fi
if [ "$MODE" != overhead ]; then
if [ "$MODE" = quick ]; then SIZES="96"; WARM=2; MANY=10; else SIZES="96 512"; WARM=5; MANY=100; fi
WARM="${WARM_RUNS:-$WARM}"
MANY="${MANY_RUNS:-$MANY}"
WARM_LARGE="${WARM_LARGE:-2}"
[ "$MODE" = quick ] || "$BIN" datasets -d -o "$WORK/s512" --count 1 --labeled 0 --shape 512,512,120 \
  --spacing 0.78,0.78,2.5 >/dev/null

# The backends: the binary's own (Debian's libtorch) and, unless skipped, torch 2.13's. The 2.13 venv also runs
# MONAI's side; Debian's torch runs it from a venv over the system packages.
BACKENDS=()
[ "${TORCHES:-1.13 2.13}" = 2.13 ] || BACKENDS+=("1.13|")
PY13=""
if [ "${TORCHES:-1.13 2.13}" != 2.13 ] && /usr/bin/python3 -c "import torch" 2>/dev/null; then
  [ -x .build/bench-venv-1.13/bin/python ] || /usr/bin/python3 -m venv --system-site-packages .build/bench-venv-1.13
  # Debian's numpy 1.24 and torch stay; MONAI's KeepLargestConnectedComponent needs scikit-image on CPU.
  .build/bench-venv-1.13/bin/pip install -q --no-deps monai==1.4.0 nibabel packaging importlib_resources >/dev/null 2>&1 \
    && .build/bench-venv-1.13/bin/pip install -q scikit-image==0.24.0 'numpy<2' >/dev/null 2>&1 \
    && PY13=.build/bench-venv-1.13/bin/python
fi
PY213=""
if [ -z "${SKIP_TORCH2:-}" ] && [ "${TORCHES:-1.13 2.13}" != 1.13 ]; then
  [ -x .build/torch2-venv/bin/python ] || python3 -m venv .build/torch2-venv
  .build/torch2-venv/bin/pip install -q torch==2.13.0+cpu monai==1.4.0 nibabel scikit-image 'numpy<2' >/dev/null
  PY213=.build/torch2-venv/bin/python
  if [ -z "${TORCH2_BACKEND:-}" ]; then
    TORCH2_BACKEND="$(scripts/build-torch-backend.sh --torch "$("$PY213" -c 'import os, torch; print(os.path.dirname(torch.__file__))')" | tail -1)"
  fi
  BACKENDS+=("2.13|$TORCH2_BACKEND")
fi

upstream_setup
: >"$WORK/rows"
# request FILE [PARAMS]: one inference on spleen_00 (output=json) into FILE; prints curl's time.
request() {
  curl -sf -o "$1" -w '%{time_total}' -X POST -F "params=${2:-{\}}" \
    "http://127.0.0.1:$PORT/infer/segmentation_spleen?image=spleen_00&output=json"
}
# The network stage and peak RSS of a response: "infer peak_rss_mb".
stage() { python3 -c 'import json, sys; l = json.load(open(sys.argv[1]))["latencies"]; print(l["infer"], l.get("peak_rss_mb", 0))' "$1"; }
# ours TORCH BACKEND SIZE: a server with one model worker on that volume; the first inference after start-up and
# WARM warm ones (WARM_LARGE on the 512x512x120 CT). On the 96x96x64 CT also: the window channels-last or not
# (`channels_last`, alternating), sw_batch_size 1 or 2 with roi 96^3 (8 windows), and MANY more inferences before
# the idle RSS is read. Appends a JSON line to rows and prints it.
ours() {
  local torch="$1" backend="$2" size="$3" rss="0 0 0" t warm="$WARM" layout="" cl swb pre="0 0 0" from
  [ "$size" = 96 ] || warm="$WARM_LARGE"
  if [ -n "$backend" ]; then export MONAILABEL_TORCH_BACKEND="$backend"; else unset MONAILABEL_TORCH_BACKEND; fi
  if [ "$size" = 96 ]; then
    # The first inference once `--conf preload true` has warmed the model in the background (the worker logs
    # "pre-warmed" at info level): its end-to-end and network times, and how long the pre-warm took.
    from=$(($(stat -c %s "$WORK/server.log" 2>/dev/null || echo 0) + 1))
    BENCH_SERVE_ARGS="--conf preload true" BENCH_LOG_LEVEL=info \
      bench_serve "$WORK/app" "$WORK/s$size" segmentation_spleen "$THREADS"
    PID=$SERVED_PID
    for _ in $(seq 1 3000); do tail -c "+$from" "$WORK/server.log" | grep -q "pre-warmed" && break; sleep 0.1; done
    t=$(request "$WORK/pre.json")
    pre="$t $(stage "$WORK/pre.json" | cut -d' ' -f1) $(tail -c "+$from" "$WORK/server.log" | sed -n 's/.*pre-warmed in \([0-9.]*\) s.*/\1/p' | head -1)"
    kill "$PID"; wait "$PID" 2>/dev/null || true
    PID=""
  fi
  bench_serve "$WORK/app" "$WORK/s$size" segmentation_spleen "$THREADS"
  PID=$SERVED_PID
  t=$(request "$WORK/cold.json")
  echo "$t" >"$WORK/cold.time"
  : >"$WORK/warm"
  for _ in $(seq 1 "$warm"); do t=$(request "$WORK/one.json"); echo "$t $(cat "$WORK/one.json")" >>"$WORK/warm"; done
  # bf16 autocast: one untimed request (its kernels are built on first use), then the warm ones.
  : >"$WORK/bf16"
  if [ "${BF16:-1}" != 0 ]; then
    request /dev/null '{"amp": true}' >/dev/null
    for _ in $(seq 1 "$warm"); do
      t=$(request "$WORK/one.json" '{"amp": true}'); echo "$t $(cat "$WORK/one.json")" >>"$WORK/bf16"
    done
  fi
  if [ "$size" = 96 ]; then
    : >"$WORK/layout"
    for _ in 1 2; do
      for cl in true false; do request "$WORK/one.json" "{\"channels_last\": $cl}" >/dev/null; echo "cl_$cl $(stage "$WORK/one.json")" >>"$WORK/layout"; done
    done
    # The first pair warms libtorch up for the 96^3 window; the second is measured.
    for _ in 1 2; do
      for swb in 1 2; do request "$WORK/one.json" "{\"roi_size\": [96, 96, 96], \"sw_batch_size\": $swb}" >/dev/null; echo "swb_$swb $(stage "$WORK/one.json")" >>"$WORK/layout"; done
    done
    layout="$WORK/layout"
    for _ in $(seq 1 "$MANY"); do request /dev/null >/dev/null; done
    # Past MONAI_LABEL_MEMORY_TRIM_DELAY_MS (1 s), when the worker hands back what the requests freed.
    sleep 3
    # RSS counts libtorch's shared pages in both processes; PSS shares them out.
    rss="$(awk '/VmRSS/ {print $2}' /proc/$PID/status) $(for c in $(pgrep -P "$PID" -f infer_worker); do awk '/VmRSS/ {print $2}' /proc/$c/status; done | paste -sd+ | bc)"
    rss="$rss $(for p in $PID $(pgrep -P "$PID" -f infer_worker); do awk '/^Pss:/ {print $2}' /proc/$p/smaps_rollup; done | paste -sd+ | bc)"
  fi
  kill "$PID"; wait "$PID" 2>/dev/null || true
  PID=""
  python3 - "$torch" "$size" "$WORK/cold.time" "$WORK/cold.json" "$WORK/warm" "$WORK/bf16" "${layout:-/dev/null}" $rss $pre <<'PY' | tee -a "$WORK/rows"
import json, statistics, sys
torch, size, cold_time, cold_json, warm_file, bf16_file, layout_file, server_kb, worker_kb, pss_kb = sys.argv[1:11]
pre_total, pre_network, prewarm = (sys.argv[11:14] + ["0", "0", "0"])[:3]
cold = json.load(open(cold_json))["latencies"]
def runs(path):
    return [(float(l.split(" ", 1)[0]), json.loads(l.split(" ", 1)[1])["latencies"]) for l in open(path) if l.strip()]
warm, bf16 = runs(warm_file), runs(bf16_file)
layout = {}
for line in open(layout_file):
    key, network, peak = line.split()
    layout[key] = [float(network), int(peak)]  # the later run of each setting wins
print(json.dumps({"side": "ours", "torch": torch, "size": size,
    "cold_network": cold["infer"], "cold_total": float(open(cold_time).read()),
    "network": statistics.median(l["infer"] for _, l in warm), "total": statistics.median(t for t, _ in warm),
    "peak_rss_mb": max([cold.get("peak_rss_mb", 0)] + [l.get("peak_rss_mb", 0) for _, l in warm]),
    "bf16_network": statistics.median(l["infer"] for _, l in bf16) if bf16 else 0,
    "bf16_total": statistics.median(t for t, _ in bf16) if bf16 else 0,
    "bf16_peak_rss_mb": max(l.get("peak_rss_mb", 0) for _, l in bf16) if bf16 else 0,
    "layout": layout,
    "preload_first_total": float(pre_total), "preload_first_network": float(pre_network or 0),
    "prewarm_s": float(prewarm or 0),
    "idle_server_mb": int(server_kb) // 1024, "idle_worker_mb": int(worker_kb) // 1024, "idle_pss_mb": int(pss_kb) // 1024}), flush=True)
PY
}
# monai PYTHON TORCH SIZE [bf16]: MONAI 1.4's pipeline on that volume, fp32 or bf16 autocast; appends a JSON line to
# rows and prints it.
monai() {
  local w="$WARM"
  [ "$3" = 96 ] || w="$WARM_LARGE"
  BENCH_AMP="${4:-}" "$1" scripts/bench/monai_infer.py "$WORK/s$3/spleen_00.nii.gz" "$THREADS" "$w" 2>/dev/null \
    | python3 -c 'import json, sys; d = json.loads(sys.stdin.read()); d.update(side="monai", size=sys.argv[1], torch=".".join(d["torch"].split(".")[:2])); print(json.dumps(d))' "$3" \
    | tee -a "$WORK/rows" || echo "MONAI 1.4 on $1 ${4:-fp32}: failed" >&2
}
# upstream SIZE: upstream's server on a copy of that volume's studies, its torch on THREADS threads; the first
# inference after start-up and the warm ones (WARM, WARM_LARGE), its network stage (`latencies.infer`), curl's
# time and its process's peak RSS; appends a JSON line to rows and prints it.
upstream() {
  local w="$WARM" pid t i
  [ "$1" = 96 ] || w="$WARM_LARGE"
  upstream_start "$1" || { PID="$UP_PID"; return 0; }
  local port=$UP_PORT
  pid=$UP_PID
  PID=$pid
  : >"$WORK/upstream.runs"
  for i in $(seq 0 "$w"); do
    t=$(curl -sf -o "$WORK/up.json" -w '%{time_total}' -X POST -F 'params={}' \
      "http://127.0.0.1:$port/infer/segmentation_spleen?image=spleen_00&output=json") || t=0
    echo "$t $(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["latencies"]["infer"])' "$WORK/up.json" 2>/dev/null || echo 0)" >>"$WORK/upstream.runs"
  done
  local peak
  peak=$(awk '/VmHWM/ {print int($2 / 1024)}' "/proc/$pid/status")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  PID=""
  python3 - "$1" "$peak" "$WORK/upstream.runs" <<'PY' | tee -a "$WORK/rows"
import json, statistics, sys
size, peak, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
runs = [tuple(float(v) for v in line.split()) for line in open(path) if line.strip()]
if any(t == 0 for t, _ in runs):
    sys.exit("upstream's server failed a request")
print(json.dumps({"side": "upstream", "torch": "2.13", "size": size, "precision": "fp32",
    "cold_total": runs[0][0], "cold_network": runs[0][1],
    "total": statistics.median(t for t, _ in runs[1:]), "network": statistics.median(n for _, n in runs[1:]),
    "peak_rss_mb": peak}), flush=True)
PY
}
# Each of our measurements right before MONAI's on the same torch and volume: the machine's load drifts.
PYS=()
[ "${TORCHES:-1.13 2.13}" = 2.13 ] || PYS+=("$PY13")
PYS+=("$PY213")
for i in "${!BACKENDS[@]}"; do
  b="${BACKENDS[$i]}"
  for size in $SIZES; do
    ours "${b%%|*}" "${b#*|}" "$size"
    if [ -n "${PYS[$i]}" ]; then
      monai "${PYS[$i]}" "${b%%|*}" "$size"
      [ "${BF16:-1}" = 0 ] || monai "${PYS[$i]}" "${b%%|*}" "$size" bf16
    fi
    # Upstream's server once per volume, after the last backend's rows.
    [ -z "$UPSTREAM_PY" ] || [ "$i" != $((${#BACKENDS[@]} - 1)) ] || upstream "$size"
  done
done
unset MONAILABEL_TORCH_BACKEND
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$WORK/rows" "$THREADS" "$((MANY + WARM + 9))" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
threads, many = sys.argv[2], int(sys.argv[3])
print(f"segmentation_spleen, full-size untrained UNet, {threads} torch threads; times in s, RSS in MB")
print(f"{'volume':12s} {'torch':5s} {'side':9s} {'prec':5s} {'network':>8s} {'net cold':>8s} {'e2e':>7s} {'e2e cold':>8s} {'peak RSS':>8s}")
names = {"96": "96x96x64", "512": "512x512x120"}
def row(r, side, prec, network, cold_network, total, cold_total, peak):
    cold = lambda v: f"{v:8.2f}" if v else f"{'':8s}"
    print(f"{names[r['size']]:12s} {r['torch']:5s} {side:9s} {prec:5s} {network:8.2f} {cold(cold_network)} "
          f"{total:7.2f} {cold(cold_total)} {peak:8d}")
for r in rows:
    if r["side"] == "ours":
        row(r, "ours", "fp32", r["network"], r["cold_network"], r["total"], r["cold_total"], r["peak_rss_mb"])
        if r.get("bf16_total"):
            row(r, "ours", "bf16", r["bf16_network"], 0, r["bf16_total"], 0, r["bf16_peak_rss_mb"])
    else:
        row(r, r["side"], r.get("precision", "fp32"), r["network"], r["cold_network"], r["total"], r["cold_total"],
            r["peak_rss_mb"])
def find(side, r, prec="fp32"):
    return next((x for x in rows if x["side"] == side and x["size"] == r["size"] and x.get("precision", "fp32") == prec
                 and (side == "upstream" or x["torch"] == r["torch"])), None)
for r in rows:
    if r["side"] != "ours":
        continue
    m, mb, u = find("monai", r), find("monai", r, "bf16"), find("upstream", r)
    line = f"{names[r['size']]} torch {r['torch']}: cold/warm e2e {r['cold_total'] / r['total']:.2f} (target <= 1.5)"
    if r.get("preload_first_total"):
        line += (f"; with preload (pre-warm {r['prewarm_s']:.2f} s) the first {r['preload_first_total']:.2f} s, "
                 f"network {r['preload_first_network']:.2f} s: {r['preload_first_total'] / r['total']:.2f}x the warm one")
    print(line)
    if m:
        print(f"  fp32: network ours/MONAI {r['network'] / m['network']:.2f} (target <= 0.8); "
              f"e2e MONAI's pipeline/ours {m['total'] / r['total']:.2f}x")
    if mb and r.get("bf16_total"):
        print(f"  bf16: network ours/MONAI {r['bf16_network'] / mb['network']:.2f}; ours bf16/fp32 network "
              f"{r['bf16_network'] / r['network']:.2f}; e2e MONAI's pipeline/ours {mb['total'] / r['bf16_total']:.2f}x")
    if u:
        print(f"  fp32 e2e upstream's server (torch 2.13)/ours {u['total'] / r['total']:.2f}x (target >= 2); "
              f"its network stage {u['network']:.2f} s, ours/its {r['network'] / u['network']:.2f}; "
              f"peak RSS its process {u['peak_rss_mb']} MB, our model worker {r['peak_rss_mb']} MB")
    if r["size"] == "96":
        lay = r.get("layout", {})
        if "cl_true" in lay and "cl_false" in lay:
            print(f"  window channels-last {lay['cl_true'][0]:.2f} s / contiguous {lay['cl_false'][0]:.2f} s "
                  f"(peak {lay['cl_true'][1]} / {lay['cl_false'][1]} MB)")
        if "swb_1" in lay and "swb_2" in lay:
            print(f"  roi 96^3, 8 windows: sw_batch_size 1 {lay['swb_1'][0]:.2f} s / 2 {lay['swb_2'][0]:.2f} s "
                  f"(peak {lay['swb_1'][1]} / {lay['swb_2'][1]} MB)")
        print(f"  idle after {many} inferences: RSS server {r['idle_server_mb']} MB + model worker "
              f"{r['idle_worker_mb']} MB; PSS of both {r['idle_pss_mb']} MB (target: under 400 MB)")
PY
fi

[ "$MODE" = quick ] && exit 0
# libtorch's own graph optimisations on MONAI's side (TorchScript freeze + optimize_for_inference against eager,
# contiguous and channels-last), per torch: one 160^3 window.
: >"$WORK/graph"
for py in "${PYS[@]}"; do
  [ -z "$py" ] || "$py" scripts/bench/monai_graph_modes.py "$THREADS" 3 >>"$WORK/graph" 2>/dev/null \
    || echo "graph modes on $py: failed" >&2
done
python3 - "$WORK/graph" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    d = json.loads(line)
    print(f"torch {d['torch']}, one 160^3 window: MONAI eager {d['eager']:.2f} s, eager channels-last "
          f"{d['eager_channels_last']:.2f} s, TorchScript frozen + optimize_for_inference {d['frozen_optimized']:.2f} s "
          f"(channels-last input {d['frozen_optimized_channels_last_input']:.2f} s)")
PY
# Model worker overhead: the same binary twice, in-process and with one model worker, on a 96x96x64 CT.
MONAI_LABEL_INFER_WORKERS=0 bench_serve "$WORK/app" "$WORK/s96" segmentation_spleen "$THREADS"
PORT0=$PORT
PID=$SERVED_PID
MONAI_LABEL_INFER_WORKERS=1 bench_serve "$WORK/app" "$WORK/s96" segmentation_spleen "$THREADS"
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
