"""Training through the real monailabel.client.MONAILabelClient 0.8.5, as 3D Slicer's Train/Stop buttons use
it (spec section 7.2): train_start with the trainer's config (list options collapsed to their first entry),
train_status polling, a second start refused while busy, train_stop, and train_stats in /info/ afterwards.
Exits non-zero on the first mismatch.

Usage: python train_sequence.py http://127.0.0.1:PORT
"""
import sys
import time

from monailabel.client import MONAILabelClient
from monailabel.client.client import MONAILabelClientException

from common import check, slicer_params

url = sys.argv[1]
client = MONAILabelClient(url)


info = client.info()
model = "segmentation_spleen"
check(model in info["trainers"], "info lists the segmentation_spleen trainer")
config = info["trainers"][model]["config"]
params = slicer_params(config)
params["max_epochs"] = 500

check(client.train_status(check_if_running=True) is False, "train_status(check_if_running) is False while idle")
try:
    client.train_status()
    check(False, "train_status() fails before any task")
except MONAILabelClientException as e:
    check("No Train Tasks Found" in str(e.msg), "train_status() before any task: " + str(e.msg)[:70])

task = client.train_start(model, params)
check(task["status"] == "SUBMITTED", "train_start returns a SUBMITTED task")
check(task["request"]["model"] == model, "the task's request names the model")

try:
    client.train_start(model, params)
    check(False, "a second train_start is refused while busy")
except MONAILabelClientException as e:
    check("Already Running" in str(e.msg), "second train_start refused: " + str(e.msg)[:60])

deadline = time.time() + 300
status = {}
while time.time() < deadline:
    status = client.train_status()
    if status.get("progress", {}).get("epoch", 0) >= 2:
        break
    time.sleep(0.2)
check(status.get("status") == "RUNNING", "train_status reports RUNNING")
check(status.get("progress", {}).get("epoch", 0) >= 2, "epochs advance: " + str(status.get("progress")))
check(status["id"] == task["id"], "train_status() returns the latest task")
check(client.train_status(check_if_running=True) is True, "train_status(check_if_running) is True while running")

stopped = client.train_stop()
check(stopped["status"] == "STOPPED", "train_stop returns the task STOPPED")
check(len(stopped["details"]) > 0 and isinstance(stopped["details"][-1], str), "details[-1] exists (Slicer shows it)")

deadline = time.time() + 5
while client.train_status(check_if_running=True) and time.time() < deadline:
    time.sleep(0.1)
check(client.train_status(check_if_running=True) is False, "the job stopped within 5 s")
check(client.train_status()["status"] == "STOPPED", "train_status() reports STOPPED")
check(client.train_stop() is None, "train_stop with nothing running returns None")

stats = client.info()["train_stats"][model]
check(stats.get("current_epoch", 0) >= 1, "info train_stats populated: epoch " + str(stats.get("current_epoch")))
print("TRAIN SEQUENCE OK")
