#!/usr/bin/env python3
"""Writes Tests/TorchCheckpointTests/Resources/torch-views.pt and its expectations with real PyTorch.

The checkpoint holds what the MONAI fixtures do not: every dtype TorchCheckpoint supports, non-contiguous
views (transposes, slices with offsets, expanded strides), tensors sharing one storage, a Parameter, a 0-d
tensor, an empty tensor, and nested non-tensor values. Expectations (shape, dtype, sha256 of the contiguous
little-endian bytes) come from PyTorch itself. Needs torch (Debian's python3-torch 1.13 is enough):

    /usr/bin/python3 scripts/make_torch_view_fixture.py
"""
import collections
import hashlib
import json
import pathlib

import torch

out_dir = pathlib.Path(__file__).resolve().parents[1] / "Tests" / "TorchCheckpointTests" / "Resources"
torch.manual_seed(0)

base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
tensors = collections.OrderedDict()
tensors["transposed"] = base.t()
tensors["row_slice"] = base[1:3]
tensors["column_slice"] = base[:, 2:5]
tensors["step_slice"] = base[::2, 1::3]
tensors["shares_base"] = base
tensors["expanded"] = torch.tensor([1.5, -2.5, 3.25]).unsqueeze(0).expand(2, 3)
tensors["scalar"] = torch.tensor(3.5, dtype=torch.float64)
tensors["empty"] = torch.zeros(0, 3)
tensors["parameter"] = torch.nn.Parameter(torch.randn(2, 2))
tensors["float64"] = torch.randn(3, 2, dtype=torch.float64).t()
tensors["float16"] = torch.randn(5).half()
tensors["bfloat16"] = torch.randn(2, 3).bfloat16().t()
tensors["int64"] = torch.tensor([-(2 ** 40), 7, 2 ** 62])
tensors["int32"] = torch.tensor([[-5, 6], [7, -8]], dtype=torch.int32).t()
tensors["int16"] = torch.tensor([-300, 300], dtype=torch.int16)
tensors["int8"] = torch.tensor([-128, 127, 0], dtype=torch.int8)
tensors["uint8"] = torch.tensor([0, 200, 255], dtype=torch.uint8)
tensors["bool"] = torch.tensor([True, False, True])

checkpoint = {
    "tensors": tensors,
    "epoch": 7,
    "big": 2 ** 40,
    "negative": -3,
    "name": "spleen",
    "flags": [True, False, None],
    "shape": (1, 2, 3, 4, 5),
}
path = out_dir / "torch-views.pt"
torch.save(checkpoint, path)


def raw(t):
    t = t.detach().contiguous()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    return t.numpy().tobytes()


names = {torch.float32: "float32", torch.float64: "float64", torch.float16: "float16", torch.bfloat16: "bfloat16",
         torch.int64: "int64", torch.int32: "int32", torch.int16: "int16", torch.int8: "int8",
         torch.uint8: "uint8", torch.bool: "bool"}
expectations = {
    "torch": torch.__version__,
    "tensors": [[k, names[t.dtype], list(t.shape), hashlib.sha256(raw(t)).hexdigest()] for k, t in tensors.items()],
}
(out_dir / "torch-views.json").write_text(json.dumps(expectations, indent=1) + "\n")
print(f"wrote {path} with torch {torch.__version__}")
