#!/usr/bin/env bash
# Benchmarks NIfTI reading against a plain zlib inflate of the same 512x512x300 int16 .nii.gz (generated on the
# first run), and times the resampling transforms. Prints MB/s of decompressed data and the ratio.
# Usage: scripts/bench/nifti.sh [work-dir]   (default: a temporary directory, kept for later runs)
set -euo pipefail
cd "$(dirname "$0")/../.."
WORK="${1:-${TMPDIR:-/tmp}/monailabel-bench}"
mkdir -p "$WORK"
swift build -c release --product imaging-bench >&2
"$(swift build -c release --show-bin-path)/imaging-bench" "$WORK"
