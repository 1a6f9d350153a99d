"""3D Slicer's MONAILabel plugin call sequence (spec section 7.2), driven through the real
monailabel.client.MONAILabelClient 0.8.5 against a running server. Exits non-zero on the first mismatch.

Usage: python slicer_sequence.py http://127.0.0.1:PORT WORKDIR
"""
import json
import os
import sys
import urllib.parse
import urllib.request

from monailabel.client import MONAILabelClient
from monailabel.client.client import MONAILabelClientException

from common import check, slicer_params

url, work = sys.argv[1], sys.argv[2]
# Results go to WORKDIR: in the default /tmp they would share names (and deletion) with the server's temp files.
client = MONAILabelClient(url, client_id="user-xyz", tmpdir=work)


# Every logical operation starts with the auth probe; any non-200 means auth is disabled.
check(client.auth_enabled() is False, "auth probe reports auth disabled")

info = client.info()
check("config" not in info, "info has no 'config' key (Slicer refuses such servers)")
for key in ("name", "description", "version", "labels", "models", "trainers", "strategies", "scoring",
            "train_stats", "datastore"):
    check(key in info, f"info has '{key}'")
total = info["datastore"]["total"]
completed = info["datastore"]["completed"]

# Next sample with the first strategy, as Slicer does (strategy config + client_id).
strategy = list(info["strategies"].keys())[0]
sample = client.next_sample(strategy, {})
check(sample.get("id"), "next_sample returned an id")
check(sample.get("name", "").endswith(".nii.gz"), "next_sample name carries the real extension")
image_id = sample["id"]

# Slicer downloads the image when the path is not readable locally.
with urllib.request.urlopen(f"{url}/datastore/image?image={image_id}", timeout=120) as r:
    data = r.read()
    cd = r.headers.get("content-disposition", "")
check(data[:2] == b"\x1f\x8b", "downloaded image is gzip NIfTI")
check(f'filename="{image_id}.nii.gz"' in cd, "download names the file")

# The 'original label' step: datastore listing, then a label download that may 404 (errors ignored by Slicer).
ds = client.datastore()
check(image_id in ds["objects"], "datastore lists the sample")
try:
    client.download_label(image_id, "original")
except MONAILabelClientException:
    pass

# Save: labelmap file + label_info params, no tag (-> final).
label_path = os.path.join(work, "label.nii.gz")
with open(label_path, "wb") as f:
    f.write(data)
saved = client.save_label(image_id, label_path, params={"label_info": [{"name": "spleen", "idx": 1}],
                                                          "model": "segmentation_spleen"})
check(saved.get("image") == image_id and saved.get("label") == image_id, "save_label answers image and label ids")
info2 = client.info()
check(info2["datastore"]["completed"] == completed + 1, "completed count went up after the save")
ds = client.datastore()
final_info = ds["objects"][image_id]["labels"]["final"]["info"]
check(final_info.get("label_info") == [{"name": "spleen", "idx": 1}], "label_info params stored with the label")
check(final_info.get("client_id") == "user-xyz", "client_id injected by the client is stored")

# Label download through the client (needs content-disposition).
path = client.download_label(image_id, "final")
check(path and os.path.getsize(path) == len(data), "download_label returns the saved label")

# Local volume flow: upload through the deprecated PUT /datastore/ route.
up = client.upload_image(label_path, image_id="local_volume", params={"source": "slicer"})
check(up.get("image") == "local_volume", "upload_image stores the volume")
check(client.info()["datastore"]["total"] == total + 1, "total went up after the upload")

# Session fallback.
sess = client.create_session(label_path, params={"client_id": "user-xyz"})
sid = sess.get("session_id")
check(sid, "create_session returns a session id")
check(client.get_session(sid).get("name") == sid, "get_session finds it")
check(client.remove_session(sid).get("name") == sid, "remove_session removes it")
try:
    client.get_session(sid)
    check(False, "a removed session is gone")
except MONAILabelClientException:
    check(True, "a removed session is gone")

# Auto segmentation, as Slicer sends it: model config (first list elements) + result options + client_id.
model = next(iter(info["models"]), None)
if model:
    params = slicer_params(info["models"][model]["config"])
    import nibabel as nib
    import nrrd
    import numpy as np
    with urllib.request.urlopen(f"{url}/datastore/image?image={image_id}", timeout=120) as r:
        image_file = os.path.join(work, "image.nii.gz")
        open(image_file, "wb").write(r.read())
    src = nib.load(image_file)
    for ext in (".nrrd", ".nii.gz"):
        out, result = client.infer(model, image_id, dict(params, result_extension=ext, result_dtype="uint8"))
        check(out and out.endswith(ext), f"infer returns a multipart {ext} label file")
        check(isinstance(result.get("label_names"), (dict, list)), "infer params carry label_names")
        check(set(result["latencies"]) >= {"pre", "infer", "invert", "post", "write", "total"}, "latencies")
        if ext == ".nii.gz":
            lab = nib.load(out)
            check(lab.shape == src.shape, "NIfTI label has the image's shape")
            check(np.allclose(lab.affine, src.affine, atol=1e-4), "NIfTI label has the image's affine (nibabel)")
            check(lab.get_data_dtype() == np.uint8, "result_dtype uint8 honoured")
        else:
            data, header = nrrd.read(out)
            check(tuple(data.shape) == src.shape, "NRRD label has the image's shape (pynrrd)")
            lps = np.diag([-1, -1, 1]) @ src.affine[:3, :3]
            check(np.allclose(np.array(header["space directions"], dtype=float).T, lps, atol=1e-4),
                  "NRRD space directions are the image's (LPS)")
    # JSON-only output and saving the label under a tag.
    req = urllib.request.Request(f"{url}/infer/{model}?image={image_id}&output=json", method="POST",
                                 data=b"params=" + urllib.parse.quote(json.dumps({"save_label": True, "label_tag": "original"})).encode(),
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    with urllib.request.urlopen(req, timeout=120) as r:
        check("label_names" in json.loads(r.read()), "output=json answers the result JSON")
    check("original" in client.datastore()["objects"][image_id]["labels"], "save_label stored an 'original' label")
    req = urllib.request.Request(f"{url}/infer/{model}?image={image_id}&output=image", method="POST")
    with urllib.request.urlopen(req, timeout=120) as r:
        body, cd = r.read(), r.headers.get("content-disposition", "")
    check(body[:2] == b"\x1f\x8b" and cd.endswith('.nii.gz"'), "output=image answers the label file (input's extension)")

# Training status probe as every Slicer GUI refresh does: non-200 means not running.
check(client.train_status(check_if_running=True) is False, "train_status(check_if_running) says not running")

# Model download (Slicer's model panel): 404 until a model file exists.
try:
    with urllib.request.urlopen(f"{url}/model/segmentation_spleen", timeout=120) as r:
        check(r.status == 200, "model download")
except urllib.error.HTTPError as e:
    check(e.code == 404, "model download without weights answers 404")

print("SLICER SEQUENCE OK")
