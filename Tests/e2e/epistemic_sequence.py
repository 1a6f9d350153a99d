"""Epistemic active learning through the real MONAI Label 0.8.5 client: /info/ lists the strategy, the server
scores at start-up in a background job, an explicit POST /scoring/epistemic runs as a job (polled with
GET /scoring/), then next_sample serves the image the model is least sure of.

usage: epistemic_sequence.py SERVER_URL EXPECTED_ID
"""
import sys
import time

import requests
from monailabel.client import MONAILabelClient

server, expected = sys.argv[1], sys.argv[2]
client = MONAILabelClient(server)

info = client.info()
assert "epistemic" in info["strategies"], info["strategies"]
assert "epistemic" in info["scoring"], info["scoring"]



def wait_for_scoring():
    deadline = time.time() + 300
    while True:
        status = requests.get(f"{server}/scoring/", timeout=60).json()
        if status["status"] in ("DONE", "ERROR", "STOPPED"):
            return status
        assert time.time() < deadline, status
        time.sleep(0.2)


# Auto-update-scoring (on by default) queued a job at start-up: nothing was scored with this model yet.
startup = wait_for_scoring()
assert startup["request"]["method"] == "epistemic" and startup["status"] == "DONE", startup

# An explicit run: a background job that finds every image already scored with the current model.
r = requests.post(f"{server}/scoring/epistemic", json={}, timeout=60)
assert r.status_code == 200, r.text
job = r.json()
assert job["status"] == "SUBMITTED", job
status = wait_for_scoring()
assert status["id"] == job["id"] and status["status"] == "DONE", status
assert any("Skipped = 3" in line for line in status["details"]), status["details"]

sample = client.next_sample("epistemic", {})
assert sample["id"] == expected, sample
assert isinstance(sample["epistemic_entropy"], float), sample
assert sample["epistemic_ts"] > 0, sample
# Just served: another call must pick a different image.
again = client.next_sample("epistemic", {})
assert again["id"] != expected, again
print("EPISTEMIC SEQUENCE OK", sample["id"], sample["epistemic_entropy"])
