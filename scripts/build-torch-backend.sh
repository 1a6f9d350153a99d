#!/usr/bin/env bash
# Builds the libtorch backend (libmonailabel_torch.so) from Sources/CTorchBackend against any libtorch with g++:
#   scripts/build-torch-backend.sh --torch <site-packages>/torch [--out FILE] [--abi 0|1] [--jobs N] [--force]
# --torch is a PyTorch package folder (its include/ and lib/) or an unpacked libtorch distribution.
# The binary loads the result from its own folder or from MONAILABEL_TORCH_BACKEND=FILE.
# Default --out: .build/torch-backends/<torch version>/libmonailabel_torch.so (printed on the last line).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TORCH="" OUT="" ABI="" JOBS="${JOBS:-2}" FORCE=0
while [ $# -gt 0 ]; do
    case "$1" in
        --torch) TORCH="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        --abi) ABI="$2"; shift 2 ;;
        --jobs) JOBS="$2"; shift 2 ;;
        --force) FORCE=1; shift ;;
        *) echo "usage: $0 --torch DIR [--out FILE] [--abi 0|1] [--jobs N] [--force]" >&2; exit 2 ;;
    esac
done
[ -n "$TORCH" ] || { echo "--torch DIR is required (e.g. .venv/lib/python3.11/site-packages/torch)" >&2; exit 2; }
TORCH="$(cd "$TORCH" && pwd)"
for d in include lib; do [ -d "$TORCH/$d" ] || { echo "$TORCH/$d is missing: not a torch package" >&2; exit 2; }; done

