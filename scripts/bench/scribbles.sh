#!/usr/bin/env bash
# GraphCut (our Boykov-Kolmogorov max-flow) and GeoS (geodesic distances) on a 256^3 scribbles-like grid,
# then Histogram+GraphCut and Scribbles+GeoS end to end on a 256^3 region at 1 mm; prints the times.
# Usage: scripts/bench/scribbles.sh [N]   (grid N^3, default 256)
set -euo pipefail
cd "$(dirname "$0")/../.."
swift build -c release --product scribbles-bench >/dev/null
swift build -c release --product monailabel_torch >/dev/null
"$(swift build -c release --show-bin-path)/scribbles-bench" "${1:-256}"
