#!/usr/bin/env bash
# Runs the libtorch shim's tests (TorchKitTests, or the Swift Testing filter given as $1) under AddressSanitizer
# with LeakSanitizer. Exits non-zero on any memory error, leak, or test failure.
#
# Why not valgrind: Debian 12's valgrind 3.19 cannot read the DWARF 5 that Swift 6 emits, and with DWARF 4
# forced it still dies inside libdispatch's signal thread before the first test runs.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build --build-tests --scratch-path .build-asan --sanitize=address
ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:${ASAN_OPTIONS:-}" \
  .build-asan/debug/monailabel-swiftPackageTests.xctest --testing-library swift-testing --filter "${1:-TorchKitTests}"
