#!/usr/bin/env bash
# Training benchmark: trains segmentation_spleen from scratch through the REST API on the demo generator's
# volumes (10 labelled cases, 96x96x64 at 1.5x1.5x2 mm; 8 train, 2 validate), prints the validation Dice
# curve and seconds per epoch, says whether validation Dice >= 0.85 was reached within the time limit, then
# segments a new generated volume with the published model and prints its Dice against the ground truth.
# Usage: scripts/bench/train.sh [MINUTES=15]
#   NETWORK=full   the app's UNet 16-32-64-128-256 (default)
#   NETWORK=small  UNet 8-16-32-64-128 (same depth), for slow machines
#   TRAIN_REQUEST  JSON merged into the train request (default {"max_epochs": 300, "lr": 0.001})
#   RANKS="1 2"    instead: data-parallel comparison, one run of EPOCHS (default 20) epochs per world size
#                  (c10d/Gloo ranks sharing the cores), printing seconds, seconds per epoch, best validation
#                  Dice and the speed-up against the first world size, then exits
set -euo pipefail
cd "$(dirname "$0")/../.."
MINUTES="${1:-15}"
NETWORK="${NETWORK:-full}"
REQUEST="${TRAIN_REQUEST:-{\"max_epochs\": 300, \"lr\": 0.001}}"
PY=python3
python3 -c "import numpy, nibabel" 2>/dev/null || PY=.venv-client/bin/python
"$PY" -c "import numpy, nibabel" || { echo "needs numpy + nibabel (scripts/make-client-venv.sh)" >&2; exit 1; }
swift build -c release --product monailabel >/dev/null
swift build -c release --product monailabel_torch >/dev/null
BIN="$(swift build -c release --show-bin-path)/monailabel"
WORK="$(mktemp -d)"
PID=""
trap '[ -n "$PID" ] && { kill $PID 2>/dev/null || true; wait $PID 2>/dev/null || true; }; rm -rf "$WORK"' EXIT
"$BIN" datasets -d -o "$WORK/studies" --count 10 --labeled 10 >/dev/null
# Case 11 of the same generator: never seen in training.
"$BIN" datasets -d -o "$WORK/holdout" --count 12 --labeled 12 >/dev/null
mkdir -p "$WORK/app"
"$PY" - "$NETWORK" sample-apps/radiology/app.json "$WORK/app/app.json" <<'PY'
import json, sys
net, src, dst = sys.argv[1:]
app = json.load(open(src))
if net == "small":
    app["models"]["segmentation_spleen"]["network"]["channels"] = [8, 16, 32, 64, 128]
json.dump(app, open(dst, "w"), indent=2)
PY
PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export MONAI_LABEL_SESSION_PATH="$WORK/sessions"
"$BIN" start_server --app "$WORK/app" --studies "$WORK/studies" --conf models segmentation_spleen \
  --host 127.0.0.1 --port "$PORT" --log_level warning >"$WORK/server.log" 2>&1 &
PID=$!
URL="http://127.0.0.1:$PORT"
until curl -sf "$URL/info/" >/dev/null; do sleep 0.1; done
if [ -n "${RANKS:-}" ]; then
  echo "network: $NETWORK; cores: $(nproc); epochs: ${EPOCHS:-20}; world sizes: $RANKS"
  "$PY" - "$URL" "${EPOCHS:-20}" $RANKS <<'PY'
import json, sys, time, urllib.request
url, epochs, sizes = sys.argv[1], int(sys.argv[2]), [int(n) for n in sys.argv[3:]]
rows = []
for n in sizes:
    body = json.dumps({"max_epochs": epochs, "lr": 0.001, "name": f"ranks_{n}", "world_size": n,
                       "pretrained": False}).encode()
    req = urllib.request.Request(url + "/train/segmentation_spleen?run_sync=true", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    t0 = time.time()
    stats = json.load(urllib.request.urlopen(req, timeout=24 * 3600))
    dt = time.time() - t0
    rows.append((n, dt, stats.get("best_metric")))
    print(f"world_size {n}: {dt:7.1f} s, {dt / epochs:5.1f} s/epoch, best val Dice {stats.get('best_metric'):.3f}", flush=True)
base = rows[0][1]
for n, dt, dice in rows[1:]:
    print(f"speed-up of {n} ranks over {rows[0][0]}: {base / dt:.2f}x (Dice {dice:.3f} vs {rows[0][2]:.3f})")
PY
  exit 0
fi
echo "network: $NETWORK; cores: $(nproc); limit: $MINUTES min; request: $REQUEST"
curl -sf -X POST -H 'Content-Type: application/json' -d "$REQUEST" "$URL/train/segmentation_spleen" >/dev/null
"$PY" - "$URL" "$WORK/app/model/segmentation_spleen/train_stats.json" "$MINUTES" <<'PY'
import json, sys, time, urllib.request
url, stats_path, minutes = sys.argv[1], sys.argv[2], float(sys.argv[3])
t0 = time.time(); seen = 0; last_t = None; reached = None; plan = None; per_epoch = []
def get(path):
    return json.load(urllib.request.urlopen(url + path))
while True:
    task = get("/train/")
    for line in task.get("details", []):
        if "Plan: " in line and plan is None:
            plan = line.split("Plan: ", 1)[1]; print("planner:", plan)
    try:
        s = json.load(open(stats_path))
    except (OSError, ValueError):
        s = None
    if s and s.get("current_epoch", 0) > seen:
        seen = s["current_epoch"]; now = time.time() - t0
        dt = now - last_t if last_t is not None else None
        if dt: per_epoch.append(dt)
        last_t = now
        val = s.get("eval", {}).get("metrics", {}).get("val_mean_dice")
        tr = s.get("train", {}).get("metrics", {}).get("train_mean_dice")
        print(f"epoch {seen:3d}  t={now:6.0f}s  train_dice={tr:.3f}  val_dice={val:.3f}" + (f"  ({dt:.1f} s/epoch)" if dt else ""), flush=True)
        if val is not None and val >= 0.85 and reached is None:
            reached = (seen, now)
            break
    if task["status"] not in ("SUBMITTED", "RUNNING"):
        print("task ended:", task["status"], task.get("details", [])[-3:]); break
    if time.time() - t0 > minutes * 60:
        break
    time.sleep(2)
req = urllib.request.Request(url + "/train/", method="DELETE"); urllib.request.urlopen(req).read()
if per_epoch: print(f"seconds per epoch (incl. validation): median {sorted(per_epoch)[len(per_epoch)//2]:.1f}")
if reached: print(f"REACHED validation Dice >= 0.85 at epoch {reached[0]} after {reached[1]:.0f} s")
else: print(f"NOT REACHED: validation Dice >= 0.85 not reached within {minutes:.0f} min")
PY
sleep 1
curl -sf -X POST -F "file=@$WORK/holdout/spleen_11.nii.gz" "$URL/infer/segmentation_spleen?output=image" \
  -o "$WORK/pred.nii.gz"
"$PY" - "$WORK/pred.nii.gz" "$WORK/holdout/labels/final/spleen_11.nii.gz" <<'PY'
import sys, nibabel as nib, numpy as np
p = np.asarray(nib.load(sys.argv[1]).dataobj) > 0
g = np.asarray(nib.load(sys.argv[2]).dataobj) > 0
d = 2 * (p & g).sum() / max(1, p.sum() + g.sum())
print(f"inference on a new generated volume (spleen_11): Dice {d:.3f} -> " + ("OK (>= 0.8)" if d >= 0.8 else "BELOW 0.8"))
PY
