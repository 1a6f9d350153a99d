"""MONAI 1.4's side of scripts/bench/infer.sh: segmentation_spleen's pipeline on one image with the same network
(full-size UNet, untrained weights: timing only), under whichever torch runs this script, on BENCH_DEVICE (default
cpu; `cuda` for the GPU check, scripts/gpu-check/run.sh, where windows and the accumulated output stay on the GPU),
in float32 or, with BENCH_AMP=bf16, under bfloat16 autocast (the network stage; its output is cast back to float32,
as our server's `amp` does).

Prints one JSON line: the preprocessed shape, the network stage (sliding_window_inference, roi 160^3, overlap
0.25) and the whole pipeline (LoadImaged .. SaveImaged, as upstream 0.8.5's task runs it) cold and as the
median of the warm runs, and this process's peak RSS.
Usage: python monai_infer.py IMAGE THREADS WARM_RUNS
"""
import json
import os
import resource
import statistics
import sys
import tempfile
import time

import torch
from monai.inferers import sliding_window_inference
from monai.networks.nets import UNet
from monai.utils import optional_import
from monai.transforms import (Activationsd, AsDiscreted, Compose, EnsureChannelFirstd, Invertd,
                              KeepLargestConnectedComponentd, LoadImaged, Orientationd, SaveImaged,
                              ScaleIntensityd, ScaleIntensityRanged, Spacingd)

image, threads, warm = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ROI = tuple(int(v) for v in os.environ.get("BENCH_ROI", "160,160,160").split(","))
DEVICE = torch.device(os.environ.get("BENCH_DEVICE", "cpu"))
AMP = os.environ.get("BENCH_AMP", "")
if AMP not in ("", "bf16"):
    sys.exit(f"BENCH_AMP: {AMP!r} is neither empty nor bf16")
torch.set_num_threads(threads)
net = UNet(3, 1, 2, (16, 32, 64, 128, 256), (2, 2, 2, 2), num_res_units=2, norm="batch").eval().to(DEVICE)


def sync():
    """CUDA runs asynchronously: wait for the queued kernels before reading the clock."""
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)

pre = Compose([
    LoadImaged("image"), EnsureChannelFirstd("image"), Orientationd("image", axcodes="RAS"),
    Spacingd("image", pixdim=(1.0, 1.0, 1.0), mode="bilinear"),
    ScaleIntensityRanged("image", a_min=-57, a_max=164, b_min=0.0, b_max=1.0, clip=True),
    ScaleIntensityd("image", minv=-1.0, maxv=1.0),
])
out_dir = tempfile.mkdtemp()
# MONAI's largest-component filter needs scikit-image (or cuCIM for CUDA tensors); a host without them (the GPU
# check's bundle carries neither) runs the pipeline without it, which only makes MONAI's side faster.
LARGEST_CC = optional_import("skimage.measure")[1] or (DEVICE.type == "cuda" and optional_import("cucim.skimage")[1])
post = Compose([
    Activationsd("pred", softmax=True), AsDiscreted("pred", argmax=True),
    *([KeepLargestConnectedComponentd("pred", applied_labels=[1])] if LARGEST_CC else []),
    Invertd("pred", transform=pre, orig_keys="image", nearest_interp=True),
    SaveImaged("pred", output_dir=out_dir, output_postfix="seg", separate_folder=False, print_log=False),
])


def run():
    """One whole request; returns (network seconds, total seconds, preprocessed shape)."""
    start = time.perf_counter()
    d = pre({"image": image})
    x = d["image"].as_tensor()[None].float().to(DEVICE)
    with torch.no_grad(), torch.autocast(DEVICE.type, dtype=torch.bfloat16, enabled=AMP == "bf16"):
        sync()
        t0 = time.perf_counter()
        y = sliding_window_inference(x, ROI, 1, net, overlap=0.25, mode="constant", sw_device=DEVICE, device=DEVICE)
        y = y.float()
        sync()
        network = time.perf_counter() - t0
    d["pred"] = y[0]
    post(d)
    sync()
    return network, time.perf_counter() - start, tuple(x.shape[2:])


cold_net, cold_total, shape = run()
runs = [run() for _ in range(warm)]
print(json.dumps({
    "torch": torch.__version__.split("+")[0], "device": str(DEVICE), "shape": shape, "largest_cc": bool(LARGEST_CC),
    "precision": AMP or "fp32",
    "cold_network": cold_net, "cold_total": cold_total,
    "network": statistics.median(r[0] for r in runs), "total": statistics.median(r[1] for r in runs),
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
}))
for f in os.listdir(out_dir):
    os.remove(os.path.join(out_dir, f))
os.rmdir(out_dir)
