#!/usr/bin/env python3
"""Checks that PyTorch itself reads checkpoints written by TorchCheckpoint (Swift).

    check_checkpoint_python.py --pair OURS.pt REFERENCE.pt [--pair ...] [--expect OURS.pt EXPECT.json ...]

--pair: OURS.pt is a Swift re-write of REFERENCE.pt; both are loaded with torch.load(weights_only=True) and
        must hold the same keys in the same order, bit-identical tensors, equal plain values and equal
        state-dict `_metadata`.
--expect: EXPECT.json (written by the Swift test) names the state dict's key and lists, per state-dict key,
        dtype, shape and the sha256 of the tensor's contiguous little-endian bytes, plus plain top-level
        values (tuples compared as lists).

Without torch it says so and exits 0 (torch is far too large for CI); exit 1 on any mismatch.
"""
import argparse
import hashlib
import json
import sys

try:
    import torch
except ImportError:
    print("torch is not available for this Python; nothing checked")
    sys.exit(0)

DTYPES = {torch.float32: "float32", torch.float64: "float64", torch.float16: "float16",
          torch.bfloat16: "bfloat16", torch.int64: "int64", torch.int32: "int32", torch.int16: "int16",
          torch.int8: "int8", torch.uint8: "uint8", torch.bool: "bool"}
failures = []


def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def raw(t):
    t = t.detach().contiguous()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    return t.numpy().tobytes()


def same(a, b, where):
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            failures.append(f"{where}: tensor vs {type(b).__name__}")
        elif a.dtype != b.dtype or a.shape != b.shape or raw(a) != raw(b):
            failures.append(f"{where}: tensors differ ({a.dtype} {tuple(a.shape)} vs {b.dtype} {tuple(b.shape)})")
    elif isinstance(a, dict) and isinstance(b, dict):
        if type(a) is not type(b):
            failures.append(f"{where}: {type(a).__name__} vs {type(b).__name__}")
        if list(a.keys()) != list(b.keys()):
            failures.append(f"{where}: keys differ")
        for k in a.keys() & b.keys():
            same(a[k], b[k], f"{where}[{k!r}]")
        if getattr(a, "_metadata", None) != getattr(b, "_metadata", None):
            failures.append(f"{where}: _metadata differs")
    elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if type(a) is not type(b) or len(a) != len(b):
            failures.append(f"{where}: {type(a).__name__}[{len(a)}] vs {type(b).__name__}[{len(b)}]")
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{where}[{i}]")
    elif type(a) is not type(b) or a != b:
        failures.append(f"{where}: {a!r} vs {b!r}")


def check_pair(ours, reference):
    same(load(ours), load(reference), ours)


def check_expect(ours, expect_path):
    with open(expect_path) as f:
        expect = json.load(f)
    obj = load(ours)
    sd = obj[expect["key"]] if expect.get("key") else obj
    if list(sd.keys()) != [row[0] for row in expect["tensors"]]:
        failures.append(f"{ours}: state dict keys/order differ")
    for name, dtype, shape, digest in expect["tensors"]:
        t = sd.get(name)
        if not isinstance(t, torch.Tensor):
            failures.append(f"{ours}[{name!r}]: missing or not a tensor")
            continue
        if DTYPES.get(t.dtype) != dtype or list(t.shape) != shape or hashlib.sha256(raw(t)).hexdigest() != digest:
            failures.append(f"{ours}[{name!r}]: {t.dtype} {list(t.shape)} does not match {dtype} {shape} / sha256")
    for key, value in expect.get("plain", {}).items():
        if plain(obj.get(key)) != value:
            failures.append(f"{ours}[{key!r}]: {obj.get(key)!r} vs {value!r}")


def plain(value):
    """JSON's view of a value: tuples become lists."""
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--pair", nargs=2, action="append", default=[], metavar=("OURS", "REFERENCE"))
    parser.add_argument("--expect", nargs=2, action="append", default=[], metavar=("OURS", "EXPECT_JSON"))
    args = parser.parse_args()
    for ours, reference in args.pair:
        check_pair(ours, reference)
    for ours, expect in args.expect:
        check_expect(ours, expect)
    checked = len(args.pair) + len(args.expect)
    if failures:
        print("\n".join(failures))
        print(f"FAILED: {len(failures)} mismatches in {checked} checkpoints (torch {torch.__version__})")
        sys.exit(1)
    print(f"OK: torch {torch.__version__} torch.load(weights_only=True) read {checked} checkpoints as expected")


if __name__ == "__main__":
    main()
