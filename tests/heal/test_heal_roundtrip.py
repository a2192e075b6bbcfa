"""The round-trip harness (heal_roundtrip.py) on real standard-library modules:
guards synthesised at every instruction where one could apply, verified,
instructions outside them unchanged, and the module's own CPython tests pass.
Every fabricated crash also goes through the crash-shape registry."""
from __future__ import annotations

import functools
import json
import pathlib
import subprocess
import sys

import pytest

from helpers import clean_env
from pyward.heal.analyse import KINDS

HARNESS = pathlib.Path(__file__).with_name("heal_roundtrip.py")
MODULES = [("textwrap", "test.test_textwrap"), ("shlex", "test.test_shlex"), ("fractions", "test.test_fractions"),
           ("difflib", "test.test_difflib"), ("configparser", "test.test_configparser"),
           ("ipaddress", "test.test_ipaddress"), ("calendar", "test.test_calendar"), ("string", "test.test_string")]


@functools.lru_cache(maxsize=None)
def run_harness(module: str, tests: str) -> dict:
    run = subprocess.run([sys.executable, str(HARNESS), module, tests], capture_output=True, text=True,
                         env=clean_env(), timeout=600, cwd=HARNESS.parent)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(("module", "tests"), MODULES, ids=[m for m, _ in MODULES])
def test_guards_everywhere_keep_the_module_tests_passing(module, tests):
    stats = run_harness(module, tests)
    guards = sum(stats["guards"].values())
    assert guards >= 40, stats["guards"]  # every module here has dozens of guardable instructions
    assert stats["guarded_functions"] >= stats["functions"] // 2, stats
    assert stats["refused"] == []  # the gate refuses nothing that synthesis built correctly
    # guards that skip a statement or return get a handler and an exception-table entry: the module's own
    # exceptions go through them to their original handlers
    assert stats["recoveries"].get("skip", 0) + stats["recoveries"].get("return", 0) > 0, stats["recoveries"]
    assert stats["violations"] == []  # valid inputs: every helper returned its slot unchanged
    assert stats["executions"] > 100  # the tests really ran through the guarded code
    assert stats["tests"] > 5 and stats["test_failures"] == [], stats["test_failures"][:5]
    # the crash-shape registry: a shape seen in one function gives, in another, the analysis's own site
    assert stats["shapes_recognised"] > 0 and stats["shape_mismatches"] == [], stats["shape_mismatches"][:3]


def test_the_modules_exercise_every_guard_kind():
    seen = {kind for module, tests in MODULES for kind in run_harness(module, tests)["guards"]}
    assert seen == set(KINDS), sorted(seen)
