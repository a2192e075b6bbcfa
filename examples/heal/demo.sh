#!/usr/bin/env bash
# The heal part of `make demo` (run by scripts/demo with PYWARD and OUT set).
set -euo pipefail
step() { printf '\n== %s\n$ %s\n' "$1" "$2"; }
store="$OUT/heal.db"
rm -f "$store"*

step "heal: app.py crashes under python on its second user" "python app.py"
status=0; "$(dirname "$PYWARD")/python" app.py || status=$?
if [ $status -ne 1 ]; then echo "!! expected python to crash with status 1, got $status" >&2; exit 1; fi

step "under --heal each crash is guarded in the live bytecode; nothing was written, so the script re-runs" \
     "pyward run --heal app.py"
"$PYWARD" run --no-config --no-report --heal --store "$store" app.py

step "the second run starts healed from the stored recipes (data, not code)" "pyward run --heal app.py"
"$PYWARD" run --no-config --no-report --heal --store "$store" app.py

step "the patches, and what one of them does" "pyward patches && pyward explain get_bio"
"$PYWARD" patches --store "$store"
"$PYWARD" explain get_bio --store "$store"

step "--fail-on-heal: CI sees that the run needed healing" "pyward run --heal --fail-on-heal app.py"
status=0
"$PYWARD" run --no-config --no-report -q --heal --fail-on-heal --store "$store" app.py >/dev/null || status=$?
if [ $status -ne 79 ]; then echo "!! expected exit status 79, got $status" >&2; exit 1; fi
echo "(exit status 79)"

step "roll the patches back: the next run crashes as python does" "pyward rollback --all"
"$PYWARD" rollback --all --store "$store"
