"""Programs for the CI output tests (SARIF, HTML, --fail-on): real runs under pyward."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

from helpers import pyward

#: 150 denied reads from one line (beyond the journal's repeat limit), one denied
#: environment variable whose name is markup, one tamper alert (builtins.open rebound).
FINDINGS = """\
import builtins, os

def scan():
    for _ in range(150):
        try:
            open("/etc/hostname")
        except PermissionError:
            pass

def peek():
    try:
        os.environ["X<script>window.__xss=1</script>"]
    except (PermissionError, KeyError):
        pass

scan()
peek()
real = builtins.open
def fake_open(*a, **k):
    return real(*a, **k)
builtins.open = fake_open
print("done")
"""
SCAN_LINE, PEEK_LINE, PATCH_LINE = 6, 12, 21

#: A crash the heal engine heals (line 5), then re-runs.
BUGGY = """\
users = {"ada": {"bio": "mathematician"}, "bob": None}

def get_bio(name):
    profile = users.get(name)
    return profile["bio"]

for name in ["ada", "bob"]:
    print(name, get_bio(name))
"""
BUGGY_LINE = 5

ENFORCE = ("--no-config", "--mode", "enforce", "--allow-read=/nonexistent")


def run(tmp_path: Path, source: str, *flags: str, name: str = "app.py"):
    """`pyward run FLAGS app.py` in tmp_path with a report at tmp_path/report.json."""
    (tmp_path / name).write_text(textwrap.dedent(source))
    return pyward("run", "--report", "report.json", *flags, name, cwd=tmp_path)


def report(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "report.json").read_text())
