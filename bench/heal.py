"""What the heal engine costs while nothing crashes, against plain python in the same run.

    python bench/heal.py [--rounds N] [--json]

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

from _common import (bench_arguments, describe, print_results, python_version, pyward_cmd, self_timed, time_commands,
                     versus)

WORKLOADS = {
    "CPU-bound (ms)": """
        import time
        def fib(n):
            return n if n < 2 else fib(n - 1) + fib(n - 2)
        def crunch(rows):
            total = 0.0
            for row in rows:
                total += row["a"] * row["b"] / (row["c"] + 1)
            return total
        rows = [{"a": i, "b": i % 7, "c": i % 5} for i in range(2000)]
        t = time.perf_counter()
        fib(27)
        for _ in range(400):
            crunch(rows)
        print((time.perf_counter() - t) * 1e3)
    """,
    "module-level loop (ms)": """
        import time
        t = time.perf_counter()
        d = {}
        acc = 0
        for i in range(600_000):
            d[i % 1000] = i
            acc += d[i % 1000] % 7
        print((time.perf_counter() - t) * 1e3)
    """,
    "exception-heavy (ms)": """
        import time
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
        for i in range(150_000):
            parse("x")
            get(d, "b")
            get(d, "a")
        print((time.perf_counter() - t) * 1e3)
    """,
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


def main() -> int:
    args = bench_arguments(__doc__)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYWARD")}
    env["PYTHONHASHSEED"] = "0"  # same string hashes (dict layouts) in both arms: less noise between processes
    pw = pyward_cmd()
    heal = [*pw, "run", "--no-config", "--no-report", "--mode", "off", "--no-tamper", "--heal"]
    typed = [*pw, "run", "--no-config", "--no-report", "--heal"]  # what a user types: watch + tamper on
    results: dict[str, dict[str, float | str | bool]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = os.path.realpath(tmp)
        for name, code in WORKLOADS.items():
            with open(os.path.join(tmp, "work.py"), "w") as f:
                f.write(textwrap.dedent(code))
            runs = self_timed({"python": [sys.executable, "work.py"], "typed": [*typed, "work.py"],
                               "alone": [*heal, "work.py"]}, args.rounds, tmp, env)
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