VERSION_H="$TORCH/include/torch/headeronly/version.h"
[ -f "$VERSION_H" ] || VERSION_H="$TORCH/include/torch/csrc/api/include/torch/version.h"
VERSION="$(sed -n 's/^ *"\([0-9][^"]*\)".*/\1/p' "$VERSION_H" | head -1)"
[ -n "$VERSION" ] || { echo "cannot read TORCH_VERSION from $VERSION_H" >&2; exit 2; }

# The C++ ABI of std::string etc. must equal libtorch's or the shim fails to link/load. Order: --abi, the flag
# torch's CMake config sets, torch.compiled_with_cxx11_abi() from the Python that owns the package, else 1
# (every PyTorch release since 2.7 uses the new ABI only).
if [ -z "$ABI" ]; then
    ABI="$(grep -ho '_GLIBCXX_USE_CXX11_ABI=[01]' "$TORCH/share/cmake/Torch/TorchConfig.cmake" 2>/dev/null | head -1 | cut -d= -f2 || true)"
fi
if [ -z "$ABI" ]; then
    SITE="$(dirname "$TORCH")"
    for py in "$SITE/../../../bin/python" python3; do
        if ABI="$(cd / && PYTHONPATH="$SITE" "$py" -c 'import torch; print(int(torch.compiled_with_cxx11_abi()))' 2>/dev/null)"; then
            break
        fi
        ABI=""
    done
fi
ABI="${ABI:-1}"

OUT="${OUT:-$ROOT/.build/torch-backends/$VERSION/libmonailabel_torch.so}"
mkdir -p "$(dirname "$OUT")"
# Up to date: newer than the shim sources, the C API header and torch's version header (each build costs minutes).
if [ "$FORCE" = 0 ] && [ -f "$OUT" ] && [ -z "$(find "$ROOT/Sources/CTorchBackend" "$ROOT/Sources/CTorch/include" \
        "$VERSION_H" "$0" -newer "$OUT" -print -quit)" ]; then
    echo "up to date (--force rebuilds)" >&2
    echo "$OUT"
    exit 0
fi
OBJ="$(dirname "$OUT")/obj"
mkdir -p "$OBJ"

CXXFLAGS=(-std=c++17 -O2 -fPIC -DNDEBUG "-D_GLIBCXX_USE_CXX11_ABI=$ABI" -Wno-deprecated-declarations
    -I"$ROOT/Sources/CTorchBackend/include" -isystem "$TORCH/include" -isystem "$TORCH/include/torch/csrc/api/include")
# A CUDA torch: the shim's CUDA-only code (cuda.cpp: the caching allocator, free GPU memory) needs the CUDA
# runtime's headers beside torch's. They come with the CUDA toolkit (CUDA_HOME, /usr/local/cuda) or with the
# nvidia-cuda-runtime wheel a CUDA PyTorch depends on (site-packages/nvidia/.../include).
if [ -f "$TORCH/lib/libtorch_cuda.so" ]; then
    CUDA_INC=""
    for d in "$TORCH/include" ${CUDA_HOME:+"$CUDA_HOME/include"} /usr/local/cuda/include \
            "$(dirname "$TORCH")"/nvidia/cuda_runtime/include "$(dirname "$TORCH")"/nvidia/cu*/include; do
        if [ -f "$d/cuda_runtime_api.h" ]; then CUDA_INC="$d"; break; fi
    done
    if [ -n "$CUDA_INC" ]; then
        CXXFLAGS+=(-DMLT_WITH_CUDA=1 -isystem "$CUDA_INC")
        # The wheels split CUDA's headers over packages (crt/host_defines.h is nvcc's): every one is searched.
        for d in "$(dirname "$TORCH")"/nvidia/*/include; do
            if [ -d "$d" ] && [ "$d" != "$CUDA_INC" ]; then CXXFLAGS+=(-isystem "$d"); fi
        done
        echo "CUDA headers: $CUDA_INC" >&2
    else
        echo "warning: CUDA torch but no cuda_runtime_api.h (set CUDA_HOME): built without GPU memory queries and cache release" >&2
    fi
fi
echo "building the backend for libtorch $VERSION (C++11 ABI $ABI) from $TORCH" >&2
# Objects of an earlier build with the same flags are reused when newer than their source and every header
# they share (each translation unit costs minutes); other flags or another torch rebuild them all.
STAMP="$OBJ/flags"
if [ "$FORCE" = 1 ] || [ "$(cat "$STAMP" 2>/dev/null)" != "${CXXFLAGS[*]}" ]; then rm -f "$OBJ"/*.o; fi
printf '%s' "${CXXFLAGS[*]}" > "$STAMP"
# One g++ per translation unit, at most $JOBS at a time (each needs ~700 MB).
pids=()
for src in "$ROOT"/Sources/CTorchBackend/*.cpp; do
    obj="$OBJ/$(basename "$src" .cpp).o"
    if [ -f "$obj" ] && [ -z "$(find "$src" "$ROOT/Sources/CTorchBackend/internal.h" "$ROOT/Sources/CTorchBackend/include" \
            "$ROOT/Sources/CTorch/include" "$VERSION_H" -newer "$obj" -print -quit)" ]; then
        continue
    fi
    g++ "${CXXFLAGS[@]}" -c "$src" -o "$obj" &
    pids+=($!)
    if [ "${#pids[@]}" -ge "$JOBS" ]; then wait "${pids[0]}"; pids=("${pids[@]:1}"); fi
done
for p in "${pids[@]}"; do wait "$p"; done

# CUDA builds register their CUDA kernels from libtorch_cuda, which nothing references directly: keep it
# with --no-as-needed or the backend sees no GPU.
LIBS=(-ltorch -ltorch_cpu -lc10)
if [ -f "$TORCH/lib/libtorch_cuda.so" ]; then LIBS+=(-Wl,--no-as-needed -ltorch_cuda -lc10_cuda -Wl,--as-needed); fi
# RUNPATH to torch's lib/ so the backend finds its own libtorch wherever the binary is; -Bsymbolic as in
# Package.swift (calls among the backend's mlt_ functions stay inside it).
OBJS=()
for src in "$ROOT"/Sources/CTorchBackend/*.cpp; do OBJS+=("$OBJ/$(basename "$src" .cpp).o"); done
g++ -shared -o "$OUT.tmp" "${OBJS[@]}" -L"$TORCH/lib" "${LIBS[@]}" -Wl,-rpath,"$TORCH/lib" -Wl,-Bsymbolic \
    -Wl,-soname,libmonailabel_torch.so
mv "$OUT.tmp" "$OUT"
echo "$OUT"
