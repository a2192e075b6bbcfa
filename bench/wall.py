"""What the kernel wall (Landlock) costs an open, by the shape of its ruleset.

    python bench/wall.py [--rounds N] [--json]

`os.open()`+`os.close()` of 2,000 distinct files of a directory `data/`, in a
child process restricted, before its loop, by a Landlock ruleset built with
pyward's own `landlock_restrict` and the rights `pyward run` handles under
enforce (read, write, run; truncation from ABI 3).  The arms:

* no wall;
* one rule, read beneath `data/`: what a policy's `--allow-read` of those files adds;
* that rule among 40 others on other directories: whether the number of rules counts;
* that rule with truncation granted too (pyward never does that for a read rule: it
  would let any code truncate the files): what the kernel's walk from the file up
  to `/`, looking for a truncation right nobody granted, costs each open.

Each child times its loop in CPU time (the figure a loaded machine disturbs least)
five times; the arms run interleaved, `--rounds` times, and the figure is the
median.  The wall's whole cost under `pyward run` is the enforce row of
bench/sandbox.py less its "without the wall" row.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile

from _common import bench_arguments, python_version

FILES = 2000
CHILD = """
import json, os, sys, time
fs, rules = json.loads(sys.argv[1])
if rules is not None:
    from pyward._native import native
    native.landlock_restrict(fs, 0, [tuple(rule) for rule in rules], [])
names = ['data/f-%d' % i for i in range({files})]
flags = os.O_RDONLY | os.O_CLOEXEC
figures = []
for _ in range(5):
    t = time.process_time()
    for name in names:
        os.close(os.open(name, flags))
    figures.append((time.process_time() - t) / len(names) * 1e9)
print(json.dumps(figures))
""".format(files=FILES)


def handled() -> int:
    """The filesystem rights `pyward run` handles under enforce on this kernel (0: no Landlock)."""
    from pyward.sandbox import kernel

    version = kernel.abi()
    if not version:
        return 0
    fs = (kernel.READ | kernel.WRITE | kernel.EXECUTE) & ~kernel.REFER & ~kernel.TRUNCATE
    if version >= 2:
        fs |= kernel.REFER
    if version >= 3:
        fs |= kernel.TRUNCATE
    return fs


def main() -> int:
    args = bench_arguments(__doc__)
    from pyward.sandbox import kernel

    fs = handled()
    if not fs:
        print("this kernel has no Landlock: no wall to measure")
        return 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYWARD")}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = os.path.realpath(tmp)
        data = os.path.join(tmp, "data")
        os.mkdir(data)
        for i in range(FILES):
            with open(os.path.join(data, f"f-{i}"), "w") as f:
                f.write("x")
        others = []
        for i in range(40):
            os.mkdir(os.path.join(tmp, f"other-{i}"))
            others.append([os.path.join(tmp, f"other-{i}"), kernel.READ])
        read = [[data, kernel.READ]]
        arms = {
            "no wall": None,
            "one rule: read beneath data/": read,
            "that rule among 40 others": read + others,
            "that rule, truncation granted too": [[data, kernel.READ | (fs & kernel.TRUNCATE)]],
        }
        samples: dict[str, list[float]] = {name: [] for name in arms}
        for _ in range(args.rounds):
            for name, rules in arms.items():
                result = subprocess.run([sys.executable, "-c", CHILD, json.dumps([fs, rules])], cwd=tmp, env=env,
                                        capture_output=True, text=True)
                if result.returncode != 0:
                    raise SystemExit(f"the child for {name!r} failed:\n{result.stderr}")
                samples[name] += json.loads(result.stdout)
    base = statistics.median(samples["no wall"])
    results = {name: {"ns": statistics.median(v), "added": statistics.median(v) - base} for name, v in samples.items()}
    if args.json:
        print(json.dumps({"bench": "wall", "python": python_version(), "abi": kernel.abi(), "rounds": args.rounds,
                          "results": results}))
        return 0
    print(f"the kernel wall's cost per os.open()+os.close() on Python {python_version()}, Landlock ABI "
          f"{kernel.abi()} (CPU time, median of {args.rounds} rounds x 5)")
    width = max(len(name) for name in results)
    for name, r in results.items():
        print(f"  {name:{width}} {r['ns']:7.0f} ns  {r['added']:+6.0f} ns")
    return 0


if __name__ == "__main__":
    sys.exit(main())
