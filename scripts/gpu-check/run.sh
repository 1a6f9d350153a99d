#!/usr/bin/env bash
# The GPU check, run on the GPU host from the unpacked bundle (scripts/gpu-check/make-bundle.sh). Needs python3 with
# torch (and numpy) and g++; no Swift toolchain, no network. In order:
#   1. compiles the libtorch backend against the host's torch and prints what the binary sees (--version);
#   2. `monailabel selftest` on the device: backend checks and the small network fixtures, device vs CPU and vs
#      PyTorch's outputs with TF32 off, within 1e-3;
#   3. benchmarks, each beside MONAI 1.4 (the bundle's wheel) on the same device and torch, with the radiology app's
#      full-size networks (untrained weights: timing only): segmentation_spleen end to end on a synthetic
#      512x512x120 CT (0.78 x 0.78 x 2.5 mm), a DeepGrow 3D click and a DeepEdit call on it, and one
#      segmentation_spleen training epoch (10 generated labelled cases);
#   4. prints the targets (for an H100-class GPU) with PASS/MISS and writes WORK/results.json and results.txt.
# Exits 1 when the self-test fails or a step breaks; missed targets are reported, not an error.
# Usage: run.sh [--quick] [--device cuda|cuda:N|cpu] [--runs N]
#   --quick   small study (96x96x40), model inputs and training set: shows the script works (e.g. on a CPU)
#   --device  default cuda when torch sees a GPU, else cpu;  --runs  warm calls per benchmark (default 3; quick 1)
# Env: PYTHON (default python3), WORK (default <bundle>/work, kept so a rerun reuses the compiled backend),
#      JOBS (parallel g++, default: cores, at most 8), PORT (default 8765).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
QUICK=0 DEVICE="" RUNS=""
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1; shift ;;
        --device) DEVICE="$2"; shift 2 ;;
        --runs) RUNS="$2"; shift 2 ;;
        *) echo "usage: $0 [--quick] [--device cuda|cuda:N|cpu] [--runs N]" >&2; exit 2 ;;
    esac
done
PY="${PYTHON:-python3}"
WORK="${WORK:-$HERE/work}"
mkdir -p "$WORK"
WORK="$(cd "$WORK" && pwd)"
exec > >(tee "$WORK/run.log") 2>&1
START=$(date +%s)
step() { echo "== [$(( $(date +%s) - START )) s] $*"; }

step "torch: $("$PY" -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda, "GPUs", torch.cuda.device_count())')"
if [ -z "$DEVICE" ]; then
    DEVICE="$("$PY" -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')"
fi
if [ "$QUICK" = 1 ]; then
    SHAPE=96,96,40 TRAIN_CASES=3 TRAIN_SHAPE=64,64,48 RUNS="${RUNS:-1}"
else
    SHAPE=512,512,120 TRAIN_CASES=10 TRAIN_SHAPE=96,96,64 RUNS="${RUNS:-3}"
fi
step "device $DEVICE; study $SHAPE; $TRAIN_CASES training cases $TRAIN_SHAPE; warm runs $RUNS"

TORCH="$("$PY" -c 'import os, torch; print(os.path.dirname(torch.__file__))')"
JOBS="${JOBS:-$(n=$(nproc); echo $(( n > 8 ? 8 : n )))}"
BACKEND="$WORK/backend/libmonailabel_torch.so"
step "compiling the backend against $TORCH"
"$HERE/src/scripts/build-torch-backend.sh" --torch "$TORCH" --out "$BACKEND" --jobs "$JOBS"
export MONAILABEL_TORCH_BACKEND="$BACKEND" LD_LIBRARY_PATH="$HERE/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
ML="$HERE/bin/monailabel"
step "monailabel --version"
"$ML" --version

step "monailabel selftest --device $DEVICE"
SELFTEST=0
"$ML" selftest --device "$DEVICE" --fixtures "$HERE/fixtures" | tee "$WORK/selftest.txt" || SELFTEST=1

