#!/usr/bin/env bash
# Regenerates sample-apps/demo/weights/pretrained_segmentation_spleen.pt, the demo's small spleen model, with this
# project's own trainer: 16 labelled synthetic studies (the generator behind `monailabel datasets`, cases 0-15),
# the demo app's train settings (48^3 crops, AdamW 3e-3, 15 epochs; 80/20 split, the best validation Dice kept).
# Under an hour on 2 cores (1.5 to 12 minutes an epoch with other builds running). The demo (scripts/demo.sh)
# only imports the result.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product monailabel
swift build -c release --product monailabel_torch
BIN="$(swift build -c release --show-bin-path)/monailabel"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/app"
cp sample-apps/demo/app.json "$WORK/app/"
"$BIN" datasets --download --output "$WORK/studies" --count 16 --labeled 16
MONAI_LABEL_TORCH_THREADS="${MONAI_LABEL_TORCH_THREADS:-2}" "$BIN" run_task --method train \
  --request '{"model": "segmentation_spleen", "pretrained": false}' \
  --app "$WORK/app" --studies "$WORK/studies" --conf models segmentation_spleen
mkdir -p sample-apps/demo/weights
cp "$WORK/app/model/segmentation_spleen.pt" sample-apps/demo/weights/pretrained_segmentation_spleen.pt
ls -l sample-apps/demo/weights/pretrained_segmentation_spleen.pt
