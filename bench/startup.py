"""Startup cost of `pyward run` on a hello-world, against plain python in the same run.

    python bench/startup.py [--runs N] [--json]

Target: under 30 ms added, median against median.  The default run
writes a report, which is what a user gets; `--no-report` is shown too.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

from _common import describe, python_version, pyward_cmd, time_commands

TARGET_MS = 30.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "hello.py"), "w") as f:
            f.write("print('hello, world')\n")
        pw = pyward_cmd()
        commands = {
            "python hello.py": [sys.executable, "hello.py"],
            "pyward run hello.py": [*pw, "run", "hello.py"],
            "pyward run --no-report hello.py": [*pw, "run", "--no-report", "hello.py"],
        }
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYWARD")}
        samples = time_commands(commands, args.runs, tmp, env)
    stats = {name: describe(s) for name, s in samples.items()}
    base = stats["python hello.py"]["median_ms"]
    for s in stats.values():
        s["added_ms"] = s["median_ms"] - base
        s["ratio"] = s["median_ms"] / base
    worst = max(s["added_ms"] for n, s in stats.items() if n.startswith("pyward"))
    result = {"benchmark": "startup", "python": python_version(), "runs": args.runs, "target_added_ms": TARGET_MS,
              "worst_added_ms": round(worst, 2), "meets_target": worst < TARGET_MS, "commands": stats}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"startup, python {result['python']}, {args.runs} runs each (median / min, ms)")
        for name, s in stats.items():
            print(f"  {name:34} {s['median_ms']:7.1f} / {s['min_ms']:6.1f}   "
                  f"added {s['added_ms']:+6.1f} ms   ratio {s['ratio']:.2f}x")
        print(f"  target: under {TARGET_MS:.0f} ms added -> {'met' if result['meets_target'] else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
