#!/usr/bin/env bash
# Runs one test stage of scripts/test.sh under a watchdog, so that a hang costs its stage's limit instead of
# the whole CI run, and says where it hung.
#
# usage: scripts/ci-stage.sh NAME LIMIT_SECONDS LOG COMMAND [ARG...]
#
# The command runs in its own session (process group) with line-buffered stdio (stdbuf), its output going to
# LOG and streamed from there, never through a pipe: a process a test left behind cannot hold the stage open
# by keeping a pipe's write end. Swift Testing's last line ("✔ Test run with N tests ... passed" or "✘ ...")
# is its verdict: a test process still alive 60 s after printing it is stuck in its teardown (static
# destructors of the libraries it loaded), not in a test; its stacks are printed, it is killed, and the
# verdict stands. Past LIMIT_SECONDS the stage's processes are listed with every thread's
# stack (gdb where it can attach, else the kernel's wait channel) and killed. After the command ends, any
# process still in its session 10 s later is listed as leaked and killed. Exits with the command's status, 124 on a
# timeout, or 1 when it passed but left processes behind.
set -uo pipefail
name="$1" limit="$2" log="$3"
shift 3
mkdir -p "$(dirname "$log")"
: > "$log"
started=$SECONDS
setsid stdbuf -oL -eL "$@" >> "$log" 2>&1 < /dev/null &
pid=$!
tail -n +1 -f --pid="$pid" "$log" &
tailer=$!

# Every process in the stage's session (the command's pid is the session id).
members() { ps -e -o pid=,sid= | awk -v s="$pid" '$2 == s { print $1 }'; }

dump() {
    for p in $(members); do
        echo "--- process $p: $(tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null | cut -c1-300)"
        if command -v gdb > /dev/null \
            && timeout 60 gdb -p "$p" -batch -nx -ex "set pagination off" -ex "thread apply all bt 30" \
                > "/tmp/ci-stage-gdb.$p" 2>&1 && grep -q '^#' "/tmp/ci-stage-gdb.$p"; then
            grep -E '^(Thread|#)' "/tmp/ci-stage-gdb.$p" | cut -c1-240 | head -600
        else
            for t in /proc/"$p"/task/*; do
                echo "  thread $(basename "$t") $(cat "$t/comm" 2>/dev/null): wchan $(cat "$t/wchan" 2>/dev/null)"
            done
        fi
        rm -f "/tmp/ci-stage-gdb.$p"
    done
}

verdict() { grep -aE '^(✔|✘) Test run with [0-9]+ test' "$log" | tail -1; }

timed_out=0
teardown_hang=""
verdict_seen=""
while kill -0 "$pid" 2>/dev/null; do
    if [ -z "$verdict_seen" ] && [ -n "$(verdict)" ]; then verdict_seen=$SECONDS; fi
    if [ -n "$verdict_seen" ] && (( SECONDS - verdict_seen >= 60 )); then
        teardown_hang="$(verdict)"
        echo "=== stage $name: the test run reported its result but its process did not exit within 60 s; stacks:" >> "$log"
        dump >> "$log" 2>&1
        kill -KILL -- "-$pid" 2>/dev/null
        break
    fi
    if (( SECONDS - started >= limit )); then
        timed_out=1
        echo "=== stage $name still running after ${limit} s: its processes and their threads' stacks" >> "$log"
        dump >> "$log" 2>&1
        kill -KILL -- "-$pid" 2>/dev/null
        break
    fi
    sleep 2
done
wait "$pid"
rc=$?
sleep 1
kill "$tailer" 2>/dev/null
wait "$tailer" 2>/dev/null
# Children of a stopped server notice their parent is gone within a second or two.
for _ in 1 2 3 4 5 6 7 8 9 10; do
    [ -z "$(members)" ] && break
    sleep 1
done
leaked="$(members)"
if [ -n "$leaked" ]; then
    {
        echo "=== stage $name: processes still running after it ended (killed):"
        for p in $leaked; do echo "  $p: $(tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null | cut -c1-300)"; done
    } | tee -a "$log"
    kill -KILL -- "-$pid" 2>/dev/null
fi
echo "=== stage $name: exit status $rc after $(( SECONDS - started )) s" | tee -a "$log"
if (( timed_out )); then exit 124; fi
if [ -n "$teardown_hang" ]; then
    case "$teardown_hang" in ✔*) rc=0 ;; *) rc=1 ;; esac
    echo "=== stage $name: verdict taken from the run's own result line: $teardown_hang"
fi
if (( rc == 0 )) && [ -n "$leaked" ]; then exit 1; fi
exit "$rc"
