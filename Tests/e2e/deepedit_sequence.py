"""DeepEdit through the real monailabel.client.MONAILabelClient 0.8.5, as 3D Slicer drives it (spec section 7.2):
/info/ lists the model with type deepedit, a train job (POST /train/deepedit) runs to DONE and publishes, then the
SmartEdit click call for a multi-label DeepEdit model -- params {<label name>: [[i, j, k], ...] for every info label,
"label": current} plus the model config, ".nrrd" / "uint8" and client_id -- and the same call without clicks
(automatic segmentation). Exits non-zero on the first mismatch.

Usage: python deepedit_sequence.py http://127.0.0.1:PORT WORKDIR CASE_JSON
CASE_JSON: {"image": <datastore id>, "a": [i, j, k] centre of blob a, "b": [i, j, k] centre of blob b}
"""
import json
import sys
import time

import nrrd
import numpy as np
from monailabel.client import MONAILabelClient

from common import check, slicer_params

url, work, case_file = sys.argv[1], sys.argv[2], sys.argv[3]
case = json.load(open(case_file))
client = MONAILabelClient(url, client_id="user-xyz")


info = client.info()
model = info["models"].get("deepedit")
check(model is not None and model["type"] == "deepedit", "info lists deepedit with type deepedit")
check(isinstance(model["labels"], dict) and model["labels"].get("background") == 0, "deepedit labels are a name map")
check("deepedit" in info["trainers"], "info lists the deepedit trainer")

# Train as Slicer's Train button: trainer config with list options collapsed, plus overrides for a short run.
params = slicer_params(info["trainers"]["deepedit"]["config"])
params.update({"max_epochs": 20, "val_split": 0.2, "device": "cpu", "seed": 1})
started = time.time()
task = client.train_start("deepedit", params)
check(task["status"] == "SUBMITTED", "train_start returns a SUBMITTED task")
deadline = time.time() + 300
status = {}
while time.time() < deadline:
    status = client.train_status()
    if status["status"] in ("DONE", "ERROR", "STOPPED"):
        break
    time.sleep(0.3)
check(status.get("status") == "DONE", "the train job finished in %.1f s: %s" % (time.time() - started,
                                                                          json.dumps(status.get("details", [])[-3:])))
stats = client.info()["train_stats"]["deepedit"]
check(stats.get("total_time") and stats.get("best_metric", 0) > 0, "train_stats after the run: " + json.dumps(stats)[:200])

# SmartEdit click with DeepEdit multi-label: one key per info label, clicks only for the current one.
config = slicer_params(model["config"])
label_names = info["labels"]
clicks = {name: [] for name in label_names}
clicks["a"] = [case["a"]]
request = dict(config, **clicks)
request.update({"label": "a", "result_extension": ".nrrd", "result_dtype": "uint8"})
out, result = client.infer("deepedit", case["image"], request)
check(out and out.endswith(".nrrd"), "infer returns a multipart .nrrd label file")
check(result.get("label_names") == model["labels"], "result label_names is the model's label map")
check(set(result["latencies"]) >= {"pre", "infer", "invert", "post", "write", "total"}, "latencies")
data, header = nrrd.read(out)
check(data.dtype == np.uint8, "result_dtype uint8 honoured")
check(list(data.shape) == case["shape"], "label on the image grid: " + str(data.shape))
i, j, k = case["a"]
check(data[i, j, k] == 1, "the clicked voxel is labelled a (value 1)")
check(int((data == 1).sum()) > 20, "label a covers the blob, not one voxel")

# The same call with no clicks at all: automatic segmentation of every label.
request = dict(config, **{name: [] for name in label_names})
request.update({"label": "a", "result_extension": ".nrrd", "result_dtype": "uint8"})
out, result = client.infer("deepedit", case["image"], request)
data, _ = nrrd.read(out)
check(data[tuple(case["a"])] == 1 and data[tuple(case["b"])] == 2, "no clicks: both blobs segmented automatically")
print("DEEPEDIT SEQUENCE OK")
