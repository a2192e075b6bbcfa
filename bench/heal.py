"""What the heal engine costs while nothing crashes, against plain python in the same run.

    python bench/heal.py [--rounds N] [--json]
    python bench/heal.py --count [--json]

With --count, the work of each workload (its instructions with its repeat
count less those with 0) is counted by valgrind under python, `pyward run`
(sandbox and tamper), `pyward run --heal` and heal alone: a figure that does
not move with the machine's load, which the timed rounds on a shared machine
cannot promise to within 2%.

Each workload times itself inside the process and runs alternately under
`python`, under `pyward run --heal` (the flags a user types: sandbox in watch
mode and tamper on as well) and under `pyward run --heal --mode off
--no-tamper` (the heal engine alone), `--rounds` times; figures are the best
of the rounds.  Targets, with the flags a user types, on each of 3.11, 3.12
and 3.13:

* a CPU-bound workload in functions: at most 1.02x;
* a module-level loop (the script's own top-level code): at most 1.02x;
* an exception-heavy workload (exceptions raised and caught, never
  escaping): at most 1.02x.  Catching costs nothing because pyward looks
  at a crash only where it escapes the program.

Also measured and printed: the start-up cost of --heal (opening the patch
store) and, for information, what a guard costs on the valid path of the
one function it is in (a guarded subscript run 300,000 times).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap

from _common import (
    bench_arguments,
    count_instructions,
    describe,
    print_results,
    python_version,
    pyward_cmd,
    self_timed,
    time_commands,
    versus,
)

#: name -> (program, its repeat count when timed, when counted).  Each program repeats its work
#: sys.argv[1] times and prints the milliseconds that took.
WORKLOADS = {
    "CPU-bound (ms)": ("""
        import sys, time
        def fib(n):
            return n if n < 2 else fib(n - 1) + fib(n - 2)
        def crunch(rows):
            total = 0.0
            for row in rows:
                total += row["a"] * row["b"] / (row["c"] + 1)
            return total
        rows = [{"a": i, "b": i % 7, "c": i % 5} for i in range(2000)]
        t = time.perf_counter()
        for _ in range(int(sys.argv[1])):
            fib(20)
            crunch(rows)
        print((time.perf_counter() - t) * 1e3)
    """, 300, 20),
    "module-level loop (ms)": ("""
        import sys, time
        t = time.perf_counter()
        d = {}
        acc = 0
        for i in range(int(sys.argv[1])):
            d[i % 1000] = i
            acc += d[i % 1000] % 7
        print((time.perf_counter() - t) * 1e3)
    """, 600_000, 60_000),
    "exception-heavy (ms)": ("""
        import sys, time
        def parse(s):
            try:
                return int(s)
            except ValueError:
                return None
        def get(d, k):
            try:
                return d[k]
            except KeyError:
                return 0
        t = time.perf_counter()
        d = {"a": 1}
        for i in range(int(sys.argv[1])):
            parse("x")
            get(d, "b")
            get(d, "a")
        print((time.perf_counter() - t) * 1e3)
    """, 150_000, 15_000),
}

GUARDED_TIMED = """
import time
def get(d):
    return d["k"]
d = {"k": 1}
t = time.perf_counter()
for _ in range(300_000):
    get(d)
