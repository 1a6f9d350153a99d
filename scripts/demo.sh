#!/usr/bin/env bash
# Installs the system packages, builds a release binary, generates a synthetic demo studies folder (no
# downloads), installs the demo's small trained spleen model (sample-apps/demo/weights, made by our own trainer
# with scripts/make-demo-model.sh) and starts the server on http://127.0.0.1:8000 (override with HOST / PORT /
# STUDIES).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift build -c release --product monailabel
# The libtorch backend the binary loads from its own folder.
swift build -c release --product monailabel_torch
BIN="$(swift build -c release --show-bin-path)/monailabel"
STUDIES="${STUDIES:-$PWD/demo-studies}"
"$BIN" datasets --download --name synthetic_spleen --output "$STUDIES" --count 12 --labeled 4
"$BIN" models --import sample-apps/demo/weights --app sample-apps/demo
echo "Starting MONAI Label on http://${HOST:-127.0.0.1}:${PORT:-8000} (studies: $STUDIES)"
exec "$BIN" start_server --app sample-apps/demo --studies "$STUDIES" \
  --conf models segmentation_spleen --host "${HOST:-127.0.0.1}" --port "${PORT:-8000}"
