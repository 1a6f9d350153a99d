"""3D Slicer's scribbles call (spec section 7.2), driven through the real monailabel.client.MONAILabelClient
0.8.5 against a running server, for every scribbles method /info/ lists. Exits non-zero on the first mismatch.

Slicer exports all segments as one labelmap (segment i -> value i + 1) and sends it as the `label` file part
with params = method config (first list elements) + "roi" + "label_info" + "selected_label_name"; the result
comes back as .nrrd/uint8 and is merged into the selected segment.

Usage: python slicer_scribbles.py http://127.0.0.1:PORT WORKDIR IMAGE_ID
(IMAGE_ID must have a `final` label: it is the ground truth the strokes are drawn from.)
"""
import os
import sys
import urllib.request

import nibabel as nib
import nrrd
import numpy as np
from monailabel.client import MONAILabelClient

from common import check, dice, slicer_params

url, work, image_id = sys.argv[1], sys.argv[2], sys.argv[3]
# Results go to the work folder, as Slicer keeps them in its own temp folder: the client saves each one
# under the server's temp file name, and with client and server sharing /tmp the server's clean-up of its
# own copy would delete the client's.
client = MONAILabelClient(url, tmpdir=os.path.join(work, "client"), client_id="user-xyz")


def download(path, name):
    target = os.path.join(work, name)
    with urllib.request.urlopen(url + path, timeout=120) as r:
        open(target, "wb").write(r.read())
    return nib.load(target)


def shifted(a, axis, step):
    out = np.zeros_like(a)
    src = [slice(None)] * a.ndim
    dst = [slice(None)] * a.ndim
    if step > 0:
        src[axis], dst[axis] = slice(None, -step), slice(step, None)
    else:
        src[axis], dst[axis] = slice(-step, None), slice(None, step)
    out[tuple(dst)] = a[tuple(src)]
    return out


def erode(a):
    out = a.copy()
    for axis in (0, 1):
        out &= shifted(a, axis, 1) & shifted(a, axis, -1)
    return out


def dilate(a):
    out = a.copy()
    for axis in range(a.ndim):
        out |= shifted(a, axis, 1) | shifted(a, axis, -1)
    return out


check(client.auth_enabled() is False, "auth probe reports auth disabled")
info = client.info()
methods = [m for m, v in info["models"].items() if v["type"] == "scribbles"]
check({"Histogram+GraphCut", "ISeg+GraphCut", "Scribbles+GeoS"} <= set(methods), f"info lists the scribbles methods {methods}")

image = download(f"/datastore/image?image={image_id}", "image.nii.gz")
truth = np.asarray(download(f"/datastore/label?label={image_id}&tag=final", "truth.nii.gz").dataobj) > 0
ct = np.asarray(image.dataobj)
check(truth.any() and truth.shape == ct.shape, "ground truth label downloaded")

# Slicer's segments: the info labels, then the two scribbles segments, foreground first here so that the
# values differ from the server's defaults (background 2, foreground 3) and only label_info can tell them.
segments = list(info["labels"]) + ["foreground_scribbles", "background_scribbles"]
label_info = [{"name": s, "id": i + 1} for i, s in enumerate(segments)]
fg_value = segments.index("foreground_scribbles") + 1
bg_value = segments.index("background_scribbles") + 1
i_idx, j_idx, k_idx = np.indices(ct.shape)
fg = erode(erode(truth)) & (j_idx % 3 == 0)
far = truth.copy()
for _ in range(3):
    far = dilate(far)
bg = ~far & (ct > -500) & ((i_idx % 5 == 0) | (j_idx % 5 == 0))
check(fg.any() and bg.any(), "foreground and background strokes drawn")
labelmap = np.zeros(ct.shape, dtype=np.uint8)
labelmap[truth] = segments.index("spleen") + 1
labelmap[fg] = fg_value
labelmap[bg] = bg_value
scribbles_path = os.path.join(work, "scribbles.nii.gz")
nib.save(nib.Nifti1Image(labelmap, image.affine), scribbles_path)


def run(method, roi):
    params = slicer_params(info["models"][method]["config"])
    params.update({"roi": roi, "label_info": label_info, "selected_label_name": "spleen",
                   "result_extension": ".nrrd", "result_dtype": "uint8"})
    out, result = client.infer(method, image_id, params, label_in=scribbles_path)
    check(out and out.endswith(".nrrd"), f"{method}: multipart answer with a .nrrd label")
    data, header = nrrd.read(out)
    check(tuple(data.shape) == ct.shape and data.dtype == np.uint8, f"{method}: uint8 label on the image's grid")
    lps = np.diag([-1, -1, 1]) @ image.affine[:3, :3]
    check(np.allclose(np.array(header["space directions"], dtype=float).T, lps, atol=1e-4),
          f"{method}: NRRD space directions are the image's (LPS)")
    check(set(np.unique(data)) <= {0, 1}, f"{method}: the result is a 0/1 mask for the selected segment")
    check(len(result.get("bbox", [])) == 6, f"{method}: bbox in the result params")
    check("label_names" in result and "latencies" in result, f"{method}: label_names and latencies")
    mask = data > 0
    check(mask[fg].all(), f"{method}: every foreground stroke is foreground")
    check(not mask[bg].any(), f"{method}: no background stroke is foreground")
    return mask


# A sanity bar for the wire (swapped scribble values or a misplaced result land far below it); the quality
# bars (Dice >= 0.9) are in the Swift unit tests on finer grids than this 32 x 32 x 16 demo volume.
for method in ("Histogram+GraphCut", "Scribbles+GeoS"):
    d = dice(run(method, []), truth)
    check(d >= 0.8, f"{method}: Dice {d:.3f} against the ground truth")

# ISeg+GraphCut refines the segmentation model's prediction (here whatever its weights say) with the strokes;
# an ROI box around the spleen, as Slicer's ROI widget sends it, leaves everything outside background.
run("ISeg+GraphCut", [])
nz = np.nonzero(truth)
roi = []
for axis in range(3):
    roi += [int(max(0, nz[axis].min() - 3)), int(min(ct.shape[axis], nz[axis].max() + 4))]
mask = run("ISeg+GraphCut", roi)
inside = np.zeros(ct.shape, dtype=bool)
inside[roi[0]:roi[1], roi[2]:roi[3], roi[4]:roi[5]] = True
check(not mask[~inside].any(), "ISeg+GraphCut: nothing outside the ROI")

print("SLICER SCRIBBLES OK")
