#!/usr/bin/env bash
# Runs one test tier (unit, router or live; several with commas) through `swift test --filter`, built from the
# `.tags(...)` on the suites and top-level tests. Swift 6.3's `swift test` has no tag filter (`--filter tag:unit`
# arrives with a later swift-testing), so this turns the tags into a filter on test IDs.
# Usage: scripts/test-tier.sh unit [swift test options, e.g. --skip-build]
set -euo pipefail
cd "$(dirname "$0")/.."
TIERS="${1:?usage: scripts/test-tier.sh unit|router|live[,...] [swift test options]}"
shift
FILTER=$(python3 - "$TIERS" <<'PY'
import glob, os, re, sys
tiers = set(sys.argv[1].split(','))
bad = tiers - {'unit', 'router', 'live'}
if bad:
    sys.exit('unknown tier: %s' % ', '.join(sorted(bad)))
names = []
for path in sorted(glob.glob('Tests/*/*.swift')):
    target = path.split('/')[1]
    lines = open(path).read().split('\n')
    for i, line in enumerate(lines):
        m = re.match(r'^@(Suite|Test)\(\.tags\(\.(\w+)\)', line)
        if not m or m.group(2) not in tiers:
            continue
        pattern = r'\b(?:struct|enum|class)\s+(\w+)' if m.group(1) == 'Suite' else r'\bfunc\s+(\w+)'
        for later in lines[i:i + 60]:
            d = re.search(pattern, later)
            if d:
                names.append(re.escape(target) + r'\.' + d.group(1) + (r'/' if m.group(1) == 'Suite' else r'\('))
                break
print('^(' + '|'.join(names) + ')')
PY
)
exec swift test --filter "$FILTER" "$@"
