#!/usr/bin/env bash
# The tamper part of `make demo` (run by scripts/demo with PYWARD and OUT set).
set -euo pipefail
step() { printf '\n== %s\n$ %s\n' "$1" "$2"; }

step "tamper: app.py imports a 'speed-up' helper that quietly replaces open() and socket.socket" \
     "pyward run app.py"
"$PYWARD" run --no-config --report "$OUT/alerts.json" app.py

step "--restore puts the originals back (the same objects) as soon as they are replaced" \
     "pyward run --restore app.py"
"$PYWARD" run --no-config --report "$OUT/restore.json" --restore app.py

step "--fail-closed: the patching statement itself raises pyward.TamperError" "pyward run --fail-closed app.py"
status=0
"$PYWARD" run --no-config --report "$OUT/fail-closed.json" --fail-closed app.py || status=$?
if [ $status -ne 1 ]; then echo "!! expected exit status 1 (TamperError), got $status" >&2; exit 1; fi
echo "(exit status 1: the program stopped on pyward.TamperError)"

step "the alerts are in the report, with the patcher's file:line" \
     "python -c '...print the tamper alerts of \$OUT/alerts.json...'"
"$(dirname "$PYWARD")/python" - "$OUT/alerts.json" <<'PY'
import json, sys
for e in json.load(open(sys.argv[1]))["events"]:
    if e["engine"] == "tamper" and e["kind"] == "alert":
        print(f"  {e['name']:16} old={e['details']['old']}  new={e['details']['new']}  by {e['where']}")
PY
