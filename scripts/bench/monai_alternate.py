"""scripts/bench/infer.sh THREADS alternate: our server's network stage (`latencies.infer`) and MONAI 1.4's
sliding_window_inference (same full-size untrained UNet, roi 160^3, overlap 0.25) on the same preprocessed volume and
torch threads, one after the other for ROUNDS rounds, so both sides see the same machine load (the sequential rows
of `full` favour whichever side runs while the load falls). Prints both lists, the medians and their ratio.
Usage: python monai_alternate.py IMAGE PORT ROUNDS THREADS (the server serves IMAGE as spleen_00)
"""
import json
import statistics
import subprocess
import sys
import time

import torch
from monai.inferers import sliding_window_inference
from monai.networks.nets import UNet
from monai.transforms import (Compose, EnsureChannelFirstd, LoadImaged, Orientationd, ScaleIntensityd,
                              ScaleIntensityRanged, Spacingd)

image, port, rounds, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)
net = UNet(3, 1, 2, (16, 32, 64, 128, 256), (2, 2, 2, 2), num_res_units=2, norm="batch").eval()
pre = Compose([
    LoadImaged("image"), EnsureChannelFirstd("image"), Orientationd("image", axcodes="RAS"),
    Spacingd("image", pixdim=(1.0, 1.0, 1.0), mode="bilinear"),
    ScaleIntensityRanged("image", a_min=-57, a_max=164, b_min=0.0, b_max=1.0, clip=True),
    ScaleIntensityd("image", minv=-1.0, maxv=1.0),
])
x = pre({"image": image})["image"].as_tensor()[None].float()


def monai():
    """MONAI's network stage on the preprocessed volume, in seconds."""
    with torch.no_grad():
        t = time.perf_counter()
        sliding_window_inference(x, (160, 160, 160), 1, net, overlap=0.25, mode="constant")
        return time.perf_counter() - t


def ours():
    """One request to our server (output=json); its network stage, in seconds."""
    out = subprocess.run(["curl", "-sf", "-X", "POST", "-F", "params={}",
                          f"http://127.0.0.1:{port}/infer/segmentation_spleen?image=spleen_00&output=json"],
                         capture_output=True, check=True).stdout
    return json.loads(out)["latencies"]["infer"]


# One of each first: both sides' first-call costs stay out of the rounds.
monai()
ours()
o, m = [], []
for _ in range(rounds):
    o.append(ours()); m.append(monai())
print(f"ours  {[round(v, 2) for v in o]} median {statistics.median(o):.3f} s")
print(f"MONAI {[round(v, 2) for v in m]} median {statistics.median(m):.3f} s")
print(f"network ours/MONAI: ratio of the medians {statistics.median(o) / statistics.median(m):.2f}, median of the "
      f"per-round ratios {statistics.median(a / b for a, b in zip(o, m)):.2f} (target <= 0.8); "
      f"load average {' '.join(open('/proc/loadavg').read().split()[:3])}")
