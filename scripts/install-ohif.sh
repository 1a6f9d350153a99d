#!/usr/bin/env bash
# Installs the OHIF viewer that ships inside the monailabel==0.8.5 wheel (monailabel/endpoints/static/ohif) where
# the server looks for it: $1, else $MONAI_LABEL_OHIF_DIR, else ${XDG_DATA_HOME:-~/.local/share}/monailabel/ohif.
# The bundle comes from .venv-client when scripts/make-client-venv.sh made it, else from the wheel fetched with
# pip. Text assets and .wasm get a .gz beside them, which the server sends to clients that accept gzip.
# The copy is made next to the target and renamed into place, so a server never sees half a viewer. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST="${1:-${MONAI_LABEL_OHIF_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/monailabel/ohif}}"
SRC=""
for d in .venv-client/lib/python3*/site-packages/monailabel/endpoints/static/ohif; do
  if [ -f "$d/index.html" ]; then SRC="$d"; fi
done
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
if [ -z "$SRC" ]; then
  python3 -m pip download -q --disable-pip-version-check --no-deps monailabel==0.8.5 -d "$WORK/wheel"
  python3 -m zipfile -e "$WORK"/wheel/monailabel-0.8.5-*.whl "$WORK/unpacked"
  SRC="$WORK/unpacked/monailabel/endpoints/static/ohif"
fi
mkdir -p "$(dirname "$DEST")"
STAGE="$(mktemp -d "$DEST.new.XXXXXX")"
cp -R "$SRC/." "$STAGE/"
find "$STAGE" -type f \( -name '*.js' -o -name '*.css' -o -name '*.html' -o -name '*.json' -o -name '*.svg' \
  -o -name '*.wasm' -o -name '*.map' -o -name '*.txt' \) -size +1k -exec gzip -k -9 -n {} \;
chmod -R a+rX "$STAGE"
if [ -e "$DEST" ]; then mv "$DEST" "$STAGE.old"; fi
mv "$STAGE" "$DEST"
rm -rf "$STAGE.old"
echo "OHIF installed in $DEST ($(find "$DEST" -type f ! -name '*.gz' | wc -l) files)"
