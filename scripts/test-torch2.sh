#!/usr/bin/env bash
# Runs the backend and network tests against PyTorch 2.13's CPU libtorch instead of Debian's 1.13:
# a venv with torch==2.13.0+cpu (.build/torch2-venv), the backend built against it, and the TorchKit and
# network test subset with MONAILABEL_TORCH_BACKEND pointing at that backend. Expects `swift build --build-tests`
# to have run (scripts/test.sh does). Extra arguments go to `swift test`.
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0+cpu}"
VENV=.build/torch2-venv
if [ ! -x "$VENV/bin/python" ]; then python3 -m venv "$VENV"; fi
# pip's configured wheel folder has the CPU wheel; elsewhere add --index-url https://download.pytorch.org/whl/cpu.
"$VENV/bin/pip" install -q "$TORCH_SPEC"
TORCH_DIR="$("$VENV/bin/python" -c 'import os, torch; print(os.path.dirname(torch.__file__))')"
BACKEND="$(scripts/build-torch-backend.sh --torch "$TORCH_DIR" | tail -1)"
# The libtorch version check in TorchKitTests (BackendTests) reads MONAILABEL_EXPECT_TORCH.
EXPECT="$("$VENV/bin/python" -c 'import torch; print(torch.__version__.split("+")[0])')"
export MONAILABEL_TORCH_BACKEND="$BACKEND" MONAILABEL_EXPECT_TORCH="$EXPECT"
# TorchKit, the networks (SwinUNETR and UNETR included) against their PyTorch fixtures, the MONAI bundle fixture,
# the inference pipeline against MONAI's output, the briefly-trained DeepGrow/DeepEdit checks, and what --version
# and /info/ report; mixed precision (autocast and the gradient scaler: TorchKit's suites, the pipeline's bf16
# Dice, every app network under bf16, bf16 training and the scaler in the shared training step).
TESTS=(
    TorchKitTests 'MONAILabelTests\.NetworkTests' 'MONAILabelTests\.TransformerNetworkTests' 'MONAILabelTests\.BundleTests'
    'MONAILabelTests\.InferenceEngineTests' 'MONAILabelTests\.pipeline_' 'MONAILabelTests\.slidingWindow_'
    'MONAILabelTests\.argmaxOverChannels_' 'MONAILabelTests\.deepGrowPreAndPost_matchMONAI'
    'MONAILabelTests\.deepGrow3D_clickOnABlob' 'MONAILabelTests\.deepEdit_brieflyTrained'
    version_namesTheAPIAndLibtorch info_namesTheBackendsLibtorchAndDevices
    'MONAILabelTests\.trainLoop_bf16AutocastOnTheCPU' 'MONAILabelTests\.trainLoop_scalerOverflow'
    'MONAILabelTests\.dataParallel_oneRanksOverflow' 'MONAILabelTests\.bf16Autocast_fixtureNetwork'
)
FILTER="$(IFS='|'; echo "${TESTS[*]}")"
mkdir -p .build
swift test --skip-build --filter "$FILTER" "$@" 2>&1 | tee .build/test-torch2.log
