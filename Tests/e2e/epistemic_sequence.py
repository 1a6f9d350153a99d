"""Epistemic active learning through the real MONAI Label 0.8.5 client: /info/ lists the strategy, a scoring
job runs in the background (POST /scoring/epistemic, polled with GET /scoring/), then next_sample serves the
image the model is least sure of.

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

r = requests.post(f"{server}/scoring/epistemic", json={})
assert r.status_code == 200, r.text
job = r.json()
assert job["status"] == "SUBMITTED", job

deadline = time.time() + 90
while True:
    status = requests.get(f"{server}/scoring/").json()
    if status["status"] in ("DONE", "ERROR", "STOPPED"):
        break
    assert time.time() < deadline, status
    time.sleep(0.2)
assert status["id"] == job["id"] and status["status"] == "DONE", status

sample = client.next_sample("epistemic", {})
assert sample["id"] == expected, sample
assert isinstance(sample["epistemic_entropy"], float), sample
assert sample["epistemic_ts"] > 0, sample
# Just served: another call must pick a different image.
again = client.next_sample("epistemic", {})
assert again["id"] != expected, again
print("EPISTEMIC SEQUENCE OK", sample["id"], sample["epistemic_entropy"])
