"""What a no-op Python audit hook on every event costs: pyward's install_hook
against a raw sys.addaudithook hook and plain python, in the same run.

    python bench/hooks.py [--rounds N] [--json]

The CPU workload of bench/sandbox.py (imports + json, which raise thousands of
audit events: import, open, marshal.loads, exec, object.__setattr__...) times
itself inside the process, run alternately as plain python, with a raw
`sys.addaudithook(lambda event, args: None)`, and with
`pyward.sandbox.install_hook(lambda event, args: None)` (hook-only: no
policy), each installed before the clock starts; figures are the best of the
rounds, as `timeit` reports.  Targets: pyward's hook no slower than the raw
hook (at most 1.02x of it, noise allowed), and the event-rate figure below.

A second workload raises 1,000,000 audit events of one name (sys.audit) and
prints the cost per event above plain python's loop: the dispatch itself.
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import textwrap

from _common import IMPORTS_AND_JSON, bench_arguments, python_version, self_timed

HOOKS = {
    "python": "",
    "raw hook": "import sys\nsys.addaudithook(lambda event, args: None)\n",
    "pyward hook": "from pyward.sandbox import install_hook\ninstall_hook(lambda event, args: None)\n",
}

WORKLOADS = {
    "imports + json (ms)": IMPORTS_AND_JSON,
    "audit event dispatch (ns/event)": """
        import sys, time
        audit = sys.audit
        n = 1_000_000
        t = time.perf_counter()
        for _ in range(n):
            audit("bench.event", 1)
        loop = time.perf_counter() - t
        t = time.perf_counter()
        for _ in range(n):
            pass
        empty = time.perf_counter() - t
        print((loop - empty) / n * 1e9)
    """,
}


def main() -> int:
    args = bench_arguments(__doc__)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYWARD")}
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, body in WORKLOADS.items():
            commands = {}
            for variant, setup in HOOKS.items():
                script = os.path.join(tmp, f"{variant.replace(' ', '_')}.py")
                with open(script, "w") as f:
                    f.write(setup + textwrap.dedent(body))
                commands[variant] = [sys.executable, script]
            runs = self_timed(commands, args.rounds, tmp, env)
            best = {variant: min(samples) for variant, samples in runs.items()}
            results[name] = {**best, "median": {v: statistics.median(s) for v, s in runs.items()},
                             "pyward/python": best["pyward hook"] / best["python"],
                             "raw/python": best["raw hook"] / best["python"],
                             "pyward/raw": best["pyward hook"] / best["raw hook"]}
    if args.json:
        print(json.dumps({"bench": "hooks", "python": python_version(), "rounds": args.rounds, "results": results}))
        return 0
    print(f"a no-op Python audit hook on every event, Python {python_version()} (best of {args.rounds} rounds)")
    print(f"  {'workload':32} {'python':>9} {'raw hook':>9} {'pyward':>9} {'raw/py':>7} {'pw/py':>7} {'pw/raw':>7}")
    for name, r in results.items():
        mark = "ok" if r["pyward/raw"] <= 1.02 else "MISSED"
        print(f"  {name:32} {r['python']:9.2f} {r['raw hook']:9.2f} {r['pyward hook']:9.2f} {r['raw/python']:6.3f}x"
              f" {r['pyward/python']:6.3f}x {r['pyward/raw']:6.3f}x  pyward no slower than the raw hook [{mark}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
