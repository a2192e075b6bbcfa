"""Startup cost of `pyward run` on a hello-world, against plain python in the same run.

    python bench/startup.py [--runs N] [--json]
    python bench/startup.py --count [--json]

Target: under 30 ms added, median against median.  The default run
writes a report, which is what a user gets; `--no-report` is shown too.

With --count, each arm's instructions are counted by valgrind instead of
timed: those of the program's own process (pyward's recorder, a process of
its own, is left out: it works while the program runs, and at the end
pyward waits only for its writing of the report), repeatable to within
0.01% whatever else the machine is doing.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

from _common import describe, python_version, pyward_cmd, time_commands

TARGET_MS = 30.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--count", action="store_true",
                        help="count the program process's instructions with valgrind instead of timing")
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
        if args.count:
            return counted(commands, tmp, env, args.json)
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


def counted(commands: dict[str, list[str]], cwd: str, env: dict[str, str], as_json: bool) -> int:
    env = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONHASHSEED"] = "0"
    counts = {}
    for name, cmd in commands.items():
        subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, check=True)  # bytecode caches written first
        counts[name] = program_process_instructions(cmd, cwd, env)
    base = counts["python hello.py"]
    result = {"benchmark": "startup-count", "python": python_version(),
              "instructions": counts, "added": {n: c - base for n, c in counts.items()}}
    if as_json:
        print(json.dumps(result))
    else:
        print(f"startup, python {result['python']}, instructions of the program's process (valgrind)")
        for name, count in counts.items():
            print(f"  {name:34} {count / 1e6:8.2f} M   added {(count - base) / 1e6:+7.2f} M")
    return 0


def program_process_instructions(cmd: list[str], cwd: str, env: dict[str, str]) -> int:
    """Instructions of the process the command starts (valgrind keeps its pid), not of its children."""
    with tempfile.TemporaryDirectory() as out:
        proc = subprocess.run(["valgrind", "--tool=cachegrind", "--cache-sim=no", "--trace-children=yes",
                               f"--cachegrind-out-file={out}/cg.%p", *cmd], cwd=cwd, env=env,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"benchmark command failed under valgrind ({' '.join(cmd)}):\n{proc.stderr[-2000:]}")
        pid = int(proc.stderr.split("==", 2)[1])  # valgrind's own lines start ==PID==
        with open(os.path.join(out, f"cg.{pid}")) as f:
            for line in f:
                if line.startswith("summary:"):
                    return int(line.split()[1])
    raise SystemExit(f"valgrind recorded no instruction count for {' '.join(cmd)}")


if __name__ == "__main__":
    sys.exit(main())
