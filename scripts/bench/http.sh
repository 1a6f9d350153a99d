#!/usr/bin/env bash
# HTTP server benchmark on loopback with wrk (apt-get install wrk): a small JSON route with 64 connections,
# a 10 MB download, a fresh client's latency while 1,000 idle keep-alive connections are held open, while
# 200 slowloris connections trickle headers, beside 1,000 slow readers and 5,000 half-sent bodies, and the server's
# peak RSS. Bounded in time (about 1 minute).
# Usage: scripts/bench/http.sh [seconds-per-wrk-run (default 10)]
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION="${1:-10}"
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
ulimit -n 8192 2>/dev/null || true
swift build -c release --product httpbench >/dev/null
BIN="$(swift build -c release --show-bin-path)/httpbench"
WORK="$(mktemp -d)"
trap 'kill "$PID" 2>/dev/null || true; rm -rf "$WORK"' EXIT
head -c $((10 << 20)) /dev/urandom > "$WORK/10mb.bin"
"$BIN" 0 "$WORK/10mb.bin" 2 > "$WORK/server.log" 2>&1 &
PID=$!
for _ in $(seq 50); do grep -q listening "$WORK/server.log" 2>/dev/null && break; sleep 0.1; done
PORT="$(awk '/listening/ {print $2}' "$WORK/server.log")"
BASE="http://127.0.0.1:$PORT"
echo "httpbench pid $PID on $BASE ($(nproc) cores shared with wrk)"

report() {  # name, wrk output
  local rps p99 p50
  rps="$(awk '/Requests\/sec/ {print $2}' <<<"$2")"
  p50="$(awk '$1 == "50%" {print $2}' <<<"$2")"
  p99="$(awk '$1 == "99%" {print $2}' <<<"$2")"
  printf '%-28s %12s req/s   p50 %-9s p99 %s\n' "$1" "$rps" "$p50" "$p99"
}

wrk -t1 -c64 -d2s "$BASE/info/" >/dev/null  # warm-up
report "GET /info/ (JSON, c64)" "$(wrk -t1 -c64 -d"${DURATION}s" --latency "$BASE/info/")"
OUT="$(wrk -t1 -c4 -d"${DURATION}s" --latency "$BASE/file")"
report "GET /file (10 MB, c4)" "$OUT"
echo "                             $(awk '/Transfer\/sec/ {print $2}' <<<"$OUT")/s"

# A fresh client's latency while many other connections are held open (python3 holds them).
python3 - "$PORT" <<'PY'
import socket, sys, time, threading
port = int(sys.argv[1])

def fresh_latencies(n=50):
    out = []
    for _ in range(n):
        t = time.perf_counter()
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET /info/ HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk: break
            data += chunk
        s.close()
        assert data.startswith(b"HTTP/1.1 200"), data[:40]
        out.append((time.perf_counter() - t) * 1000)
    out.sort()
    return out

idle = []
for i in range(1000):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /info/ HTTP/1.1\r\nHost: b\r\n\r\n")
    idle.append(s)
for s in idle:
    assert s.recv(65536).startswith(b"HTTP/1.1 200")
lat = fresh_latencies()
print(f"fresh client, 1000 idle keep-alive open: p50 {lat[len(lat)//2]:.2f} ms, max {lat[-1]:.2f} ms (target < 50 ms)")
for s in idle: s.close()

stop = False
slow = []
for i in range(200):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /info/ HTTP/1.1\r\nHost: b\r\n")
    slow.append(s)
def trickle():
    while not stop:
        for s in slow:
            try: s.sendall(b"X-a: b\r\n")
            except OSError: pass
        time.sleep(0.5)
t = threading.Thread(target=trickle); t.start()
time.sleep(1)
lat = fresh_latencies()
stop = True; t.join()
print(f"fresh client, 200 slowloris trickling: p50 {lat[len(lat)//2]:.2f} ms, max {lat[-1]:.2f} ms, all 200 OK")
for s in slow: s.close()

# Slow readers: a 4 KiB receive window and no reads, each downloading the 10 MB file (the loop writes responses,
# so they hold no worker); then half-sent bodies (headers and 3 bytes, never more).
readers = []
for i in range(1000):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.sendall(b"GET /file HTTP/1.1\r\nHost: b\r\n\r\n")
    readers.append(s)
time.sleep(1)
lat = fresh_latencies()
print(f"fresh client, 1000 slow readers of /file: p50 {lat[len(lat)//2]:.2f} ms, max {lat[-1]:.2f} ms (target < 100 ms)")
for s in readers: s.close()
bodies = []
for i in range(5000):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"PUT /upload HTTP/1.1\r\nHost: b\r\nContent-Length: 1000000\r\n\r\nabc")
    bodies.append(s)
lat = fresh_latencies()
print(f"fresh client, 5000 half-sent bodies: p50 {lat[len(lat)//2]:.2f} ms, max {lat[-1]:.2f} ms (target < 100 ms)")
for s in bodies: s.close()
PY
echo "server peak RSS after the request benchmarks: $(awk '/VmHWM/ {print $2, $3}' /proc/$PID/status)"
# 300 MB uploads with curl: -T (curl sends Expect: 100-continue) and -F multipart (parsed from the spool).
head -c $((300 << 20)) /dev/zero > "$WORK/300mb.bin"
OUT="$(curl -sS -v --http1.1 -T "$WORK/300mb.bin" -w '\n%{http_code} %{time_total}s' "$BASE/upload" 2>&1)"
grep -q '< HTTP/1.1 100 Continue' <<<"$OUT" && CONT="100 Continue received" || CONT="no 100 Continue"
echo "curl -T 300 MB: $(tail -2 <<<"$OUT" | tr '\n' ' ') ($CONT)"
echo "curl -F 300 MB: $(curl -sS -F 'params={}' -F "file=@$WORK/300mb.bin" -w ' %{http_code} %{time_total}s' "$BASE/form")"
echo "server peak RSS: $(awk '/VmHWM/ {print $2, $3}' /proc/$PID/status) (bodies are spooled, never held in memory)"

kill -TERM "$PID"; wait "$PID" 2>/dev/null || true