# MONAI 1.4 from the bundle's wheel, ahead of any MONAI the host has; nibabel and packaging (pure Python) only
# where the host lacks them.
step "MONAI 1.4 from the bundle's wheels"
rm -rf "$WORK/py" && mkdir -p "$WORK/py/monai" "$WORK/py/extra"
"$PY" - "$HERE/wheels" "$WORK/py" <<'PY'
import glob, importlib.util, os, sys, zipfile
wheels, out = sys.argv[1], sys.argv[2]
for w in sorted(glob.glob(os.path.join(wheels, "*.whl"))):
    name = os.path.basename(w).split("-")[0]
    if name == "monai":
        zipfile.ZipFile(w).extractall(os.path.join(out, "monai"))
    elif importlib.util.find_spec(name) is None:
        zipfile.ZipFile(w).extractall(os.path.join(out, "extra"))
        print("using the bundle's", os.path.basename(w))
PY
MONAI_PY() { PYTHONPATH="$WORK/py/monai${PYTHONPATH:+:$PYTHONPATH}:$WORK/py/extra" "$PY" "$@"; }
MONAI_PY -c 'import monai, numpy; print("MONAI", monai.__version__, "numpy", numpy.__version__)'

# The radiology app; --quick shrinks the interactive models' inputs (the networks stay full size).
rm -rf "$WORK/app" && cp -r "$HERE/sample-apps/radiology" "$WORK/app"
if [ "$QUICK" = 1 ]; then
    "$PY" - "$WORK/app/app.json" <<'PY'
import json, sys
app = json.load(open(sys.argv[1]))
app["models"]["deepgrow_3d"].update(model_size=[32, 64, 64], spatial_size=[64, 64])
app["models"]["deepedit"]["spatial_size"] = [64, 64, 32]
json.dump(app, open(sys.argv[1], "w"), indent=1)
PY
fi
PORT="${PORT:-8765}"
URL="http://127.0.0.1:$PORT"
SERVER=""
trap '[ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null || true' EXIT
serve() { # studies-folder models log
    MONAI_LABEL_SESSION_PATH="$WORK/sessions" "$ML" start_server --app "$WORK/app" --studies "$1" --conf models "$2" \
        --host 127.0.0.1 --port "$PORT" > "$3" 2>&1 &
    SERVER=$!
}
stop() { kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; SERVER=""; }

step "synthetic CT $SHAPE (0.78 x 0.78 x 2.5 mm)"
rm -rf "$WORK/ct" "$WORK/train"
"$ML" datasets --download --output "$WORK/ct" --count 1 --labeled 0 --shape "$SHAPE" --spacing 0.78,0.78,2.5 >/dev/null
IMAGE="$(ls "$WORK"/ct/*.nii.gz | head -1)"

step "server: segmentation_spleen, DeepGrow 3D, DeepEdit on $DEVICE"
serve "$WORK/ct" segmentation_spleen,deepgrow_3d,deepedit "$WORK/server-infer.log"
"$PY" "$HERE/bench/bench_server.py" infer "$URL" "$DEVICE" "$RUNS" "$SHAPE" | tee "$WORK/server-infer.json"
stop

step "MONAI 1.4: segmentation_spleen"
BENCH_DEVICE="$DEVICE" MONAI_PY "$HERE/bench/monai_infer.py" "$IMAGE" "$(nproc)" "$RUNS" | tail -1 | tee "$WORK/monai-spleen.json"
for kind in deepgrow3d deepedit; do
    step "MONAI 1.4: $kind"
    MONAI_PY "$HERE/bench/bench_monai.py" "$kind" "$IMAGE" "$WORK/app/app.json" "$DEVICE" "$RUNS" | tail -1 \
        | tee "$WORK/monai-$kind.json"
done

