#!/usr/bin/env bash
# Installs the system packages and the Python client venv, builds, and runs every test.
# Exits non-zero when any test fails (XCTest or Swift Testing).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/make-client-venv.sh
# The crash probes (Tests/CrashProbeTests) attack the release binary, as users run it.
swift build -c release --product monailabel
swift build --build-tests
mkdir -p .build
# The crash probes run after the rest, on their own (one at a time): each starts real servers, and their latency
# bounds are about the server, not a machine busy with the other tests.
swift test --skip-build --skip CrashProbeTests 2>&1 | tee .build/test.log
swift test --skip-build --filter CrashProbeTests 2>&1 | tee -a .build/test.log
