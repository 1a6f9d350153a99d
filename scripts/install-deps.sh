#!/usr/bin/env bash
# Installs the system libraries monailabel-swift builds against. Idempotent; Debian 12 with the Swift toolchain.
set -euo pipefail
# Build: libtorch, NIfTI, zlib, OpenSSL, OpenBLAS, DCMTK, gloo's headers (c10d's Gloo process group for
# data-parallel training; its code is inside libtorch). The Dockerfile's build stage installs exactly BUILD_PKGS
# (DockerfileTests checks it).
BUILD_PKGS=(libtorch-dev libnifti2-dev zlib1g-dev libssl-dev libopenblas0-openmp libdcmtk-dev libgloo-dev)
# Tests: curl and openssl (HTTP/TLS tests), unzip (dataset archive), bsdtar (session archives), python3-venv (the
# real Python client), python3-torch (checkpoint interop), dcmtk (dcmcrle / dcmcjpls), dicom3tools (dciodvfy
# validates our SEGs), gdb (scripts/ci-stage.sh prints a hung stage's stacks). Runtime: libjemalloc2, the model
# workers' allocator (MONAI_LABEL_WORKER_ALLOCATOR).
PKGS=("${BUILD_PKGS[@]}" libjemalloc2 libarchive-tools curl openssl unzip python3 python3-venv python3-torch dcmtk dicom3tools gdb)
# DICOMweb tests: a real Orthanc with its DICOMweb plugin, started by the tests on their own ports and storage
# (the package may also start a system service on 8042; the tests never use it).
PKGS+=(orthanc orthanc-dicomweb)
# Auth tests: a real OpenID Connect provider (glewlwyd, on its own port and SQLite database made with sqlite3).
PKGS+=(glewlwyd sqlite3)
# Browser tests (OHIF at /ohif/, the dashboard at /): headless Chromium driven over WebDriver by the Swift tests.
PKGS+=(chromium chromium-driver)
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
