#!/usr/bin/env bash
# How DICOM SEG reading scales with frames (issue 23: per-frame functional groups were once read in quadratic
# time, 80k frames took 58 s). Writes SEGs of 16x16 frames (200 segments per plane) with DCMTK, reads each onto
# its source grid, and prints the read times and their ratio: linear reading gives about 4 for 4x the frames,
# quadratic about 16. Usage: scripts/bench/seg-frames.sh [small] [large]   (default 20000 80000 frames)
set -euo pipefail
cd "$(dirname "$0")/../.."
SMALL="${1:-20000}"
LARGE="${2:-80000}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
swift build -c release --product dicom-bench >&2
OUT="$("$(swift build -c release --show-bin-path)/dicom-bench" "$WORK" "$SMALL" "$LARGE")"
echo "$OUT"
echo "$OUT" | awk -F'read_s=' 'NF > 1 { split($2, a, " "); t[++n] = a[1] }
  END { if (n == 2 && t[1] > 0) printf "read time ratio %s/%s frames: %.1f (linear ~%.0f, quadratic ~%.0f)\n", \
        "'"$LARGE"'", "'"$SMALL"'", t[2] / t[1], '"$LARGE"' / '"$SMALL"', ('"$LARGE"' / '"$SMALL"') ^ 2 }'
