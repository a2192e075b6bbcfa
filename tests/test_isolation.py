"""pyward's record keeps real time and real hashes whatever the program patches.

freezegun, started and never stopped, replaces time.time, time.gmtime,
time.strftime and datetime in every loaded module; a test suite's mocks
replace hashlib.sha256 or json.dumps.  The journal, the report, its
a learned policy and a heal recipe are pyward's, made with the
functions as they were when pyward started.
"""
from __future__ import annotations

import datetime
import json
import sqlite3
import textwrap
import time

import pytest

from helpers import pyward

pytest.importorskip("freezegun")  # a test extra: make test installs it

FROZEN = """
    import freezegun
    freezegun.freeze_time("2001-01-01").start()  # never stopped
"""


def _real(stamp: str, before: float, after: float) -> bool:
    """An RFC 3339 UTC stamp inside [before, after] (wall-clock seconds)."""
    when = datetime.datetime.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
    return before - 1 <= when.timestamp() <= after + 1


def _report(tmp_path) -> dict:
    (path,) = (tmp_path / ".pyward" / "reports").glob("*.json")
    return json.loads(path.read_text())


def test_freezegun_never_dates_the_journal_or_the_report(tmp_path):
    (tmp_path / "app.py").write_text(textwrap.dedent(FROZEN) + textwrap.dedent("""
        import datetime, time
        print(datetime.datetime.now().year, int(time.time()))
        open("/etc/hostname").close()  # an event journaled while the clock is frozen
        time.sleep(0.05)
    """))
    before = time.time()
    run = pyward("run", "-v", "--log", "events.jsonl", "app.py", cwd=tmp_path)
    after = time.time()
    assert run.returncode == 0 and run.stdout == "2001 978307200\n", run.stderr  # the program's clock is frozen
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert events and all(_real(e["time"], before, after) for e in events), [e["time"] for e in events]
    report = _report(tmp_path)
    assert _real(report["run"]["start"], before, after) and _real(report["run"]["end"], before, after)
    assert 0.05 <= report["run"]["duration_s"] <= after - before
    assert all(_real(e["time"], before, after) for e in report["events"])
    verify = pyward("verify", str(next((tmp_path / ".pyward" / "reports").glob("*.json"))), cwd=tmp_path)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_freezegun_never_dates_a_heal_recipe(tmp_path):
    (tmp_path / "app.py").write_text(textwrap.dedent(FROZEN) + textwrap.dedent("""
        def first(xs):
            return xs[0]
        print(first([1]), first([]))
    """))
    before = time.time()
    run = pyward("run", "--heal", "app.py", cwd=tmp_path)
    after = time.time()
    assert run.returncode == 0 and run.stdout.endswith("1 None\n"), run.stderr
    with sqlite3.connect(tmp_path / ".pyward" / "heal.db") as db:
        (created,) = db.execute("SELECT created FROM recipes").fetchone()
    assert before - 1 <= created <= after + 1
    again = pyward("run", "--heal", "app.py", cwd=tmp_path)  # the recipe is fresh, so it applies
    assert again.stdout == "1 None\n" and "already healed" in again.stderr, again.stderr


def test_freezegun_never_dates_a_learned_policy(tmp_path):
    (tmp_path / "app.py").write_text(textwrap.dedent(FROZEN) + textwrap.dedent("""
        open("/etc/hostname").close()
    """))
    run = pyward("learn", "-o", "policy.toml", "app.py", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert time.strftime("%Y-%m-%d") in (tmp_path / "policy.toml").read_text().splitlines()[0]


def test_a_program_that_mocks_hashing_time_and_json_still_gets_a_report_that_verifies(tmp_path):
    (tmp_path / "app.py").write_text(textwrap.dedent("""
        import hashlib, json, os, time
        hashlib.sha256 = lambda *a, **k: None
        json.dumps = lambda *a, **k: "mocked"
        json.loads = lambda *a, **k: {}
        time.time = lambda: 0.0
        time.gmtime = lambda *a: time.struct_time((2001, 1, 1, 0, 0, 0, 0, 1, 0))
        os.replace = lambda *a, **k: None
        open("/etc/hostname").close()
        print("done")
    """))
    run = pyward("run", "--no-tamper", "app.py", cwd=tmp_path)
    assert run.returncode == 0 and run.stdout == "done\n", run.stderr
    assert "report not written" not in run.stderr and "report: " in run.stderr, run.stderr
    report = _report(tmp_path)
    assert report["run"]["start"].startswith(str(datetime.date.today().year))
    (path,) = (tmp_path / ".pyward" / "reports").glob("*.json")
    verify = pyward("verify", str(path), cwd=tmp_path)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_pywards_types_are_the_stdlibs():
    import types

    from pyward import _types

    for name in _types.__all__:
        assert getattr(_types, name) is getattr(types, name), name
