"""Survived or correct: what `pyward run --heal` gives on the project's own heal corpus.

    python bench/heal_split.py [--json]

Every crash program of tests/heal/test_heal_corpus.py (each guard kind in each kind
of function, the recovery shapes, the crashes that must stay unhealed) runs
once under `pyward run --heal --shadow` in a fresh directory.  Per program:

* unhealed: python's own traceback and exit status (no recovery was honest);
* survived: the run completed through a fallback (the summary's degraded_runs);
  of those, the firings whose fallback value reached the program's output or
  an operation that fails on it (`--shadow`'s warning), against the firings
  whose recovery skipped a statement or whose value the program checked.

A survived run printed what the program prints when the bad input yields the
fallback: not what a corrected program would print.  The split says how often
that difference can reach what the program shows.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap

_TESTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests")
sys.path[:0] = [os.path.join(_TESTS, "heal"), _TESTS]

import test_heal_corpus as corpus  # noqa: E402  (the programs live with their tests)
from _common import python_version, pyward_cmd  # noqa: E402


def programs() -> dict[str, tuple[str, str | None]]:
    out: dict[str, tuple[str, str | None]] = {}
    for kind, fn in corpus.CASES:
        out[f"{kind} in {fn}"] = corpus._program(kind, fn)
    for name, (source, *_rest) in {**corpus.RECOVERY, **corpus.UNHEALED}.items():
        out[name] = (textwrap.dedent(source), None)
    return out


def run_one(source: str, helper: str | None) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "app.py"), "w") as f:
            f.write(source)
        if helper is not None:
            with open(os.path.join(tmp, "helper.py"), "w") as f:
                f.write(helper)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYWARD")}
        result = subprocess.run([*pyward_cmd(), "run", "--no-config", "--heal", "--shadow", "--report", "r.json",
                                 "app.py"], cwd=tmp, env=env, capture_output=True, text=True, timeout=120)
        report = json.load(open(os.path.join(tmp, "r.json")))
    events = report["events"]
    shadows = [e for e in events if e["engine"] == "heal" and e["kind"] == "shadow" and e["name"] != "crash"]
    return {"exit": result.returncode, "degraded": report["summary"].get("degraded_runs", 0),
            "firings": report["summary"].get("guard_firings", 0),
            "reached": sum(1 for e in shadows if e["details"].get("worry")),
            "followed": len(shadows)}


def main() -> int:
    rows = {name: run_one(*program) for name, program in programs().items()}
    unhealed = [n for n, r in rows.items() if r["exit"] != 0]
    survived = [n for n, r in rows.items() if r["exit"] == 0 and r["degraded"]]
    reached = [n for n in survived if rows[n]["reached"]]
    summary = {"programs": len(rows), "unhealed": len(unhealed), "survived": len(survived),
               "survived, --shadow traced a fallback into output or a failing operation": len(reached),
               "survived, --shadow's walk ended elsewhere (a call, a check, a skipped statement)":
                   len(survived) - len(reached),
               "completed without a fallback": len(rows) - len(unhealed) - len(survived)}
    if "--json" in sys.argv:
        print(json.dumps({"bench": "heal_split", "python": python_version(), "summary": summary, "rows": rows}))
        return 0
    print(f"heal corpus on Python {python_version()}: survived or correct")
    for key, value in summary.items():
        print(f"  {key:82} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
