"""What the tamper engine's default seals cost, against plain python in the same run.

    python bench/tamper.py [--rounds N] [--json]

Each workload times itself inside the process and runs alternately under
`python` and under `pyward run --mode off` (the tamper engine with its
default seals, the sandbox off: bench/sandbox.py measures that one),
`--rounds` times; the figures are the best of the rounds, as `timeit`
reports (the medians are in the --json output).  Targets:

* a CPU-bound workload that also calls sealed functions and reads attributes
  of sealed modules (random.random, os.path.join, hashlib.new): at most 1.01x;
* an import-heavy workload (300 generated modules plus 20 stdlib packages,
  each one a sys.modules insertion the engine watches): at most 1.01x;
* start-up: the cost of sealing (pyward run --mode off against
  pyward run --mode off --no-tamper) is measured and printed, for a
  hello world and for a program that imports subprocess, ssl and asyncio
  (modules with default seals, whose own imports run while their seals wait
  for them to finish).
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import textwrap

from _common import (
    bench_arguments,
    describe,
    print_results,
    python_version,
    pyward_cmd,
    self_timed,
    time_commands,
    versus,
)

WORKLOADS = {
    "CPU-bound (ms)": """
        import hashlib, os, random, time
        t = time.perf_counter()
        # n-body-like float arithmetic, dict and str work, and calls through sealed modules
        bodies = [[random.random() for _ in range(6)] for _ in range(40)]
        for step in range(60):
            for i, a in enumerate(bodies):
                for b in bodies[i + 1:]:
                    dx, dy, dz = a[0] - b[0], a[1] - b[1], a[2] - b[2]
                    d2 = dx * dx + dy * dy + dz * dz + 0.01
                    mag = 0.001 / (d2 * d2 ** 0.5)
                    a[3] -= dx * mag; a[4] -= dy * mag; a[5] -= dz * mag
                    b[3] += dx * mag; b[4] += dy * mag; b[5] += dz * mag
            for body in bodies:
                body[0] += body[3]; body[1] += body[4]; body[2] += body[5]
        counts = {}
        for i in range(150_000):
            key = os.path.join("d", str(i % 97))
            counts[key] = counts.get(key, 0) + random.random()
        digest = hashlib.new("sha256")
        for i in range(20_000):
            digest.update(b"%d" % i)
        print((time.perf_counter() - t) * 1e3)
    """,
    "import-heavy (ms)": """
        # what `pyward run` itself has imported already: loaded before the clock starts, in both runs
        import collections, contextlib, enum, errno, functools, importlib.util, keyword, linecache, math
        import operator, re, reprlib, select, selectors, socket, time, tokenize, types, warnings
        import importlib, sys
        t = time.perf_counter()
        import json, decimal, fractions, email.parser, http.client, urllib.parse, xml.etree.ElementTree
        import argparse, logging, csv, statistics, dataclasses, pathlib, zipfile, tarfile, sqlite3, uuid
        import asyncio, unittest
        for i in range(300):
            importlib.import_module(f"genpkg.mod{i}")
        print((time.perf_counter() - t) * 1e3)
    """,
}

MODULE = """
import os
from dataclasses import dataclass

CONSTANT_{i} = {i}


@dataclass
class Record{i}:
    name: str
    value: int = {i}

    def path(self) -> str:
        return os.path.join("base", self.name)


def helper_{i}(x):
    return [Record{i}(str(n)) for n in range(x)]
"""


def main() -> int:
    args = bench_arguments(__doc__)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYWARD")}
    pw = pyward_cmd()
    results: dict[str, dict[str, float | str | bool]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = os.path.realpath(tmp)
        os.mkdir(os.path.join(tmp, "genpkg"))
        open(os.path.join(tmp, "genpkg", "__init__.py"), "w").close()
        for i in range(300):
            with open(os.path.join(tmp, "genpkg", f"mod{i}.py"), "w") as f:
                f.write(MODULE.format(i=i))
        for name, code in WORKLOADS.items():
            with open(os.path.join(tmp, "work.py"), "w") as f:
                f.write(textwrap.dedent(code))
            runs = self_timed({"python": [sys.executable, "work.py"],
                               "pyward": [*pw, "run", "--no-config", "--no-report", "--mode", "off", "work.py"]},
                              args.rounds, tmp, env)
            results[name] = versus(runs, "at most 1.01x", 1.01)
        starts = {"start-up: sealing (ms)": "print('hello, world')\n",
                  "start-up importing subprocess, ssl, asyncio: sealing (ms)": "import subprocess, ssl, asyncio\n"}
        base = [*pw, "run", "--no-config", "--no-report", "--mode", "off"]
        for name, program in starts.items():
            with open(os.path.join(tmp, "start.py"), "w") as f:
                f.write(program)
            samples = time_commands({"python": [sys.executable, "start.py"],
                                     "no-tamper": [*base, "--no-tamper", "start.py"],
                                     "sealed": [*base, "start.py"]}, max(args.rounds * 3, 20), tmp, env)
            start = {k: describe(v)["median_ms"] for k, v in samples.items()}
            results[name] = {"python": start["no-tamper"], "pyward": start["sealed"],
                             "added": start["sealed"] - start["no-tamper"],
                             "ratio": start["sealed"] / start["no-tamper"], "plain_python_ms": start["python"],
                             "target": "measured (vs pyward --no-tamper)", "met": True}
    if args.json:
        print(json.dumps({"bench": "tamper", "python": python_version(), "rounds": args.rounds,
                          "results": results}))
        return 0
    print_results(f"tamper cost on Python {python_version()} "
                  f"(default seals, sandbox off, best of {args.rounds} rounds)",
                  results, base="base")
    print("  (base: plain python for the workloads; pyward run --no-tamper for start-up)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
