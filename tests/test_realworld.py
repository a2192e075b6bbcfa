"""The fast slice of the real-world corpus (tests/realworld/): third-party test
suites from their sdists and stdlib programs, run under this interpreter's
version plainly and under pyward in every mode, compared row by row.

Per suite and mode: the same pass/fail/skip/error counts and exit status as the
plain run, no denials under the learned policy, no tamper alerts except from
patches the suite itself makes (the patching line or its caller is in the
suite's own files), no heal, no pyward error.  Per program: the same stdout
(temporary paths and ports normalised), stderr without pyward's lines, and exit
status.

The only skip is "not run": the sdist or a pinned dependency could not be
fetched or installed (no network to PyPI, a build backend missing).  A
mismatch is always a failure, and a suite whose plain run fails fails here too.
The whole corpus (every suite, slower): scripts/corpus.
"""
from __future__ import annotations

import json
import sys

import pytest

from realworld import harness, manifest

VERSION = f"{sys.version_info[0]}.{sys.version_info[1]}"
SUITES, PROGRAMS = harness.select(fast=True)

SUITE_CASES = [pytest.param(s, m, id=f"{s.name}-{m}") for s in SUITES for m in manifest.MODES
               if m != "tight" or s.tight]
PROGRAM_CASES = [pytest.param(p, m, id=f"{p.name}-{m}") for p in PROGRAMS for m in manifest.PROGRAM_MODES]


@pytest.fixture(scope="module")
def corpus():
    c = harness.Corpus(VERSION, fast=True, log=lambda msg: print(msg, file=sys.stderr))
    yield c
    c.save()


def _record(records: list[harness.Record], mode: str) -> harness.Record:
    for r in records:
        if r.mode == mode:
            return r
    raise AssertionError(f"no {mode} row in {[r.mode for r in records]}")


def _explain(rec: harness.Record, plain: harness.Record | None) -> str:
    lines = [f"{rec.name} under {rec.mode} (Python {rec.python}): " + "; ".join(rec.problems or [rec.status])]
    if plain is not None and rec is not plain:
        lines.append(f"  plain: exit {plain.exit}, counts {harness.fmt_counts(plain.counts)}")
    lines.append(f"  here:  exit {rec.exit}, counts {harness.fmt_counts(rec.counts)}, denied {rec.denied}, "
                 f"alerts {rec.alerts} ({rec.alerts_unexplained} not the suite's own), healed {rec.healed}")
    if rec.error_line:
        lines.append(f"  error: {rec.error_line}")
    lines += [f"  denied: {d}" for d in rec.denials[:5]]
    lines += [f"  alert: {a}" for a in rec.alert_samples[:5]]
    if rec.command:
        lines.append(f"  repro: {rec.repro()}")
    if rec.stderr_tail:
        lines.append("  stderr tail:\n    " + rec.stderr_tail.replace("\n", "\n    "))
    return "\n".join(lines)


def _check(records: list[harness.Record], mode: str) -> None:
    rec = _record(records, mode)
    plain = _record(records, "plain")
    if rec.status == "not run":
        pytest.skip(f"not run: {rec.reason}")
    if plain.status == "plain failed":
        pytest.fail(f"{rec.name}: the plain run fails ({plain.reason}), so the comparison cannot be made",
                    pytrace=False)
    if rec.status != "ok" or rec.problems:
        pytest.fail(_explain(rec, plain), pytrace=False)


@pytest.mark.parametrize("suite, mode", SUITE_CASES)
def test_suite(corpus: harness.Corpus, suite: manifest.Suite, mode: str) -> None:
    _check(corpus.suite(suite, SUITES), mode)


@pytest.mark.parametrize("program, mode", PROGRAM_CASES)
def test_program(corpus: harness.Corpus, program: manifest.Program, mode: str) -> None:
    _check(corpus.program(program, SUITES), mode)


# -- the harness's own parsing, on fixed inputs (no network, no subprocess) -------------

