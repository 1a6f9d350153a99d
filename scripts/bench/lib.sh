# Sourced (not run) by the server benchmarks infer.sh, deepedit.sh and deepgrow.sh, after `set -euo pipefail` and
# `cd` to the repository root.

# Builds `monailabel` in configuration $1 (default release) and sets BIN; sets WORK, a temp folder that is removed
# on exit together with the server bench_start_server starts.
bench_build() {
  local config="${1:-release}"
  # SKIP_BUILD=1 measures the binaries already built (e.g. while another build holds the build folder).
  if [ -z "${SKIP_BUILD:-}" ]; then
    swift build -c "$config" --product monailabel >/dev/null
    swift build -c "$config" --product monailabel_torch >/dev/null
  fi
  BIN="$(swift build -c "$config" --show-bin-path)/monailabel"
  WORK="$(mktemp -d)"
  PID=""
  trap 'kill $PID 2>/dev/null || true; wait $PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
}

# Writes the radiology app and one synthetic 512x512x120 CT (0.78 x 0.78 x 2.5 mm, id spleen_00) into WORK, starts
# the server on them with `--conf models $1` and $2 torch threads on a free loopback port, and returns once it
# answers /info/; sets PORT and PID.
bench_start_server() {
  mkdir -p "$WORK/app"
  cp sample-apps/radiology/app.json "$WORK/app/"
  "$BIN" datasets -d -o "$WORK/studies" --count 1 --labeled 0 --shape 512,512,120 --spacing 0.78,0.78,2.5 >/dev/null
  bench_serve "$WORK/app" "$WORK/studies" "$1" "$2"
  PID=$SERVED_PID
}

# Starts the server on app $1 and studies $2 with `--conf models $3` and $4 torch threads (the environment adds
# to that; BENCH_SERVE_ARGS adds arguments, e.g. `--conf preload true`) on a free loopback port and returns once it
# answers /info/; sets PORT and SERVED_PID.
bench_serve() {
  PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  export MONAI_LABEL_SESSION_PATH="$WORK/sessions" MONAI_LABEL_TORCH_THREADS="$4"
  "$BIN" start_server --app "$1" --studies "$2" --conf models "$3" \
    --host 127.0.0.1 --port "$PORT" --log_level "${BENCH_LOG_LEVEL:-warning}" ${BENCH_SERVE_ARGS:-} >>"$WORK/server.log" 2>&1 &
  SERVED_PID=$!
  until curl -sf "http://127.0.0.1:$PORT/info/" >/dev/null; do sleep 0.05; done
}

# The server's peak resident memory so far, in kB.
bench_peak_rss_kb() {
  awk '/VmHWM/ {print $2}' /proc/$PID/status
}

# The peak resident memory of the server's model workers (its `infer_worker` children), in kB; 0 when none.
bench_worker_peak_rss_kb() {
  local total=0 kb
  for child in $(pgrep -P "$PID" -f infer_worker || true); do
    kb=$(awk '/VmHWM/ {print $2}' /proc/$child/status 2>/dev/null || echo 0)
    total=$((total + kb))
  done
  echo "$total"
}
