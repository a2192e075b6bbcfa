"""What the sandbox costs, against plain python in the same run.

    python bench/sandbox.py [--rounds N] [--json]

Each workload times itself inside the process (so interpreter start-up does
not dilute the ratio) and runs alternately under `python` and under
`pyward run --no-tamper` with a 20-rule enforce policy (the tamper engine
has its own benchmark, bench/tamper.py), `--rounds` times; the figures
are the best of the rounds, as `timeit` reports (noise on a shared machine
only ever adds time; the medians are in the --json output).  Start-up is the
median wall time of whole runs, as in bench/startup.py.  Targets:

* an audit event the policy does not care about: under 30 ns added;
* open() + close() of a file checked against the 20-rule policy: at most 1.3x;
* open() + close() of 2,000 distinct files in the working directory, each
  opened once (no cache can answer for a path it has not seen), under enforce
  and under watch: at most 1.3x (median of the rounds: the target is stated so);
* an import-heavy and json-heavy CPU workload: at most 1.03x;
* start-up of `pyward run` with that policy (kernel wall included): under 30 ms added;
  --json also gives the median without the wall (`median_no_kernel`).
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import textwrap

from _common import (
    IMPORTS_AND_JSON,
    bench_arguments,
    describe,
    print_results,
    python_version,
    pyward_cmd,
    self_timed,
    time_commands,
)

DISTINCT_FILES = 2000
DISTINCT = f"""
    import time
    names = ['data/many-%d.txt' % i for i in range({DISTINCT_FILES})]
    t = time.perf_counter()
    for name in names:
        open(name).close()
    print((time.perf_counter() - t) / len(names) * 1e6)
"""

WORKLOADS = {
    # sys.audit of an event nobody subscribed to: the C filter's hash lookup and nothing else
    "ignored audit event (ns/event)": ("""
        import sys, time
        audit = sys.audit
        n = 2_000_000
        t = time.perf_counter()
        for _ in range(n):
            audit("bench.ignored.event")
        loop = time.perf_counter() - t
        t = time.perf_counter()
        for _ in range(n):
            pass
        empty = time.perf_counter() - t
        print((loop - empty) / n * 1e9)
    """, "ns"),
    "open()+close() (us/op)": ("""
        import time
        n = 20_000
        t = time.perf_counter()
        for _ in range(n):
            open('data/file-17.txt').close()
        print((time.perf_counter() - t) / n * 1e6)
    """, "ratio"),
    # each path is new to the process: what resolving and judging a path costs, not a cache hit
    "open()+close() 2,000 distinct files, enforce (us/op)": (DISTINCT, "median"),
    "open()+close() 2,000 distinct files, watch (us/op)": (DISTINCT, "median"),
    "imports + json (ms)": (IMPORTS_AND_JSON, "ratio"),
}


def policy_flags(tmp: str) -> list[str]:
    """Twenty rules; the file the workload opens is matched by the last read rule."""
    reads = [f"--allow-read=/srv/nothing-{i}" for i in range(12)] + [f"--allow-read={tmp}/data/*.txt"]
    writes = [f"--allow-write=/srv/out-{i}" for i in range(3)]
    others = ["--allow-net=api.example.com:443", "--allow-env=HOME", "--allow-run=git", "--deny-read=/etc/shadow"]
    flags = reads + writes + others
    assert len(flags) == 20
    return flags


def main() -> int:
    args = bench_arguments(__doc__)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYWARD")}
    pw = pyward_cmd()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = os.path.realpath(tmp)
        os.mkdir(os.path.join(tmp, "data"))
        for i in range(20):
            with open(os.path.join(tmp, "data", f"file-{i}.txt"), "w") as f:
                f.write("x")
        for i in range(DISTINCT_FILES):
            with open(os.path.join(tmp, "data", f"many-{i}.txt"), "w") as f:
                f.write("x")
        flags = policy_flags(tmp)
        for name, (code, compare) in WORKLOADS.items():
            script = os.path.join(tmp, "work.py")
            with open(script, "w") as f:
                f.write(textwrap.dedent(code))
            mode = ["--mode=watch"] if name.endswith("watch (us/op)") else []
            runs = self_timed({"python": [sys.executable, "work.py"],
                               "pyward": [*pw, "run", "--no-config", "--no-report", "--no-tamper", *flags, *mode,
                                          "work.py"]},
                              args.rounds, tmp, env)
            plain, guarded = runs["python"], runs["pyward"]
            # best of N, as timeit does: on a shared machine noise only ever adds time (the
            # distinct-files target is stated as a median of the rounds: that is what it reports)
            pick = statistics.median if compare == "median" else min
            p, g = pick(plain), pick(guarded)
            results[name] = {"python": p, "pyward": g, "added": g - p, "ratio": g / p, "compare": compare,
                             "median_python": statistics.median(plain), "median_pyward": statistics.median(guarded)}
        hello = os.path.join(tmp, "hello.py")
        with open(hello, "w") as f:
            f.write("print('hello, world')\n")
        samples = time_commands({"python": [sys.executable, "hello.py"],
                                 "pyward": [*pw, "run", "--no-config", "--no-tamper", *flags, "hello.py"],
                                 "no_kernel": [*pw, "run", "--no-config", "--no-tamper", "--no-kernel", *flags,
                                               "hello.py"]},
                                max(args.rounds * 3, 20), tmp, env)
        start = {k: describe(v)["median_ms"] for k, v in samples.items()}
        results["start-up with the policy (ms)"] = {"python": start["python"], "pyward": start["pyward"],
                                                     "added": start["pyward"] - start["python"],
                                                     "ratio": start["pyward"] / start["python"], "compare": "ms",
                                                     # the same run without the kernel wall: the wall's own share
                                                     "median_no_kernel": start["no_kernel"]}
    verdicts = {
        "ignored audit event (ns/event)": ("added", 30.0, "under 30 ns added"),
        "open()+close() (us/op)": ("ratio", 1.3, "at most 1.3x"),
        "open()+close() 2,000 distinct files, enforce (us/op)": ("ratio", 1.3, "at most 1.3x (median)"),
        "open()+close() 2,000 distinct files, watch (us/op)": ("ratio", 1.3, "at most 1.3x (median)"),
        "imports + json (ms)": ("ratio", 1.03, "at most 1.03x"),
        "start-up with the policy (ms)": ("added", 30.0, "under 30 ms added"),
    }
    for name, (key, limit, text) in verdicts.items():
        results[name]["target"] = text
        results[name]["met"] = results[name][key] <= limit
    if args.json:
        print(json.dumps({"bench": "sandbox", "python": python_version(), "rounds": args.rounds,
                          "results": results}))
        return 0
    print_results(f"sandbox cost on Python {python_version()} (20-rule enforce policy, best of {args.rounds} rounds)",
                  results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
