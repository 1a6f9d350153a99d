#!/usr/bin/env bash
# Installs the system packages and the Python client venv, builds, and runs every test.
# Exits non-zero when any test fails (XCTest or Swift Testing).
#
# The test stages run under scripts/ci-stage.sh: each has a time limit far above its usual duration (main
# ~4 min, crash probes ~10 min, torch 2.13 ~3-8 min on 2 cores), past which its processes' stacks are printed
# and it is stopped, so a hang shows where it is instead of using up CI's 90 minutes. Every stage runs even
# when an earlier one failed; the summary at the end lists each stage's result.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/make-client-venv.sh
# The crash probes (Tests/CrashProbeTests) attack the release binary, as users run it.
swift build -c release --product monailabel
# The libtorch backend (Debian's libtorch) the binaries load from their own folder.
swift build -c release --product monailabel_torch
swift build --build-tests
mkdir -p .build
summary=()
failed=0
stage() {
    local name="$1"
    shift
    local rc=0
    scripts/ci-stage.sh "$name" "$@" || rc=$?
    summary+=("$name: $([ "$rc" = 0 ] && echo passed || echo "FAILED (status $rc)")")
    [ "$rc" = 0 ] || failed=1
}
# The crash probes run after the rest, on their own (one at a time): each starts real servers, and their latency
# bounds are about the server, not a machine busy with the other tests.
stage tests 1200 .build/test.log swift test --skip-build --skip CrashProbeTests
stage crash-probes 1800 .build/test-probes.log swift test --skip-build --filter CrashProbeTests
# The backend and network tests again, against PyTorch 2.13's libtorch (the CPU wheel) instead of Debian's 1.13.
stage torch2 1200 .build/test-torch2-stage.log scripts/test-torch2.sh
printf '%s\n' "${summary[@]}"
exit "$failed"
