"""Sign-in with auth on, through the real monailabel.client.MONAILabelClient 0.8.5: the auth probe, /auth/token,
then a short Slicer-like sequence as an annotator, and the refusals a client sees without a token or role.

Usage: python auth_sequence.py http://127.0.0.1:PORT WORKDIR USERNAME PASSWORD
"""
import os
import sys

from monailabel.client import MONAILabelClient
from monailabel.client.client import MONAILabelClientException

from common import check

url, work, username, password = sys.argv[1:5]
client = MONAILabelClient(url, client_id="user-xyz", tmpdir=work)

check(client.auth_enabled() is True, "auth probe reports auth enabled")
try:
    client.info()
    check(False, "info without a token is refused")
except MONAILabelClientException as e:
    check(e.status_code == 401, f"info without a token -> 401 (got {e.status_code})")

try:
    client.auth_token(username, password + "-wrong")
    check(False, "a wrong password is refused")
except MONAILabelClientException as e:
    check(e.status_code == 401, f"wrong password -> 401 (got {e.status_code})")

token = client.auth_token(username, password)
check(token.get("access_token") and token.get("token_type", "").lower() == "bearer", "auth_token returns a bearer token")
client.update_auth(token)
check(client.auth_valid_token() is True, "token/valid accepts the token")


# The 0.8.5 client's http_method adds content-type and content-length to its shared headers dict whenever a request
# has a body (it copies the dict only when it is empty, i.e. with auth off), so after the first POST every GET and
# DELETE declares a body it never sends. Uvicorn answers without reading it, and so must the server: nothing here
# resets the headers between calls.


info = client.info()
check("models" in info and "datastore" in info, "info with the token")
strategy = list(info["strategies"].keys())[0]
sample = client.next_sample(strategy, {})
check(sample.get("id"), "next_sample returned an id")
image_id = sample["id"]

label_path = os.path.join(work, "auth_label.nii.gz")
with open(label_path, "wb") as f:
    f.write(open(os.path.join(work, "studies", "labels", "final", sorted(os.listdir(os.path.join(work, "studies", "labels", "final")))[0]), "rb").read())
saved = client.save_label(image_id, label_path, params={"label_info": [{"name": "spleen", "idx": 1}]})
check(saved.get("label") == image_id, "save_label as annotator")
objects = client.datastore()["objects"]
check(objects[image_id]["labels"]["final"]["info"].get("user") == username, "the label records who saved it")

# Training needs admin, which this account does not have.
try:
    client.train_start("segmentation_spleen", {})
    check(False, "train as annotator is refused")
except MONAILabelClientException as e:
    # train_start raises without a status code; the message carries it.
    check("Status: 403" in e.msg and "monailabel-admin" in e.msg, f"train as annotator -> 403 naming the role ({e.msg})")

print("AUTH SEQUENCE OK")
