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
# MONAI 1.4 (pure Python; it needs only numpy and torch) scripts the SegResNet/DynUNet fixtures below. From PyPI.
"$VENV/bin/pip" install -q --no-deps numpy monai==1.4.0
TORCH_DIR="$("$VENV/bin/python" -c 'import os, torch; print(os.path.dirname(torch.__file__))')"
BACKEND="$(scripts/build-torch-backend.sh --torch "$TORCH_DIR" | tail -1)"
# The libtorch version check in TorchKitTests (BackendTests) reads MONAILABEL_EXPECT_TORCH.
EXPECT="$("$VENV/bin/python" -c 'import torch; print(torch.__version__.split("+")[0])')"
export MONAILABEL_TORCH_BACKEND="$BACKEND" MONAILABEL_EXPECT_TORCH="$EXPECT"
# torch.jit.script'ed SegResNet/DynUNet (../shared has traced ones only), remade when the script or torch changes.
SCRIPTED=.build/scripted-fixtures
if [ ! -f "$SCRIPTED/manifest.json" ] || [ scripts/fixtures/make_scripted_fixtures.py -nt "$SCRIPTED/manifest.json" ] \
        || ! grep -q "\"torch\": \"$EXPECT" "$SCRIPTED/manifest.json"; then
    "$VENV/bin/python" scripts/fixtures/make_scripted_fixtures.py "$SCRIPTED"
fi
export MONAILABEL_SCRIPTED_FIXTURES="$PWD/$SCRIPTED"
# TorchKit (the scripted fixtures included), the networks (SwinUNETR and UNETR included) against their PyTorch
# fixtures, the MONAI bundle fixture and its train.json first step, the inference pipeline against MONAI's output
# (and computing only the windows' kept boxes),
# the briefly-trained DeepGrow/DeepEdit checks, what --version and /info/ report, `monailabel selftest`'s checks
# on the CPU, mixed precision (autocast and the gradient scaler: TorchKit's suites, the pipeline's bf16 Dice, every
# app network under bf16, bf16 training and the scaler in the shared training step), and the out-of-memory
# classification and retry (TorchKitTests.DeviceMemoryTests, DevicePlacementTests: each libtorch words its
# allocator's failure differently).
TESTS=(
    TorchKitTests 'MONAILabelTests\.NetworkTests' 'MONAILabelTests\.TransformerNetworkTests' 'MONAILabelTests\.BundleTests'
    'MONAILabelTests\.BundleTrainTests'
    'MONAILabelTests\.InferenceEngineTests' 'MONAILabelTests\.OutputRegionTests' 'MONAILabelTests\.pipeline_' 'MONAILabelTests\.slidingWindow_'
    'MONAILabelTests\.argmaxOverChannels_' 'MONAILabelTests\.deepGrowPreAndPost_matchMONAI'
    'MONAILabelTests\.deepGrow3D_clickOnABlob' 'MONAILabelTests\.deepEdit_brieflyTrained'
    'MONAILabelTests\.DevicePlacementTests'
    version_namesTheAPIAndLibtorch info_namesTheBackendsLibtorchAndDevices 'MONAILabelTests\.SelfTestTests'
    'MONAILabelTests\.trainLoop_bf16AutocastOnTheCPU' 'MONAILabelTests\.trainLoop_scalerOverflow'
    'MONAILabelTests\.dataParallel_oneRanksOverflow' 'MONAILabelTests\.bf16Autocast_fixtureNetwork'
)
FILTER="$(IFS='|'; echo "${TESTS[*]}")"
mkdir -p .build
swift test --skip-build --filter "$FILTER" "$@" 2>&1 | tee .build/test-torch2.log
