#!/usr/bin/env bash
# Creates .venv-client/ with the real MONAI Label 0.8.5 Python client (no torch: --no-deps) plus nibabel and
# pynrrd to open the labels it receives; used by the end-to-end tests. pydicom: the independent DICOM geometry
# check (scripts/check_dicom_geometry.py); with numpy and highdicom (+ pillow, which it imports) the DICOMweb tests
# write their series with pydicom and decode our SEGs with highdicom, readers independent of ours. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-client
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import monailabel.client, requests, nibabel, nrrd, pydicom, highdicom" 2>/dev/null; then
  exit 0
fi
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check --no-deps \
  monailabel==0.8.5 requests urllib3 idna charset-normalizer certifi \
  numpy nibabel packaging pynrrd typing_extensions nptyping pydicom highdicom pillow
"$VENV/bin/python" -c "from monailabel.client import MONAILabelClient; import nibabel, nrrd, pydicom, highdicom"
