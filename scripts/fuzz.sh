#!/usr/bin/env bash
# Fuzzes the HTTP request parser and the multipart parser with libFuzzer for N seconds (default 60).
# Usage: scripts/fuzz.sh [seconds]. Crashes are written to .build/fuzz/artifacts/ and the script exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TO_RUN="${1:-60}"
OUT=.build/fuzz
mkdir -p "$OUT/artifacts" "$OUT/corpus"
MODS="$OUT/modules"
mkdir -p "$MODS"
FLAGS=(-parse-as-library -sanitize=fuzzer,address -O -g -package-name monailabel_swift)
# The parsers' building blocks are modules of their own (HTTPCore, JSONEscaping), built first with the same flags.
for m in JSONEscaping HTTPCore; do
  swiftc "${FLAGS[@]}" -wmo -module-name "$m" -I "$MODS" -emit-module -emit-module-path "$MODS/$m.swiftmodule" \
    -emit-object -o "$MODS/$m.o" Sources/"$m"/*.swift
done
SRC=Sources/HTTPServer
swiftc "${FLAGS[@]}" -module-name HTTPFuzz -I "$MODS" "$MODS/JSONEscaping.o" "$MODS/HTTPCore.o" \
  "$SRC/Exports.swift" "$SRC/HTTPTypes.swift" "$SRC/HTTPRequestParser.swift" "$SRC/MultipartForm.swift" \
  "$SRC/HTTPRequest.swift" Tests/Fuzz/FuzzParsers.swift -o "$OUT/fuzz-parsers"
cp -n Tests/Fuzz/corpus/* "$OUT/corpus/" 2>/dev/null || true
"$OUT/fuzz-parsers" -max_total_time="$SECONDS_TO_RUN" -max_len=8192 -timeout=10 -rss_limit_mb=2048 \
  -artifact_prefix="$OUT/artifacts/" -print_final_stats=1 "$OUT/corpus" Tests/Fuzz/corpus