print((time.perf_counter() - t) * 1e3)
"""


def counted(arms: dict[str, list[str]], env: dict[str, str], as_json: bool) -> int:
    """Instructions each workload's repeated work costs under each arm, against plain python.

    Each program is counted with its repeat count and with 0, and the difference
    is the work: start-up is left out (bench/startup.py measures it)."""
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = os.path.realpath(tmp)
        for name, (code, _, n) in WORKLOADS.items():
            with open(os.path.join(tmp, "work.py"), "w") as f:
                f.write(textwrap.dedent(code))
            work = {arm: count_instructions([*cmd, "work.py", str(n)], tmp, env) -
                    count_instructions([*cmd, "work.py", "0"], tmp, env) for arm, cmd in arms.items()}
            results[name.replace(" (ms)", "")] = {arm: work[arm] / work["python"] for arm in arms if arm != "python"}
            results[name.replace(" (ms)", "")]["python instructions"] = work["python"]
    if as_json:
        print(json.dumps({"bench": "heal-count", "python": python_version(), "results": results}))
        return 0
    print(f"heal cost on Python {python_version()}, instructions of the work (valgrind), ratio to plain python")
    columns = [arm for arm in arms if arm != "python"]
    width = max(len(name) for name in results)
    print(f"  {'workload':{width}} " + " ".join(f"{c:>18}" for c in columns) + "  target (pyward run --heal)")
    for name, r in results.items():
        mark = "ok" if r["pyward run --heal"] <= 1.02 else "MISSED"
        print(f"  {name:{width}} " + " ".join(f"{r[c]:17.4f}x" for c in columns) + f"  at most 1.02x [{mark}]")
    return 0


def main() -> int:
    args = bench_arguments(__doc__, count=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYWARD")}
    env["PYTHONHASHSEED"] = "0"  # same string hashes (dict layouts) in both arms: less noise between processes
    pw = pyward_cmd()
    heal = [*pw, "run", "--no-config", "--no-report", "--mode", "off", "--no-tamper", "--heal"]
    typed = [*pw, "run", "--no-config", "--no-report", "--heal"]  # what a user types: watch + tamper on
    if args.count:
        others = [*pw, "run", "--no-config", "--no-report"]  # sandbox (watch) and tamper, no heal
        return counted({"python": [sys.executable], "pyward run": others, "pyward run --heal": typed,
                        "heal alone": heal}, env, args.json)
    results: dict[str, dict[str, float | str | bool]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = os.path.realpath(tmp)
        for name, (code, timed, _) in WORKLOADS.items():
            with open(os.path.join(tmp, "work.py"), "w") as f:
                f.write(textwrap.dedent(code))
            runs = self_timed({"python": [sys.executable, "work.py", str(timed)],
                               "typed": [*typed, "work.py", str(timed)],
                               "alone": [*heal, "work.py", str(timed)]}, args.rounds, tmp, env)
            results[f"{name}, --heal"] = versus({"python": runs["python"], "pyward": runs["typed"]},
                                                "at most 1.02x", 1.02)
            results[f"{name}, heal alone"] = versus({"python": runs["python"], "pyward": runs["alone"]},
                                                    "measured (--mode off --no-tamper)")
        # a guarded function on its valid path: heal it once (exit status 0 after the re-run), then time it
        with open(os.path.join(tmp, "guarded.py"), "w") as f:
            # get({}) crashes once: the first run heals it, the measured runs start healed
            f.write(GUARDED_TIMED.replace('d = {"k": 1}', 'get({})\nd = {"k": 1}'))
        subprocess.run([*heal, "--rerun-side-effects", "guarded.py"], cwd=tmp, env=env, capture_output=True)
        runs = self_timed({"python": [sys.executable, "-c", GUARDED_TIMED], "pyward": [*heal, "guarded.py"]},
                          args.rounds, tmp, env)
        results["a guarded d[k], valid path (ms)"] = versus(runs, "measured (one guarded function)")
        with open(os.path.join(tmp, "hello.py"), "w") as f:
            f.write("print('hello, world')\n")
        base = [*pw, "run", "--no-config", "--no-report", "--mode", "off", "--no-tamper"]
        samples = time_commands({"plain": [*base, "hello.py"], "heal": [*base, "--heal", "hello.py"]},
                                max(args.rounds * 3, 20), tmp, env)
        start = {k: describe(v)["median_ms"] for k, v in samples.items()}
        results["start-up: --heal (ms)"] = {"python": start["plain"], "pyward": start["heal"],
                                            "added": start["heal"] - start["plain"],
                                            "ratio": start["heal"] / start["plain"],
                                            "target": "measured (vs pyward run without --heal)", "met": True}
    if args.json:
        print(json.dumps({"bench": "heal", "python": python_version(), "rounds": args.rounds, "results": results}))
        return 0
    print_results(f"heal cost on Python {python_version()} (crash-free path, best of "
                  f"{args.rounds} rounds)", results, base="base")
    print("  (base: plain python for the workloads; pyward run without --heal for start-up)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
