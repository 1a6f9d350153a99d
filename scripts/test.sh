#!/usr/bin/env bash
# Installs the system packages, builds, and runs every test. Exits non-zero when any test fails.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift build --build-tests
swift test --skip-build --parallel 2>&1 | tee .build/test.log
