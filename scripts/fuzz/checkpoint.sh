#!/usr/bin/env bash
# Mutation-fuzzes TorchCheckpoint's reader with the MONAI fixtures and the torch-written test checkpoint.
#   scripts/fuzz/checkpoint.sh [ITERATIONS, default 20000]     (FUZZ_SEED=N reproduces a run)
set -euo pipefail
cd "$(dirname "$0")/../.."
iterations="${1:-20000}"
shared="${MONAILABEL_SHARED:-../shared}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
swiftc -O -module-name TorchCheckpointFuzz Sources/TorchCheckpoint/*.swift Tests/TestSupport/SplitMix.swift \
    scripts/fuzz/checkpoint/main.swift -o "$work/fuzz"
"$work/fuzz" "$iterations" "$shared"/fixtures/monai/unet_segmentation_spleen.small.pt \
    "$shared"/fixtures/monai/dynunet_deepedit.small.ckpt.pt Tests/TorchCheckpointTests/Resources/torch-views.pt
