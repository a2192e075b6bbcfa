"""Run the real-world corpus and print the table (scripts/corpus is the wrapper).

    python tests/realworld/corpus.py --python 3.12 [--suite NAME]... [--mode MODE,...] [--fast]
                                     [--json FILE] [--timeout SECONDS]

Exit status: 0 when every row is clean, 1 when any pyward run differs from the
plain run (or has denials under its learned policy, unexplained tamper alerts,
heals, pyward errors), 3 when nothing differs but something could not be run.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from realworld import harness, manifest  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--python", action="append",
                    help="X.Y (repeatable, or comma-separated); default: this interpreter's")
    ap.add_argument("--suite", action="append", help="a suite or program name (repeatable); default: all")
    ap.add_argument("--mode", action="append",
                    help="comma-separated, from: " + ", ".join(manifest.MODES) + " (plain always runs)")
    ap.add_argument("--fast", action="store_true", help="only the fast slice (the one make test runs)")
    ap.add_argument("--json", type=Path, help="also write the results here (default: "
                    "bench/results/corpus-X.Y[-fast][-partial].json; -partial with --suite, --mode or --pytest-args)")
    ap.add_argument("--timeout", type=float, help="seconds per run (default 900; 180 with --fast)")
    ap.add_argument("--pytest-args", default="",
                    help="extra pytest arguments for every suite, plain run included (to look past a "
                         "failure, e.g. '-W ignore::pytest.PytestAssertRewriteWarning'); shown above the table")
    ap.add_argument("--list", action="store_true", help="list the suites, programs and modes, and exit")
    args = ap.parse_args(argv)
    if args.list:
        for s in manifest.SUITES:
            fast, tight = "fast" if s.fast else "    ", "tight" if s.tight else "     "
            print(f"suite   {s.name:16} {s.version:12} {fast} {tight} {s.note}")
        for p in manifest.PROGRAMS:
            print(f"program {p.name:16} {' '.join(p.args)}")
        for m in manifest.MODES:
            print(f"mode    {m:16} {manifest.MODE_HELP[m]}")
        return 0
    versions = [v for item in (args.python or [f"{sys.version_info[0]}.{sys.version_info[1]}"])
                for v in item.split(",") if v]
    modes = [m for item in (args.mode or []) for m in item.split(",") if m] or None
    bad = set(modes or ()) - set(manifest.MODES)
    if bad:
        ap.error(f"unknown mode(s): {', '.join(sorted(bad))}")
    try:
        harness.select(args.fast, args.suite)
    except ValueError as exc:
        ap.error(str(exc))
    all_results = []
    for v in versions:
        res = harness.run_corpus(v, fast=args.fast, names=args.suite, modes=modes, timeout=args.timeout,
                                 extra_pytest_args=shlex.split(args.pytest_args))
        all_results.append(res)
        out = args.json if args.json and len(versions) == 1 else None
        if out is None:
            # a slice or an exploration never overwrites the whole corpus's results
            partial = "-partial" if (args.suite or args.mode or args.pytest_args) else ""
            out = harness.ROOT / "bench" / "results" / f"corpus-{v}{'-fast' if args.fast else ''}{partial}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res.to_json(), indent=1))
        print(f"[corpus] {v}: results in {out} (runs in {res.rundir or '-'})", file=sys.stderr)
    if args.pytest_args:
        print(f"NOTE: every suite ran with the extra pytest arguments {args.pytest_args!r} (plain included)")
    print(harness.table(all_results))
    for res in all_results:
        for name, note in res.notes.items():
            print(f"note [{res.python}] {name}: {note}")
        if res.pip_check and "No broken requirements" not in res.pip_check:
            print(f"note [{res.python}] pip check: {res.pip_check}")
    text = harness.findings(all_results)
    if text:
        print("\nfindings (every row that is not clean, with a reproduction):")
        print(text)
    records = [r for res in all_results for r in res.records]
    if any(not r.clean and r.status not in ("not run", "excluded") for r in records):
        return 1
    if any(r.status == "not run" for r in records) or any(res.not_run_reason for res in all_results):
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