def test_parse_junit(tmp_path) -> None:
    xml = tmp_path / "junit.xml"
    xml.write_text(
        '<?xml version="1.0"?><testsuites><testsuite tests="5">'
        '<testcase classname="t.A" name="ok"/>'
        '<testcase classname="t.A" name="bad"><failure message="x"/></testcase>'
        '<testcase classname="t.A" name="skip"><skipped message="y"/></testcase>'
        '<testcase classname="t.B" name="boom"><error message="z"/></testcase>'
        '<testcase classname="t.B" name="ok2"><system-out>hi</system-out></testcase>'
        '</testsuite></testsuites>')
    counts, failing = harness.parse_junit(xml)
    assert counts == {"passed": 2, "failed": 1, "skipped": 1, "errors": 1}
    assert failing == ["t.A::bad", "t.B::boom (error)"]


def test_parse_unittest() -> None:
    ok = "....\n------\nRan 348 tests in 1.2s\n\nOK (skipped=6)\n"
    assert harness.parse_unittest(ok) == {"passed": 342, "failed": 0, "skipped": 6, "errors": 0,
                                          "unexpected_successes": 0}
    bad = "Ran 10 tests in 0.1s\n\nFAILED (failures=2, errors=1, skipped=3, expected failures=1)\n"
    assert harness.parse_unittest(bad) == {"passed": 3, "failed": 2, "skipped": 4, "errors": 1,
                                           "unexpected_successes": 0}
    assert harness.parse_unittest("Traceback ...\nImportError: x\n") is None


def test_normalise_addresses_and_paths() -> None:
    text = "<built-in method match of re.Pattern object at 0x7f3a2b1c9d40> in /tmp/pwc-x/3/out"
    assert harness._normalise(text, {"/tmp/pwc-x/3": "$TMP"}) == \
        "<built-in method match of re.Pattern object at 0xADDR> in $TMP/out"


def test_read_report_splits_alerts(tmp_path) -> None:
    """An alert whose patching line or caller is in the suite's own files is the suite's;
    any other alert is unexplained; denials and pyward errors are collected."""
    suite = tmp_path / "src"
    site = "/venv/lib/python3.12/site-packages"
    events = [
        {"engine": "tamper", "kind": "alert", "severity": "alert", "message": "own",
         "where": f"{site}/_pytest/monkeypatch.py:251", "details": {"caller": f"{suite}/tests/test_x.py:3"}},
        {"engine": "tamper", "kind": "alert", "severity": "alert", "message": "own too",
         "where": f"{suite}/conftest.py:9", "details": {}},
        {"engine": "tamper", "kind": "alert", "severity": "alert", "message": "not the suite's",
         "where": f"{site}/_pytest/capture.py:80", "details": {"caller": None}},
        {"engine": "sandbox", "kind": "denied", "severity": "warning", "message": "write to '/x' denied",
         "where": f"{suite}/tests/test_x.py:5"},
        {"engine": "sandbox", "kind": "internal", "severity": "error", "message": "boom"},
    ]
    report = tmp_path / "r.json"
    report.write_text(json.dumps({"summary": {"denied": 1, "tamper_alerts": 3, "healed": 0}, "events": events}))
    rec = harness.Record("suite", "x", "3.12", "run")
    harness.read_report(rec, report, [suite])
    assert (rec.denied, rec.alerts, rec.alerts_unexplained, rec.healed) == (1, 3, 1, 0)
    assert rec.alert_samples == ["not the suite's"]
    assert rec.denials == [f"write to '/x' denied [at {suite}/tests/test_x.py:5]"]
    assert rec.pyward_errors == ["[sandbox/internal] boom"]


def test_read_report_takes_the_manifest_s_own_alerts(tmp_path) -> None:
    """An alert the manifest names (target, place) is the suite's: code a test pipes to a Python child has no file."""
    events = [{"engine": "tamper", "kind": "alert", "severity": "alert", "message": "child", "name": name,
               "where": "<stdin>:13", "details": {}} for name in ("builtins.__import__", "builtins.open")]
    report = tmp_path / "r.json"
    report.write_text(json.dumps({"summary": {"denied": 0, "tamper_alerts": 2, "healed": 0}, "events": events}))
    rec = harness.Record("suite", "x", "3.12", "run")
    harness.read_report(rec, report, [tmp_path / "src"], [("builtins.__import__", "<stdin>:")])
    assert (rec.alerts, rec.alerts_unexplained) == (2, 1)
