#!/usr/bin/env bash
# Installs the system libraries monailabel-swift builds against. Idempotent; Debian 12 with the Swift toolchain.
set -euo pipefail
# curl and openssl (the CLI) are used by the HTTPServer tests; wrk only by scripts/bench/http.sh.
PKGS=(libtorch-dev libnifti2-dev zlib1g-dev libssl-dev libopenblas0-openmp curl openssl)
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
