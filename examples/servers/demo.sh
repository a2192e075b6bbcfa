#!/usr/bin/env bash
# The servers part of `make demo` (run by scripts/demo with PYWARD and OUT set):
# the same service, under python and then under `pyward run --heal`, sent the same requests.
set -euo pipefail
set -m  # background jobs keep SIGINT (a script's jobs ignore it otherwise): Ctrl-C ends pyward's run cleanly
step() { printf '\n== %s\n$ %s\n' "$1" "$2"; }
python="$(dirname "$PYWARD")/python"
port() { "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_up() {
  for _ in $(seq 100); do
    "$python" -c "import socket, sys; socket.create_connection(('127.0.0.1', $1), timeout=1)" 2>/dev/null && return
    sleep 0.1
  done
  echo "!! the server on port $1 did not start" >&2; exit 1
}
server=""
trap '[ -n "$server" ] && kill -INT "$server" 2>/dev/null; wait 2>/dev/null || true' EXIT

p=$(port)
step "servers: app.py under python; requests on buggy paths lose their connection" "python app.py & python try.py"
"$python" app.py "$p" >/dev/null 2>"$OUT/python-stderr.txt" & server=$!
wait_up "$p"
"$python" try.py "$p"
kill "$server"; wait "$server" 2>/dev/null || true; server=""
echo "(its tracebacks: $(grep -c '^Traceback' "$OUT/python-stderr.txt") in $OUT/python-stderr.txt)"

p=$(port)
step "under pyward run --heal: healed and replayed (X-Pyward-Healed), or an honest 503 for the POST" \
     "pyward run --heal app.py & python try.py"
"$PYWARD" run --no-config --no-report --heal --store "$OUT/heal.db" app.py "$p" >/dev/null 2>"$OUT/stderr.txt" & server=$!
wait_up "$p"
"$python" try.py "$p"
kill -INT "$server"; wait "$server" 2>/dev/null || true; server=""
step "what pyward said on stderr" "cat stderr.txt"
grep -v "guard fired" "$OUT/stderr.txt"