step "server: one segmentation_spleen training epoch ($TRAIN_CASES generated cases $TRAIN_SHAPE)"
"$ML" datasets --download --output "$WORK/train" --count "$TRAIN_CASES" --labeled "$TRAIN_CASES" --shape "$TRAIN_SHAPE" >/dev/null
serve "$WORK/train" segmentation_spleen "$WORK/server-train.log"
"$PY" "$HERE/bench/bench_server.py" train "$URL" "$DEVICE" "$WORK/server-train.log" | tee "$WORK/server-train.json"
stop
step "MONAI 1.4: one training epoch with the server's plan"
PLAN="$("$PY" -c 'import json, sys; print(json.dumps(json.load(open(sys.argv[1]))["plan"]))' "$WORK/server-train.json")"
MONAI_PY "$HERE/bench/bench_monai.py" train "$WORK/train" "$WORK/app/app.json" "$DEVICE" "$PLAN" | tail -1 \
    | tee "$WORK/monai-train.json"

step "results"
"$PY" - "$WORK" "$DEVICE" "$QUICK" "$SELFTEST" <<'PY' | tee "$WORK/results.txt"
import json, os, sys
work, device, quick, selftest_failed = sys.argv[1], sys.argv[2], sys.argv[3] == "1", sys.argv[4] == "1"
def load(name):
    return json.load(open(os.path.join(work, name)))
server, train = load("server-infer.json"), load("server-train.json")
monai = {"segmentation_spleen": load("monai-spleen.json"), "deepgrow_3d": load("monai-deepgrow3d.json"),
         "deepedit": load("monai-deepedit.json")}
mtrain = load("monai-train.json")
rows = []  # (what, ours, MONAI's, target text, passed)
def ratio(a, b):
    return a / b if a is not None and b else None
for model, limit in (("segmentation_spleen", 1.0), ("deepgrow_3d", 0.5), ("deepedit", 1.5)):
    ours, theirs = server[model], monai[model]
    rows.append((f"{model} end to end (s)", ours["total"], theirs["total"], f"<= {limit} s", ours["total"] <= limit))
    r = ratio(ours["network"], theirs["network"])
    rows.append((f"{model} network stage (s)", ours["network"], theirs["network"], "<= 1.1x MONAI",
                 r is not None and r <= 1.1))
rows.append(("training epoch (s)", train["epoch"], mtrain["epoch"], "<= 1.1x MONAI", ratio(train["epoch"], mtrain["epoch"]) <= 1.1))
print(f"GPU check on {device}" + (" (--quick sizes: the targets are for full sizes on an H100-class GPU)" if quick else ""))
print(f"selftest: {'FAILED' if selftest_failed else 'passed'}")
print(f"{'':40s} {'ours':>9s} {'MONAI 1.4':>9s} {'ratio':>6s}  target")
for what, ours, theirs, target, ok in rows:
    r = ratio(ours, theirs)
    fmt = lambda v: f"{v:9.3f}" if v is not None else f"{'-':>9s}"
    print(f"{what:40s} {fmt(ours)} {fmt(theirs)} {(f'{r:6.2f}' if r else '     -')}  {target:14s} {'PASS' if ok else 'MISS'}")
print(f"MONAI's training network stage (forward, backward, step): {mtrain['network']:.3f} s of {mtrain['epoch']:.3f} s "
      f"({mtrain['iterations']} iterations); the server reports its epoch only")
if not monai["segmentation_spleen"].get("largest_cc", True):
    print("MONAI's segmentation_spleen ran without KeepLargestConnectedComponentd (no scikit-image/cuCIM here); "
          "the server keeps the largest component")
print(f"targets met: {sum(r[4] for r in rows)} of {len(rows)}")
json.dump({"device": device, "quick": quick, "selftest_passed": not selftest_failed,
           "server": {"infer": server, "train": train}, "monai": {**monai, "train": mtrain},
           "targets": [{"what": w, "ours": o, "monai": m, "target": t, "passed": p} for w, o, m, t, p in rows]},
          open(os.path.join(work, "results.json"), "w"), indent=1)
PY
step "GPU check finished: $WORK/results.json, results.txt, run.log"
exit "$SELFTEST"
