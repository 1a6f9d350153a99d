#!/usr/bin/env bash
# Checkpoint read/write throughput of TorchCheckpoint, and torch.load of the same file when a Python with
# torch is around (Debian: /usr/bin/python3 with python3-torch).
#   scripts/bench/checkpoint.sh [MiB, default 256]
set -euo pipefail
cd "$(dirname "$0")/../.."
size="${1:-256}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
swiftc -O -module-name TorchCheckpointBench Sources/TorchCheckpoint/*.swift scripts/bench/checkpoint/main.swift -o "$work/bench"
"$work/bench" "$size" "$work/bench.pt"
for py in "${MONAILABEL_PYTHON:-python3}" /usr/bin/python3; do
    if "$py" -c 'import torch' 2>/dev/null; then
        "$py" - "$work/bench.pt" <<'PY'
import sys, time, torch
for weights_only in (True, False):
    start = time.perf_counter()
    obj = torch.load(sys.argv[1], map_location="cpu", weights_only=weights_only)
    elapsed = time.perf_counter() - start
    mib = sum(t.numel() * t.element_size() for t in obj["model"].values()) / 2**20
    print(f"torch {torch.__version__} torch.load(weights_only={weights_only}): {elapsed:.3f} s  {mib / elapsed:.0f} MiB/s")
PY
        break
    fi
done
