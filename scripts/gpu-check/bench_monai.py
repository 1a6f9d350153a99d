"""MONAI 1.4's side of the GPU check (scripts/gpu-check/run.sh) beside the server's: a DeepGrow 3D click, a DeepEdit
call and one segmentation_spleen training epoch, on the same device and torch, with the radiology app's networks at
full size (untrained weights: timing only) and the sizes of the app.json the server runs. segmentation_spleen
inference is scripts/bench/monai_infer.py's. Prints one JSON line: the network stage and the whole call (or epoch),
cold and the median of the warm runs.

    python bench_monai.py deepgrow3d|deepedit IMAGE APP_JSON DEVICE RUNS
    python bench_monai.py train STUDIES_DIR APP_JSON DEVICE PLAN_JSON

The pipelines are MONAI Label 0.8.5's radiology tasks (lib/infers/deepgrow.py, deepedit.py; lib/trainers/
segmentation_spleen.py) as MONAI 1.4 spells them; the images are read with nibabel (upstream's default reader for
NIfTI) and written back as upstream's tasks do.
"""
import glob
import json
import os
import statistics
import sys
import tempfile
import time

import monai
import numpy as np
import torch
from monai.apps.deepedit.transforms import (AddGuidanceFromPointsDeepEditd, AddGuidanceSignalDeepEditd,
                                            ResizeGuidanceMultipleLabelDeepEditd)
from monai.apps.deepgrow.transforms import (AddGuidanceFromPointsd, AddGuidanceSignald, ResizeGuidanced,
                                            RestoreLabeld, SpatialCropGuidanced)
from monai.data import DataLoader, Dataset, NibabelWriter
from monai.losses import DiceCELoss
from monai.networks.nets import BasicUNet, DynUNet, UNet
from monai.transforms import (Activationsd, AsDiscreted, Compose, CropForegroundd, EnsureChannelFirstd,
                              LoadImaged, NormalizeIntensityd, Orientationd, RandCropByPosNegLabeld,
                              RandShiftIntensityd, Resized, ScaleIntensityRanged, SelectItemsd, Spacingd, SpatialPadd,
                              SqueezeDimd, Transposed)

KIND = sys.argv[1]
DEVICE = torch.device(sys.argv[4])
APP = json.load(open(sys.argv[3]))["models"]
OUT = tempfile.mkdtemp()


def sync():
    """CUDA runs asynchronously: wait for the queued kernels before reading the clock."""
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


def write(label, affine):
    """The result file, as upstream's tasks write theirs."""
    writer = NibabelWriter()
    writer.set_data_array(np.asarray(label), channel_dim=None)
    writer.set_metadata({"affine": affine, "original_affine": affine}, resample=False)
    writer.write(os.path.join(OUT, "label.nii.gz"), verbose=False)


