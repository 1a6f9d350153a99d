#!/usr/bin/env bash
# Fuzzes the HTTP request parser and the multipart parser with libFuzzer for N seconds (default 60).
# Usage: scripts/fuzz.sh [seconds]. Crashes are written to .build/fuzz/artifacts/ and the script exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TO_RUN="${1:-60}"
OUT=.build/fuzz
mkdir -p "$OUT/artifacts" "$OUT/corpus"
SRC=Sources/HTTPServer
swiftc -parse-as-library -module-name HTTPFuzz -sanitize=fuzzer,address -O -g \
  "$SRC/HTTPTypes.swift" "$SRC/PercentEncoding.swift" "$SRC/HTTPRequestParser.swift" "$SRC/Multipart.swift" \
  "$SRC/HTTPRequest.swift" Tests/Fuzz/FuzzParsers.swift -o "$OUT/fuzz-parsers"
cp -n Tests/Fuzz/corpus/* "$OUT/corpus/" 2>/dev/null || true
"$OUT/fuzz-parsers" -max_total_time="$SECONDS_TO_RUN" -max_len=8192 -timeout=10 -rss_limit_mb=2048 \
  -artifact_prefix="$OUT/artifacts/" -print_final_stats=1 "$OUT/corpus" Tests/Fuzz/corpus
