#!/usr/bin/env bash
# How DICOM SEG reading scales with frames (issue 23: per-frame functional groups were once read in quadratic
# time, 80k frames took 58 s and 3.7 GB). Writes SEGs of 16x16 frames (200 segments per plane) with DCMTK, reads
# each onto its source grid in a fresh process, and prints the read's CPU time, wall time and peak memory growth,
# then the CPU-time ratio: linear reading gives about 4 for 4x the frames, quadratic about 16 (CPU time, because
# wall time on a shared machine measures the other load).
# Usage: scripts/bench/seg-frames.sh [small] [large]   (default 20000 80000 frames)
set -euo pipefail
cd "$(dirname "$0")/../.."
SMALL="${1:-20000}"
LARGE="${2:-80000}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
swift build -c release --product dicom-bench >&2
BENCH="$(swift build -c release --show-bin-path)/dicom-bench"
for n in "$SMALL" "$LARGE"; do
  "$BENCH" write "$WORK/$n" "$n" >&2
  "$BENCH" read "$WORK/$n" | tee "$WORK/$n.txt"
done
cpu() { sed -n 's/.*read_cpu_s=\([0-9.]*\).*/\1/p' "$WORK/$1.txt"; }
awk -v s="$(cpu "$SMALL")" -v l="$(cpu "$LARGE")" -v a="$SMALL" -v b="$LARGE" 'BEGIN {
  printf "read CPU time ratio %d/%d frames: %.1f (linear ~%.0f, quadratic ~%.0f)\n", b, a, l / s, b / a, (b / a) ^ 2 }'
