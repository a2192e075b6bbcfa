"""`pytest --pyward-tamper`: the plugin registered through the pytest11 entry point.

Each test runs pytest in a subprocess on a small test file, the way a user would.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap

from helpers import clean_env

TESTS = """
    import builtins, os, subprocess

    def fake(*args):
        return 0

    def test_leaks_os_system():
        os.system = fake

    def test_undoes_its_patch(monkeypatch):
        monkeypatch.setattr(builtins, "open", lambda *a: None)
        monkeypatch.setattr(subprocess, "Popen", fake)

    def test_leaks_a_watched_name():
        import json
        json.dumps = fake

    def test_plain():
        assert True
"""


def run_pytest(tmp_path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_pollution.py").write_text(textwrap.dedent(TESTS))
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args,
                           "test_pollution.py"], cwd=tmp_path, env=clean_env(), capture_output=True,
                          text=True, timeout=120)


def test_reports_each_test_that_leaves_a_sealed_target_patched(tmp_path):
    run = run_pytest(tmp_path, "--pyward-tamper", "--pyward-tamper-watch=json.dumps")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "pyward tamper: sealed targets left patched" in run.stdout
    assert ("test_pollution.py::test_leaks_os_system: os.system left as <function fake at "
            in run.stdout)
    assert "(was <builtin_function_or_method system>)" in run.stdout
    assert "test_pollution.py::test_leaks_a_watched_name: json.dumps left as <function fake" in run.stdout
    leaks = [line for line in run.stdout.splitlines() if " left as " in line]
    assert len(leaks) == 2, leaks  # the monkeypatch test undid its patches; nothing else is blamed


def test_fail_option_turns_a_leak_into_a_failed_session(tmp_path):
    run = run_pytest(tmp_path, "--pyward-tamper", "--pyward-tamper-fail")
    assert run.returncode == 1, run.stdout + run.stderr
    assert "4 passed" in run.stdout


def test_clean_session_says_so(tmp_path):
    (tmp_path / "test_ok.py").write_text("def test_ok():\n    assert 1\n")
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--pyward-tamper",
                          "test_ok.py"], cwd=tmp_path, env=clean_env(), capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "pyward tamper: no test left a sealed target patched" in run.stdout


def test_inert_without_the_option(tmp_path):
    run = run_pytest(tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "pyward" not in run.stdout
    assert "4 passed" in run.stdout
