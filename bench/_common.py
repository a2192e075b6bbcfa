"""Shared helpers for pyward's benchmarks: timing commands against plain python."""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


#: The CPU workload of bench/sandbox.py and bench/hooks.py: imports and json raise thousands of audit events.
IMPORTS_AND_JSON = """
        # what `pyward run` itself has imported already: loaded before the clock starts, in both runs
        import collections, contextlib, enum, errno, functools, importlib.util, keyword, linecache, math
        import operator, re, reprlib, select, selectors, socket, time, tokenize, types, warnings
        t = time.perf_counter()
        import json, decimal, fractions, email.parser, http.client, urllib.parse, xml.etree.ElementTree
        import argparse, logging, csv, statistics, dataclasses, pathlib, zipfile, tarfile, sqlite3, uuid
        doc = {"users": [{"id": i, "name": f"user{i}", "tags": ["a", "b", "c"], "score": i * 0.5,
                          "active": i % 2 == 0} for i in range(2000)]}
        for _ in range(40):
            text = json.dumps(doc)
            doc = json.loads(text)
        print((time.perf_counter() - t) * 1e3)
    """


def pyward_cmd() -> list[str]:
    """The `pyward` console script installed next to this interpreter."""
    script = os.path.join(os.path.dirname(sys.executable), "pyward")
    return [script] if os.path.exists(script) else [sys.executable, "-m", "pyward"]


def time_commands(commands: dict[str, list[str]], runs: int, cwd: str, env: dict[str, str] | None = None,
                  warmup: int = 3) -> dict[str, list[float]]:
    """Wall-clock seconds per run for each command, interleaved so drift hits all alike."""
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for i in range(warmup + runs):
        for name, cmd in commands.items():
            start = time.perf_counter()
            subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
            elapsed = time.perf_counter() - start
            if i >= warmup:
                samples[name].append(elapsed)
    return samples


def describe(samples: list[float]) -> dict[str, float]:
    return {"median_ms": statistics.median(samples) * 1e3, "min_ms": min(samples) * 1e3,
            "stdev_ms": statistics.stdev(samples) * 1e3 if len(samples) > 1 else 0.0}


def python_version() -> str:
    return sys.version.split()[0]


def self_timed(commands: dict[str, list[str]], rounds: int, cwd: str,
               env: dict[str, str] | None = None) -> dict[str, list[float]]:
    """Run each command `rounds` times, interleaved; each prints its own figure on its last line."""
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(rounds):
        for name, cmd in commands.items():
            result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
            if result.returncode != 0:
                raise SystemExit(f"benchmark command failed ({' '.join(cmd)}):\n{result.stderr}")
            samples[name].append(float(result.stdout.strip().splitlines()[-1]))
    return samples


def bench_arguments(doc: str, count: bool = False) -> Any:
    """The options every overhead benchmark takes: --rounds N, --json (and --count where
    the benchmark can count instructions instead of timing)."""
    import argparse

    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    if count:
        parser.add_argument("--count", action="store_true",
                            help="count instructions with valgrind instead of timing (slow, repeatable)")
    return parser.parse_args()


def versus(runs: dict[str, list[float]], target: str, limit: float | None = None) -> dict[str, Any]:
    """One results row from self_timed's "python" and "pyward" samples: the best of the
    rounds (as timeit reports), the medians, and whether the ratio is within `limit`."""
    p, g = min(runs["python"]), min(runs["pyward"])
    return {"python": p, "pyward": g, "added": g - p, "ratio": g / p,
            "median_python": statistics.median(runs["python"]), "median_pyward": statistics.median(runs["pyward"]),
            "target": target, "met": limit is None or g / p <= limit}


def print_results(title: str, results: dict[str, dict[str, Any]], base: str = "python") -> None:
    """The table every overhead benchmark prints: one line per workload, with its target."""
    width = max(len("workload"), *(len(name) for name in results))
    print(title)
    print(f"  {'workload':{width}} {base:>10} {'pyward':>10} {'added':>9} {'ratio':>7}  target")
    for name, r in results.items():
        mark = "ok" if r["met"] else "MISSED"
        print(f"  {name:{width}} {r['python']:10.2f} {r['pyward']:10.2f} {r['added']:9.2f} {r['ratio']:6.3f}x"
              f"  {r['target']} [{mark}]")


def count_instructions(cmd: list[str], cwd: str, env: dict[str, str] | None = None) -> int:
    """Instructions the command executes (its children's included), counted by valgrind's
    cachegrind: the same figure for the same program whatever else the machine is doing."""
    result = subprocess.run(["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
                             "--trace-children=yes", *cmd], cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"benchmark command failed under valgrind ({' '.join(cmd)}):\n{result.stderr[-2000:]}")
    counts = [int(line.rsplit(None, 1)[-1].replace(",", "")) for line in result.stderr.splitlines()
              if "I refs:" in line or "I   refs:" in line]
    if not counts:
        raise SystemExit(f"valgrind printed no instruction count for {' '.join(cmd)}")
    return sum(counts)
