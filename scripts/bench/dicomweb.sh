#!/usr/bin/env bash
# DICOMweb benchmark: saving a 512x512x100 final label as a DICOM SEG in a local Orthanc.
# A CT series written by pydicom (scripts/dicomweb_realsize.py: oblique, signed int16 with rescale) is stored in a
# fresh Orthanc; the server (release build) converts it once, then `PUT /datastore/label?tag=final` is timed
# N times (read the upload, write the SEG, STOW-RS it, cache the label), each printed beside the upload size.
# Needs Orthanc + its DICOMweb plugin (scripts/install-deps.sh) and .venv-client (scripts/make-client-venv.sh).
# Usage: scripts/bench/dicomweb.sh [N=3]
set -euo pipefail
cd "$(dirname "$0")/../.."
N="${1:-3}"
. scripts/bench/lib.sh
PY=.venv-client/bin/python
[ -x /usr/sbin/Orthanc ] || { echo "Orthanc is required (scripts/install-deps.sh)" >&2; exit 1; }
"$PY" -c "import pydicom, nibabel, numpy" 2>/dev/null || { echo ".venv-client with pydicom is required (scripts/make-client-venv.sh)" >&2; exit 1; }
bench_build release
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
OPORT=$(free_port)
mkdir -p "$WORK/orthanc"
cat >"$WORK/orthanc/orthanc.json" <<EOF
{"Name": "bench", "StorageDirectory": "$WORK/orthanc", "IndexDirectory": "$WORK/orthanc", "HttpPort": $OPORT,
 "DicomPort": $(free_port), "RemoteAccessAllowed": false, "AuthenticationEnabled": false,
 "Plugins": ["/usr/share/orthanc/plugins/libOrthancDicomWeb.so"],
 "DicomWeb": {"Enable": true, "Root": "/dicom-web/", "Host": "127.0.0.1:$OPORT"}}
EOF
/usr/sbin/Orthanc "$WORK/orthanc/orthanc.json" >"$WORK/orthanc.log" 2>&1 &
OPID=$!
trap 'kill $PID $OPID 2>/dev/null || true; wait $PID $OPID 2>/dev/null || true; rm -rf "$WORK"' EXIT
until curl -sf "http://127.0.0.1:$OPORT/system" >/dev/null; do sleep 0.05; done

SERIES=$("$PY" scripts/dicomweb_realsize.py write-series "$WORK/ct" --cols 512 --rows 512 --slices 100 |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["series"])')
for f in "$WORK"/ct/*.dcm; do curl -sf -X POST --data-binary @"$f" "http://127.0.0.1:$OPORT/instances" >/dev/null; done

PORT=$(free_port)
mkdir -p "$WORK/app"
cp sample-apps/radiology/app.json "$WORK/app/"
MONAI_LABEL_DICOMWEB_CACHE_PATH="$WORK/cache" MONAI_LABEL_SESSION_PATH="$WORK/sessions" \
  "$BIN" start_server --app "$WORK/app" --studies "http://127.0.0.1:$OPORT/dicom-web" --conf models segmentation_spleen \
  --host 127.0.0.1 --port "$PORT" --log_level warning >"$WORK/server.log" 2>&1 &
PID=$!
until curl -sf "http://127.0.0.1:$PORT/info/" >/dev/null; do sleep 0.05; done

convert=$(curl -sf -o "$WORK/image.nii.gz" -w '%{time_total}' "http://127.0.0.1:$PORT/datastore/image?image=$SERIES")
# The label: the CT's bright sphere (1) and a speckled slab of soft tissue (2), on the converted image's grid.
"$PY" - "$WORK/image.nii.gz" "$WORK/label.nii.gz" <<'PY'
import sys
import nibabel as nib
import numpy as np
img = nib.load(sys.argv[1])
v = np.asarray(img.dataobj)
label = np.zeros(v.shape, dtype=np.uint8)
i, j, k = np.indices(v.shape)
label[(v > -500) & (k >= 30) & (k < 60) & ((i + 2 * j + 3 * k) % 5 == 0)] = 2
label[v > 120] = 1
nib.save(nib.Nifti1Image(label, img.affine), sys.argv[2])
PY
echo "series: 512x512x100 int16 CT (pydicom), Orthanc $(curl -s "http://127.0.0.1:$OPORT/system" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Version"])')"
printf 'first GET /datastore/image (WADO-RS + conversion): %.2f s\n' "$convert"
for n in $(seq 1 "$N"); do
  out=$(curl -s -o "$WORK/put.json" -w '%{http_code} %{time_total} %{size_upload}' -X PUT \
    -F 'params={"label_info": [{"name": "spleen", "idx": 1}, {"name": "speckle", "idx": 2}]}' \
    -F "label=@$WORK/label.nii.gz" "http://127.0.0.1:$PORT/datastore/label?image=$SERIES&tag=final")
  read -r code secs bytes <<<"$out"
  [ "$code" = 200 ] || { echo "PUT answered $code: $(cat "$WORK/put.json")" >&2; exit 1; }
  printf 'PUT final label -> SEG in Orthanc, run %d: %.2f s (upload %d bytes)\n' "$n" "$secs" "$bytes"
done
segs=$(curl -s "http://127.0.0.1:$OPORT/dicom-web/series?Modality=SEG" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
echo "SEG series in Orthanc: $segs"
echo "target: < 5 s per save"
