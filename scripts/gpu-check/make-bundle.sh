#!/usr/bin/env bash
# Builds the GPU-check bundle for a host with a (CUDA) PyTorch, g++ and python3 but no Swift toolchain and no
# network: the release `monailabel` with the Swift runtime linked statically, the shared libraries it needs
# beyond glibc and libstdc++, the backend's sources with scripts/build-torch-backend.sh, the radiology app, the
# small network fixtures `monailabel selftest` checks (../shared/fixtures/monai: weights, input, output), MONAI
# 1.4's wheel (and nibabel's and packaging's, used only where the host lacks them), the benchmark scripts and
# scripts/gpu-check/run.sh. Writes .build/gpu-check.tar.gz (refuses to exceed 60 MB).
#   scripts/gpu-check/make-bundle.sh && scp .build/gpu-check.tar.gz host: && ssh host 'tar xzf gpu-check.tar.gz && gpu-check/run.sh'
# Env: FIXTURES (default ../shared/fixtures/monai), WHEELS (a folder holding the three wheels; default: pip downloads
# them into .build/gpu-check-wheels once).
set -euo pipefail
cd "$(dirname "$0")/../.."
LIMIT=$((60 * 1024 * 1024))
# A scratch folder of its own: a statically linked build must not replace .build/release/monailabel.
SCRATCH=.build/gpu-check-build
swift build -c release --static-swift-stdlib --scratch-path "$SCRATCH" --product monailabel
BIN="$(swift build -c release --static-swift-stdlib --scratch-path "$SCRATCH" --show-bin-path)/monailabel"
OUT=.build/gpu-check
rm -rf "$OUT" "$OUT.tar.gz"
mkdir -p "$OUT/bin" "$OUT/lib" "$OUT/src/scripts" "$OUT/src/Sources"
strip -o "$OUT/bin/monailabel" "$BIN"
# glibc and libstdc++ come from the host (its torch needs its own libstdc++ anyway); the rest travels.
ldd "$BIN" | awk '/=> \// {print $3}' | while read -r lib; do
    case "$(basename "$lib")" in
        libc.so*|libm.so*|libpthread.so*|libdl.so*|librt.so*|ld-linux*|libstdc++.so*|libgcc_s.so*) ;;
        *) cp -L "$lib" "$OUT/lib/" ;;
    esac
done
cp -r Sources/CTorch Sources/CTorchBackend "$OUT/src/Sources/"
cp scripts/build-torch-backend.sh "$OUT/src/scripts/"
mkdir -p "$OUT/sample-apps" "$OUT/fixtures" "$OUT/wheels" "$OUT/bench"
cp -r sample-apps/radiology "$OUT/sample-apps/"
cp scripts/gpu-check/run.sh "$OUT/"
cp scripts/bench/monai_infer.py scripts/gpu-check/bench_monai.py scripts/gpu-check/bench_server.py "$OUT/bench/"
# What `selftest --fixtures` reads: the manifest and, per network, weights, input and PyTorch's output.
FIXTURES="${FIXTURES:-../shared/fixtures/monai}"
cp "$FIXTURES/manifest.json" "$OUT/fixtures/"
for n in unet_segmentation_spleen basicunet_deepgrow_2d basicunet_deepgrow_3d dynunet_deepedit segresnet_segmentation; do
    cp "$FIXTURES/$n.small.pt" "$FIXTURES/$n.input.npy" "$FIXTURES/$n.output.npy" "$OUT/fixtures/"
done
# Pure-Python wheels for the host (no network there): MONAI 1.4 (needs numpy and torch, which the host has), and
# nibabel + packaging for MONAI's NIfTI reading and writing.
WHEELS="${WHEELS:-.build/gpu-check-wheels}"
if ! ls "$WHEELS"/monai-1.4.0-*.whl "$WHEELS"/nibabel-*.whl "$WHEELS"/packaging-*.whl >/dev/null 2>&1; then
    python3 -m pip download -q --no-deps -d "$WHEELS" monai==1.4.0 nibabel packaging
fi
cp "$WHEELS"/monai-1.4.0-*.whl "$WHEELS"/nibabel-*.whl "$WHEELS"/packaging-*.whl "$OUT/wheels/"
tar -C .build -czf "$OUT.tar.gz" gpu-check
SIZE=$(stat -c %s "$OUT.tar.gz")
echo "bundle: $OUT.tar.gz ($((SIZE / 1024 / 1024)) MB; unpacked $(du -sm "$OUT" | cut -f1) MB)"
if [ "$SIZE" -gt "$LIMIT" ]; then echo "bundle exceeds 60 MB" >&2; exit 1; fi
