#!/usr/bin/env python3
"""Independent expectations for TorchCheckpoint's fixture tests.

Reads every *.small.pt / *.small.ckpt.pt under fixtures/monai with CPython's own pickle machine (restricted
find_class, no torch) and Python's zipfile, makes each tensor view contiguous with numpy, and prints JSON:
per file, the non-tensor top-level entries and, per state-dict key in order, dtype, shape and the sha256 of
the contiguous little-endian bytes. The Swift tests compare our reader against this, so the expectations do
not come from the code under test.

Usage: scripts/checkpoint_expectations.py [fixtures/monai dir] > Tests/TorchCheckpointTests/Resources/fixture-expectations.json
"""
import collections
import hashlib
import json
import pathlib
import pickle
import sys
import zipfile

import numpy as np

STORAGES = {
    "FloatStorage": ("float32", 4), "DoubleStorage": ("float64", 8), "HalfStorage": ("float16", 2),
    "BFloat16Storage": ("bfloat16", 2), "LongStorage": ("int64", 8), "IntStorage": ("int32", 4),
    "ShortStorage": ("int16", 2), "CharStorage": ("int8", 1), "ByteStorage": ("uint8", 1),
    "BoolStorage": ("bool", 1),
}
UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


class Tensor:
    def __init__(self, dtype, shape, raw):
        self.dtype, self.shape, self.raw = dtype, shape, raw


def load(path):
    zf = zipfile.ZipFile(path)
    pkl = next(n for n in zf.namelist() if n.count("/") == 1 and n.endswith("/data.pkl"))
    prefix = pkl[: -len("data.pkl")]
    assert zf.read(prefix + "byteorder") == b"little"

    def rebuild(storage, offset, size, stride, requires_grad, hooks, *metadata):
        dtype, itemsize, raw = storage
        elements = np.frombuffer(raw, dtype=UINT[itemsize])
        view = np.lib.stride_tricks.as_strided(
            elements[offset:], shape=tuple(size), strides=tuple(s * itemsize for s in stride))
        return Tensor(dtype, list(size), np.ascontiguousarray(view).tobytes())

    class Restricted(pickle.Unpickler):
        def find_class(self, module, name):
            if (module, name) == ("collections", "OrderedDict"):
                return collections.OrderedDict
            if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
                return rebuild
            if module == "torch" and name in STORAGES:
                return name
            raise pickle.UnpicklingError(f"unexpected global {module}.{name}")

        def persistent_load(self, pid):
            kind, storage_type, key, location, numel = pid
            assert kind == "storage"
            dtype, itemsize = STORAGES[storage_type]
            raw = zf.read(prefix + "data/" + key)
            assert len(raw) >= numel * itemsize
            return (dtype, itemsize, raw[: numel * itemsize])

    with zf.open(pkl) as f:
        return Restricted(f).load()


def describe(state_dict):
    return [[k, t.dtype, t.shape, hashlib.sha256(t.raw).hexdigest(), len(t.raw)] for k, t in state_dict.items()]


def metadata(state_dict):
    """The state dict's `_metadata` (set through BUILD) as [module, version] pairs."""
    return [[k, v.get("version")] for k, v in getattr(state_dict, "_metadata", {}).items()]


def main():
    root = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else \
        pathlib.Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "monai"
    out = {}
    for path in sorted(root.glob("*.small*.pt")):
        obj = load(path)
        if all(isinstance(v, Tensor) for v in obj.values()):
            out[path.name] = {"wrapped_in": None, "extra": {}, "tensors": describe(obj), "metadata": metadata(obj)}
        else:
            extra = {k: v for k, v in obj.items() if k != "model"}
            out[path.name] = {"wrapped_in": "model", "extra": extra, "tensors": describe(obj["model"]),
                              "metadata": metadata(obj["model"])}
    # One tensor per line keeps the file short and its diffs readable.
    lines = ["{"]
    for i, (name, entry) in enumerate(out.items()):
        lines.append(f"  {json.dumps(name)}: {{")
        lines.append(f'    "wrapped_in": {json.dumps(entry["wrapped_in"])}, "extra": {json.dumps(entry["extra"])},')
        lines.append(f'    "metadata": {json.dumps(entry["metadata"])},')
        lines.append('    "tensors": [')
        rows = [f"      {json.dumps(row)}" for row in entry["tensors"]]
        lines.append(",\n".join(rows))
        lines.append("    ]")
        lines.append("  }" + ("," if i < len(out) - 1 else ""))
    lines.append("}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
