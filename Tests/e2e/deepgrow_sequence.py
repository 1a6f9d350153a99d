"""3D Slicer's DeepGrow click sequence (spec section 7.2) through the real monailabel.client.MONAILabelClient 0.8.5
against a running server whose deepgrow_2d / deepgrow_3d models were trained on blob volumes.
Exits non-zero on the first mismatch.

Usage: python deepgrow_sequence.py http://127.0.0.1:PORT WORKDIR CASE_JSON
CASE_JSON: {"image": datastore image id, "center": [i, j, k] inside the blob, "truth": blob label NIfTI path}
"""
import json
import sys

import nibabel as nib
import nrrd
import numpy as np

from monailabel.client import MONAILabelClient
from monailabel.client.client import MONAILabelClientException

from common import check, dice, slicer_params

url, work, case_file = sys.argv[1], sys.argv[2], sys.argv[3]
case = json.load(open(case_file))
image_id, (ci, cj, ck) = case["image"], case["center"]
truth = nib.load(case["truth"]).get_fdata() > 0
client = MONAILabelClient(url, client_id="user-xyz", tmpdir=work)


check(client.auth_enabled() is False, "auth probe reports auth disabled")
info = client.info()
check("config" not in info, "info has no 'config' key")
models = info["models"]
for name, dim in (("deepgrow_2d", 2), ("deepgrow_3d", 3)):
    check(models.get(name, {}).get("type") == "deepgrow", f"{name} is listed with type deepgrow")
    check(models[name].get("dimension") == dim, f"{name} has dimension {dim} (Slicer's 2D switch)")
    check("spleen" in models[name].get("labels", []), f"{name} labels name the segment")


def config_params(model):
    return slicer_params(models[model]["config"])


# 3D click: the whole click list of the segment, IJK voxel indices, result as NRRD bytes.
params = dict(config_params("deepgrow_3d"), label="spleen", foreground=[[ci, cj, ck]], background=[],
              result_extension=".nrrd", result_dtype="uint8")
out, result = client.infer("deepgrow_3d", image_id, params)
check(out and out.endswith(".nrrd"), "deepgrow_3d answers a multipart .nrrd label")
check(result.get("label_names") == models["deepgrow_3d"]["labels"], "result label_names are the model's labels")
check(set(result["latencies"]) >= {"pre", "infer", "invert", "post", "write", "total"}, "latencies")
mask, header = nrrd.read(out)
check(mask.shape == truth.shape, "label has the image's shape (pynrrd)")
check(mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1}, "binary uint8 mask")
d3 = dice(mask > 0, truth)
check(d3 >= 0.6, f"3D click mask overlaps the blob (Dice {d3:.3f})")
check(mask[ci, cj, ck] == 1, "the clicked voxel is in the mask")

# A corrective background click plus Slicer's ROI widget (upstream ignores the ROI for DeepGrow).
params.update(background=[[1, 1, 1]], roi=[0, 32, 0, 32, 0, 16])
out, _ = client.infer("deepgrow_3d", image_id, params)
mask2, _ = nrrd.read(out)
check(mask2[1, 1, 1] == 0 and dice(mask2 > 0, truth) >= 0.6, "background click and roi accepted")

# 2D click: only the clicks on the current slice, plus "slice".
params = dict(config_params("deepgrow_2d"), label="spleen", foreground=[[ci, cj, ck]], background=[], slice=ck,
              result_extension=".nrrd", result_dtype="uint8")
out, result = client.infer("deepgrow_2d", image_id, params)
mask, _ = nrrd.read(out)
check(mask.shape == truth.shape, "2D result is a whole volume")
others = np.delete(mask, ck, axis=2)
check(others.sum() == 0, "2D result fills only the clicked slice")
d2 = dice(mask[:, :, ck] > 0, truth[:, :, ck])
check(d2 >= 0.6, f"2D click mask overlaps the blob on its slice (Dice {d2:.3f})")

# No clicks at all: a clear client error (422), not a server crash.
try:
    client.infer("deepgrow_3d", image_id, dict(config_params("deepgrow_3d"), label="spleen", foreground=[],
                                                background=[]))
    check(False, "a click-less request is refused")
except MONAILabelClientException as e:
    check("422" in e.msg and "click" in e.msg, "a click-less request is refused with 422")
check(client.info()["models"]["deepgrow_3d"]["type"] == "deepgrow", "server still serving after the refusal")

print("DEEPGROW SEQUENCE OK")
