"""What the record costs: OpenTelemetry export (--otel) and sealed checkpoints.

    python bench/record.py [--rounds N] [--json]

A CPU workload (json encode/decode and pure-Python arithmetic) that first
journals 200 denials (notice and above: each one is exported and
checkpointed), timed inside the process, runs alternately:

* `--otel` with a collector on loopback (an OTLP/HTTP receiver in this
  process) against the same run without `--otel` (target: at most 1.02x);
* with checkpoints (the default) against `--no-checkpoints` (target: 1.02x).

Both under `pyward run --no-tamper -q -A --deny-env`; figures are the best of
the rounds (the medians are in the --json output).  The exporter is a process
of its own: what it costs the program is what the machine's cores share.
"""
from __future__ import annotations

import http.server
import json
import os
import sys
import tempfile
import textwrap
import threading

from _common import bench_arguments, print_results, python_version, pyward_cmd, self_timed, versus

WORKLOAD = textwrap.dedent("""
    import json, os, time
    for i in range(200):
        try:
            os.environ.get(f"SECRET_{i}")
        except PermissionError:
            pass
    t = time.perf_counter()
    doc = {"items": [{"id": i, "name": f"item-{i}", "tags": ["a", "b"], "price": i * 1.5} for i in range(2000)]}
    total = 0
    for _ in range(100):
        total += len(json.loads(json.dumps(doc))["items"])
        total += sum(i * i % 7 for i in range(20000))
    print(time.perf_counter() - t)
""")


class Collector(http.server.ThreadingHTTPServer):
    """Accepts OTLP/HTTP requests and answers 200, as a collector would."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.records = 0
        threading.Thread(target=self.serve_forever, daemon=True).start()


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.server.records += 1
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def main() -> int:
    args = bench_arguments(__doc__)
    collector = Collector()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYWARD", "OTEL_"))}
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{collector.server_address[1]}"
    base = [*pyward_cmd(), "run", "--no-tamper", "-q", "-A", "--deny-env"]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "work.py"), "w") as f:
            f.write(WORKLOAD)
        runs = self_timed({"python": [*base, "--report", "a.json", "work.py"],
                           "pyward": [*base, "--report", "b.json", "--otel", "work.py"]}, args.rounds, tmp, env)
        results["--otel, collector on loopback (s)"] = versus(runs, "<= 1.02x", 1.02)
        runs = self_timed({"python": [*base, "--report", "a.json", "--no-checkpoints", "work.py"],
                           "pyward": [*base, "--report", "b.json", "work.py"]}, args.rounds, tmp, env)
        results["checkpoints on (s)"] = versus(runs, "<= 1.02x", 1.02)
    collector.shutdown()
    if args.json:
        print(json.dumps({"python": python_version(), "results": results, "requests": collector.records}, indent=1))
    else:
        print_results(f"record cost on Python {python_version()} (best of {args.rounds} rounds; "
                      f"'python' column: the same pyward run without the feature)", results, base="without")
    return 0 if all(r["met"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
