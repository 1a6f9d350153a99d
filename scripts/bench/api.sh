#!/usr/bin/env bash
# API benchmark: start-up time to the first /info/ answer, then wrk (loopback, bounded in time) against
# GET /info/ (64 connections, beside the same server's static 404 as the baseline) and GET /datastore/?output=all
# with N images in the store (tiny generated files).
# Usage: scripts/bench/api.sh [N_IMAGES=10000] [SECONDS=10]   (CONFIG=debug, BASELINE_BIN=FILE: see below)
set -euo pipefail
cd "$(dirname "$0")/../.."
N="${1:-10000}"
DURATION="${2:-10}"
command -v wrk >/dev/null || { echo "wrk is required: apt-get install wrk" >&2; exit 1; }
CONFIG="${CONFIG:-release}"  # CONFIG=debug measures a debug build; SKIP_BUILD=1 uses the one built
if [ -z "${SKIP_BUILD:-}" ]; then
  swift build -c "$CONFIG" --product monailabel >/dev/null
  swift build -c "$CONFIG" --product monailabel_torch >/dev/null
fi
BIN="$(swift build -c "$CONFIG" --show-bin-path)/monailabel"
WORK="$(mktemp -d)"
trap 'kill $PID 2>/dev/null || true; wait $PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
mkdir -p "$WORK/studies" "$WORK/app"
cp sample-apps/radiology/app.json "$WORK/app/"
python3 - "$WORK/studies" "$N" <<'PY'
import gzip, os, sys
root, n = sys.argv[1], int(sys.argv[2])
blob = gzip.compress(b"\x5c\x01" + b"\0" * 346)
for i in range(n):
    with open(os.path.join(root, f"case_{i:05d}.nii.gz"), "wb") as f:
        f.write(blob)
PY
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export MONAI_LABEL_SESSION_PATH="$WORK/sessions"
# Starts the server (PID) and sets ELAPSED to the seconds until its first /info/ answer.
start_server() {
  local start ready
  start=$(date +%s.%N)
  "$BIN" start_server --app "$WORK/app" --studies "$WORK/studies" --conf models segmentation_spleen \
    --host 127.0.0.1 --port "$PORT" --log_level warning >"$WORK/server.log" 2>&1 &
  PID=$!
  until curl -sf "http://127.0.0.1:$PORT/info/" >/dev/null; do sleep 0.02; done
  ready=$(date +%s.%N)
  ELAPSED=$(echo "$ready - $start" | bc)
}
echo "images in store:            $N"
start_server
printf 'start-up to first /info/:   %.2f s (first start, indexes the folder)\n' "$ELAPSED"
kill $PID; wait $PID 2>/dev/null || true
start_server
printf 'start-up to first /info/:   %.2f s (restart on the existing datastore JSON)\n' "$ELAPSED"
bytes=$(curl -s "http://127.0.0.1:$PORT/datastore/?output=all" | wc -c)
echo "datastore JSON:             $bytes bytes"
run() {
  local label="$1" conns="$2" url="$3"
  # One wrk thread: wrk and the server share the machine's cores.
  out=$(wrk -t1 -c"$conns" -d"${DURATION}s" --latency "$url")
  RPS=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  printf '%-44s %10s req/s   p50 %8s   p99 %8s\n' "$label (c=$conns)" "$RPS" "$p50" "$p99"
}
BASE="http://127.0.0.1:$PORT"
echo "/info/: $(curl -s "$BASE/info/" | wc -c) bytes"
# Baselines in the same run: this server's cheapest answer (the router's fixed 404 body) and, with
# BASELINE_BIN=<another monailabel>, that binary's /info/ on the same store (e.g. a build before the cache).
# Runs alternate, three rounds, and the medians are compared: other load on the machine moves all of them.
if [ -n "${BASELINE_BIN:-}" ]; then
  BPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "$BASELINE_BIN" start_server --app "$WORK/app" --studies "$WORK/studies" --conf models segmentation_spleen \
    --host 127.0.0.1 --port "$BPORT" --log_level warning >"$WORK/baseline.log" 2>&1 &
  BPID=$!
  trap 'kill $PID $BPID 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
  until curl -sf "http://127.0.0.1:$BPORT/info/" >/dev/null; do sleep 0.05; done
  cmp -s <(curl -s "$BASE/info/") <(curl -s "http://127.0.0.1:$BPORT/info/") && echo "/info/ bytes: identical to the baseline binary's" \
    || echo "/info/ bytes: DIFFER from the baseline binary's"
fi
wrk -t1 -c64 -d2s "$BASE/info/" >/dev/null  # warm-up
: >"$WORK/rps"
for round in 1 2 3; do
  run "GET /auth/ (static 404) [$round]" 64 "$BASE/auth/"; echo "static $RPS" >>"$WORK/rps"
  run "GET /info/ [$round]" 64 "$BASE/info/"; echo "info $RPS" >>"$WORK/rps"
  if [ -n "${BASELINE_BIN:-}" ]; then
    run "GET /info/, baseline binary [$round]" 64 "http://127.0.0.1:$BPORT/info/"; echo "baseline $RPS" >>"$WORK/rps"
  fi
done
[ -n "${BASELINE_BIN:-}" ] && { kill $BPID; wait $BPID 2>/dev/null || true; }
python3 - "$WORK/rps" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    k, v = line.split()
    runs.setdefault(k, []).append(float(v))
m = {k: statistics.median(v) for k, v in runs.items()}
line = f"/info/ median {m['info']:,.0f} req/s: {m['info'] / m['static']:.2f}x this server's static 404"
if "baseline" in m:
    line += f", {m['info'] / m['baseline']:.2f}x the baseline binary's /info/ ({m['baseline']:,.0f} req/s)"
print(line + f"; target >= 25,000 req/s: {'met' if m['info'] >= 25000 else 'NOT met'}")
PY
run "GET /datastore/?output=all" 4 "$BASE/datastore/?output=all"
run "GET /datastore/ (stats)" 16 "$BASE/datastore/"
rss=$(awk '/VmHWM/ {print $2}' /proc/$PID/status)
echo "server peak RSS:            $((rss / 1024)) MB"
echo "upstream 0.8.5 on this machine kind (reference/perf.md): /info/ 710 req/s; output=all with 2,006 images 9 req/s; start-up 12.8 s"
