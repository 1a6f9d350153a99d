#!/usr/bin/env bash
# Installs the system packages, builds a release binary, generates a demo studies folder and starts the server.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift build -c release
BIN="$(swift build -c release --show-bin-path)/monailabel"
"$BIN" --help
