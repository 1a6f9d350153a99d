"""What libtorch's own graph optimisations give MONAI's full-size spleen UNet (16-32-64-128-256, BatchNorm, PReLU,
untrained weights) on one 160^3 window on the CPU, under whichever torch runs this script: eager contiguous (what
MONAI and upstream's server run), eager channels-last 3D, TorchScript (traced) frozen with `optimize_for_inference`
(BatchNorm folding, oneDNN layouts: issue 22 asked whether it is worth calling from C++), and the same on a
channels-last input. Prints one JSON line: the median seconds per window of each and the torch version.
Usage: python monai_graph_modes.py THREADS RUNS
"""
import json
import statistics
import sys
import time

import torch
from monai.networks.nets import UNet

threads, runs = int(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(threads)
torch.manual_seed(0)
net = UNet(3, 1, 2, (16, 32, 64, 128, 256), (2, 2, 2, 2), num_res_units=2, norm="batch").eval()
x = torch.randn(1, 1, 160, 160, 160)
x_cl = x.contiguous(memory_format=torch.channels_last_3d)


def median_seconds(f, inp):
    with torch.no_grad():
        f(inp)  # first call: oneDNN primitives, TorchScript profiling runs
        f(inp)
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            f(inp)
            times.append(time.perf_counter() - t)
    return statistics.median(times)


with torch.no_grad():
    frozen = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(net, x[:, :, :32, :32, :32])))
    reference = net(x)
    assert (frozen(x) - reference).abs().max().item() < 1e-3, "the frozen graph changed the output"
net_cl = UNet(3, 1, 2, (16, 32, 64, 128, 256), (2, 2, 2, 2), num_res_units=2, norm="batch").eval()
net_cl.load_state_dict(net.state_dict())
net_cl = net_cl.to(memory_format=torch.channels_last_3d)
print(json.dumps({
    "torch": torch.__version__.split("+")[0], "threads": threads, "runs": runs,
    "eager": median_seconds(net, x), "eager_channels_last": median_seconds(net_cl, x_cl),
    "frozen_optimized": median_seconds(frozen, x), "frozen_optimized_channels_last_input": median_seconds(frozen, x_cl),
}))
