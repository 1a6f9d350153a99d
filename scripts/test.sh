#!/usr/bin/env bash
# Installs the system packages and the Python client venv, builds, and runs every test.
# Exits non-zero when any test fails (XCTest or Swift Testing).
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
# The crash probes run after the rest, on their own (one at a time): each starts real servers, and their latency
# bounds are about the server, not a machine busy with the other tests.
swift test --skip-build --skip CrashProbeTests 2>&1 | tee .build/test.log
swift test --skip-build --filter CrashProbeTests 2>&1 | tee -a .build/test.log
# The backend and network tests again, against PyTorch 2.13's libtorch (the CPU wheel) instead of Debian's 1.13.
scripts/test-torch2.sh
