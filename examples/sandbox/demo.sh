#!/usr/bin/env bash
# The sandbox part of `make demo` (run by scripts/demo with PYWARD and OUT set).
set -euo pipefail
export DEMO_API_TOKEN=sk-demo-not-a-real-secret
step() { printf '\n== %s\n$ %s\n' "$1" "$2"; }

step "sandbox, watch mode: nothing blocked, everything the program does journaled (-v shows it)" \
     "pyward run -v --no-config app.py data.csv \$OUT/summary.txt"
"$PYWARD" run -v --no-config --report "$OUT/watch.json" app.py data.csv "$OUT/summary.txt"

step "learn a least-privilege policy from one run" "pyward learn -o \$OUT/learned.toml app.py data.csv \$OUT/summary.txt"
"$PYWARD" learn --no-config --report "$OUT/learn.json" -o "$OUT/learned.toml" --force app.py data.csv "$OUT/summary.txt"
cat "$OUT/learned.toml"

step "enforce what the app needs (its own files are implicit; it writes to \$OUT): the telemetry is denied, the app still works" \
     "pyward run --allow-write=\$OUT app.py data.csv \$OUT/summary.txt"
"$PYWARD" run --no-config --report "$OUT/enforce.json" --allow-write="$OUT" app.py data.csv "$OUT/summary.txt"

step "--on-deny=exit stops the program at the first denial, with exit status 77" \
     "pyward run --on-deny=exit --allow-write=\$OUT app.py data.csv \$OUT/summary.txt"
status=0
"$PYWARD" run --no-config --report "$OUT/exit.json" --on-deny=exit --allow-write="$OUT" app.py data.csv \
  "$OUT/summary.txt" || status=$?
if [ $status -ne 77 ]; then echo "!! expected exit status 77, got $status" >&2; exit 1; fi
echo "(exit status 77)"