def deepgrow3d(image):
    cfg = APP["deepgrow_3d"]
    net = BasicUNet(3, 3, 1, tuple(cfg["network"]["features"])).eval().to(DEVICE)
    pre = Compose([
        LoadImaged("image", image_only=False),
        Transposed("image", indices=[2, 0, 1]),
        Spacingd("image", pixdim=[1.0, 1.0, 1.0], mode="bilinear"),
        AddGuidanceFromPointsd(ref_image="image", guidance="guidance", spatial_dims=3),
        EnsureChannelFirstd("image", channel_dim="no_channel"),
        SpatialCropGuidanced("image", guidance="guidance", spatial_size=cfg["spatial_size"]),
        Resized("image", spatial_size=cfg["model_size"], mode="area"),
        ResizeGuidanced(guidance="guidance", ref_image="image"),
        NormalizeIntensityd("image", subtrahend=208, divisor=388),
        AddGuidanceSignald(image="image", guidance="guidance"),
    ])
    post = Compose([Activationsd("pred", sigmoid=True), AsDiscreted("pred", threshold=0.5)])
    restore = RestoreLabeld("pred", ref_image="image", mode="nearest")
    shape = [int(v) for v in LoadImaged("image")({"image": image})["image"].shape]
    # The clicks scripts/bench/deepgrow.sh sends, scaled to this image.
    fg = [[shape[0] * 340 // 512, shape[1] * 230 // 512, shape[2] // 2]]
    bg = [[shape[0] * 100 // 512, shape[1] // 2, shape[2] // 2]]

    def call():
        d = pre({"image": image, "foreground": fg, "background": bg})
        x = torch.as_tensor(np.asarray(d["image"]), dtype=torch.float32)[None].to(DEVICE)
        with torch.no_grad():
            sync()
            t0 = time.perf_counter()
            y = net(x)
            sync()
            network = time.perf_counter() - t0
        d["pred"] = y[0]
        d = post(d)
        d["pred"] = d["pred"].cpu().numpy()
        d = restore(d)
        write(np.moveaxis(np.asarray(d["pred"]), 0, -1)[..., 0], d["image_meta_dict"]["original_affine"])
        return network

    return call


def deepedit(image):
    cfg = APP["deepedit"]
    n = cfg["network"]
    net = DynUNet(3, n["in_channels"], n["out_channels"], n["kernel_size"], n["strides"], n["upsample_kernel_size"],
                  norm_name="instance", deep_supervision=False, res_block=True).eval().to(DEVICE)
    labels = cfg["labels"]
    pre = Compose([
        LoadImaged("image", image_only=False),
        EnsureChannelFirstd("image"),
        Orientationd("image", axcodes="RAS"),
        ScaleIntensityRanged("image", a_min=-175, a_max=250, b_min=0.0, b_max=1.0, clip=True),
        AddGuidanceFromPointsDeepEditd(ref_image="image", guidance="guidance", label_names=labels),
        Resized("image", spatial_size=cfg["spatial_size"], mode="area"),
        ResizeGuidanceMultipleLabelDeepEditd(guidance="guidance", ref_image="image"),
        AddGuidanceSignalDeepEditd("image", guidance="guidance", number_intensity_ch=cfg.get("number_intensity_ch", 1)),
    ])
    post = Compose([Activationsd("pred", softmax=True), AsDiscreted("pred", argmax=True), SqueezeDimd("pred", dim=0)])
    shape = [int(v) for v in LoadImaged("image")({"image": image})["image"].shape]
    # scripts/bench/deepedit.sh's clicks for three labels, scaled to this image.
    def at(i, j, k):
        return [shape[0] * i // 512, shape[1] * j // 512, shape[2] * k // 120]
    clicks = {"spleen": [at(350, 230, 60), at(360, 240, 62)], "liver": [at(150, 260, 60)], "aorta": [at(256, 200, 60)]}

    def call():
        d = {"image": image, "label": "spleen", **{name: [] for name in labels if name != "background"}, **clicks}
        d = pre(d)
        x = torch.as_tensor(np.asarray(d["image"]), dtype=torch.float32)[None].to(DEVICE)
        with torch.no_grad():
            sync()
            t0 = time.perf_counter()
            y = net(x)
            sync()
            network = time.perf_counter() - t0
        d["pred"] = y[0]
        d = post(d)
        # upstream's Restored: back to the image's original grid (nearest).
        original = [int(v) for v in d["image_meta_dict"]["spatial_shape"]]
        pred = torch.nn.functional.interpolate(d["pred"][None, None].float(), size=original, mode="nearest")[0, 0]
        write(pred.to(torch.uint8).cpu().numpy(), d["image_meta_dict"]["original_affine"])
        return network

    return call


def infer(kind, image, runs):
    call = {"deepgrow3d": deepgrow3d, "deepedit": deepedit}[kind](image)

    def timed():
        t0 = time.perf_counter()
        network = call()
        sync()
        return network, time.perf_counter() - t0

    cold = timed()
    warm = [timed() for _ in range(runs)]
    return {"cold_network": cold[0], "cold_total": cold[1], "network": statistics.median(w[0] for w in warm),
            "total": statistics.median(w[1] for w in warm)}


def train(studies, plan):
    """One epoch of upstream's segmentation_spleen trainer over the cases the server trained on, with the server's
    plan (its "Plan:" line: target_spacing, spatial_size, num_samples, train_batch_size; and train_cases) so both
    sides do the same work. The cases are
    preprocessed before the clock starts (upstream caches them; so does the server's loader)."""
    cfg = APP["segmentation_spleen"]
    n = cfg["network"]
    images = sorted(glob.glob(os.path.join(studies, "*.nii.gz")))
    cases = [{"image": p, "label": os.path.join(studies, "labels", "final", os.path.basename(p))} for p in images]
    cases = [c for c in cases if os.path.exists(c["label"])]
    train_cases = cases[: plan["train_cases"]]
    keys = ("image", "label")
    cached = Compose([
        LoadImaged(keys), EnsureChannelFirstd(keys), Orientationd(keys, axcodes="RAS"),
        Spacingd(keys, pixdim=plan["target_spacing"], mode=("bilinear", "nearest")),
        ScaleIntensityRanged("image", a_min=-57, a_max=164, b_min=0.0, b_max=1.0, clip=True),
        CropForegroundd(keys, source_key="image"),
        # An image smaller than the crop is padded, as the server's loader does (RandCropByPosNegLabeld refuses it).
        SpatialPadd(keys, spatial_size=plan["spatial_size"]),
    ])
    random = Compose([
        RandCropByPosNegLabeld(keys, label_key="label", spatial_size=plan["spatial_size"], pos=1, neg=1,
                               num_samples=plan["num_samples"], image_key="image", image_threshold=0),
        RandShiftIntensityd("image", offsets=0.1, prob=0.5),
        SelectItemsd(keys),
    ])
    data = [cached(c) for c in train_cases]
    loader = DataLoader(Dataset(data, random), batch_size=plan["train_batch_size"], shuffle=True, num_workers=0)
    net = UNet(3, 1, 2, tuple(n["channels"]), tuple(n["strides"]), num_res_units=n["num_res_units"], norm="batch")
    net = net.to(DEVICE).train()
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4, weight_decay=1e-5)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, squared_pred=True, batch=True)
    torch.manual_seed(0)
    sync()
    start = time.perf_counter()
    network = 0.0
    iterations = 0
    for batch in loader:
        x, y = batch["image"].to(DEVICE), batch["label"].to(DEVICE)
        sync()
        t0 = time.perf_counter()
        optimizer.zero_grad()
        loss = loss_fn(net(x), y)
        loss.backward()
        optimizer.step()
        loss.item()
        sync()
        network += time.perf_counter() - t0
        iterations += 1
    return {"epoch": time.perf_counter() - start, "network": network, "iterations": iterations,
            "cases": len(train_cases)}


if KIND == "train":
    result = train(sys.argv[2], json.loads(sys.argv[5]))
else:
    result = infer(KIND, sys.argv[2], int(sys.argv[5]))
print(json.dumps({"kind": KIND, "device": str(DEVICE), "torch": torch.__version__, "monai": monai.__version__,
                  **result}))
