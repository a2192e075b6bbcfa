"""--fail-on, `pyward report` (json) and the bad input of the CI outputs."""
from __future__ import annotations

import json
import os
import textwrap

import pytest

from ci_programs import BUGGY, ENFORCE, FINDINGS, report, run
from helpers import pyward, pyward_lines

DENY_ONCE = """\
import sys
try:
    open("/etc/hostname")
except PermissionError:
    pass
print("ok")
"""

PATCH = """\
import os
os.system = print
print("ok")
"""


def one_error_line(result) -> str:
    lines = pyward_lines(result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1, result.stderr
    return lines[0]


# --- --fail-on ------------------------------------------------------------------


def test_without_fail_on_a_denial_keeps_status_0(tmp_path):
    result = run(tmp_path, DENY_ONCE, *ENFORCE)
    assert result.returncode == 0 and result.stdout == "ok\n"


def test_fail_on_denied_fails_a_run_that_succeeded(tmp_path):
    result = run(tmp_path, DENY_ONCE, *ENFORCE, "--fail-on", "denied")
    assert result.returncode == 77, result.stderr
    assert result.stdout == "ok\n"  # the program ran as it would
    assert any("but 1 denied: --fail-on denied: exit status 77" in line for line in pyward_lines(result.stderr))
    data = report(tmp_path)
    assert data["run"]["exit_status"] == 77
    (event,) = [e for e in data["events"] if e["kind"] == "fail_on"]
    assert event["details"] == {"fail_on": ["denied"], "happened": {"denied": 1}, "exit_status": 77}


def test_fail_on_ignores_what_did_not_happen(tmp_path):
    result = run(tmp_path, DENY_ONCE, *ENFORCE, "--fail-on", "tamper,heal")
    assert result.returncode == 0, result.stderr


def test_fail_on_tamper_and_the_gravest_decides(tmp_path):
    source = PATCH + DENY_ONCE
    assert run(tmp_path, source, *ENFORCE, "--fail-on", "tamper").returncode == 78
    both = run(tmp_path, source, *ENFORCE, "--fail-on", "denied,tamper")
    assert both.returncode == 78, both.stderr
    assert any("1 tamper alert, 1 denied" in line for line in pyward_lines(both.stderr))
    assert run(tmp_path, source, *ENFORCE, "--fail-on", "all").returncode == 78
    assert run(tmp_path, source, *ENFORCE, "--fail-on", "denied").returncode == 77


def test_the_programs_own_failure_wins(tmp_path):
    result = run(tmp_path, DENY_ONCE + "sys.exit(3)\n", *ENFORCE, "--fail-on", "denied")
    assert result.returncode == 3
    assert not any("--fail-on" in line for line in pyward_lines(result.stderr))


def test_sys_exit_0_is_success_too(tmp_path):
    result = run(tmp_path, DENY_ONCE + "sys.exit(0)\n", *ENFORCE, "--fail-on", "denied")
    assert result.returncode == 77, result.stderr
    assert report(tmp_path)["run"]["exit_status"] == 77


def test_fail_on_heal_and_its_alias_judge_the_whole_healed_run(tmp_path):
    result = run(tmp_path, BUGGY, "--no-config", "--heal", "--fail-on", "heal")
    assert result.returncode == 79, result.stderr
    assert "exit=79" in pyward_lines(result.stderr)[-1]
    again = run(tmp_path, BUGGY, "--no-config", "--heal", "--fail-on-heal")  # the stored patch fires: still 79
    assert again.returncode == 79, again.stderr
    assert run(tmp_path, BUGGY, "--no-config", "--heal").returncode == 0


def test_fail_on_from_the_config_file(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.pyward]\nmode = "enforce"\nfail_on = ["denied"]\n'
                                             '[tool.pyward.permissions]\nread = ["/nonexistent"]\n')
    (tmp_path / "app.py").write_text(DENY_ONCE)
    assert pyward("run", "app.py", cwd=tmp_path).returncode == 77
    (tmp_path / "pyproject.toml").write_text('[tool.pyward]\nfail_on = ["denied", "crashed"]\n')
    bad = pyward("run", "app.py", cwd=tmp_path)
    assert bad.returncode == 2
    line = one_error_line(bad)
    assert line.startswith("[pyward][error] pyproject.toml: [tool.pyward] fail_on: unknown 'crashed'"), line


def test_an_unknown_fail_on_kind_is_a_usage_error(tmp_path):
    (tmp_path / "app.py").write_text("print('never')\n")
    result = pyward("run", "--fail-on", "denied,crashed", "app.py", cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert "argument --fail-on: unknown 'crashed'" in one_error_line(result)


# --- --sarif at the end of a run -------------------------------------------------


@pytest.mark.parametrize("status", [0, 3])
def test_an_unwritable_sarif_path_is_one_error_and_the_programs_status(tmp_path, status):
    (tmp_path / "app.py").write_text(f"import sys\nprint('out')\nsys.exit({status})\n")
    result = pyward("run", "-q", "--no-config", "--sarif", str(tmp_path / "missing" / "x.sarif"), "app.py",
                    cwd=tmp_path)
    assert result.returncode == status and result.stdout == "out\n"
    line = one_error_line(result)
    assert line.startswith("[pyward][error] SARIF not written to ") and "No such file or directory" in line


def test_sarif_without_a_report(tmp_path):
    result = run(tmp_path, DENY_ONCE, *ENFORCE, "--no-report", "--sarif", "x.sarif")
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "report.json").exists()
    log = json.loads((tmp_path / "x.sarif").read_text())
    assert [r["ruleId"] for r in log["runs"][0]["results"]] == ["pyward.sandbox.denied.read"]


# --- pyward report ---------------------------------------------------------------


@pytest.fixture(scope="module")
def a_report(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("report")
    assert run(tmp_path, FINDINGS, *ENFORCE).returncode == 0
    return tmp_path / "report.json"


def test_report_json_is_the_report_as_is(a_report, tmp_path):
    out = pyward("report", str(a_report), "--format", "json")
    assert out.returncode == 0 and out.stderr == ""
    assert json.loads(out.stdout) == json.loads(a_report.read_text())
    to_file = pyward("report", str(a_report), "-o", str(tmp_path / "r.json"))
    assert to_file.returncode == 0 and to_file.stdout == ""
    assert json.loads((tmp_path / "r.json").read_text()) == json.loads(a_report.read_text())
    assert os.listdir(tmp_path) == ["r.json"]  # no temporary file left behind


def test_an_altered_report_is_rendered_and_says_so(a_report, tmp_path):
    data = json.loads(a_report.read_text())
    data["events"][3]["message"] = "nothing to see"
    altered = tmp_path / "altered.json"
    altered.write_text(json.dumps(data))
    out = pyward("report", str(altered), "--format", "sarif", "-o", str(tmp_path / "a.sarif"))
    assert out.returncode == 1
    assert "ALTERED: first bad event: event #4" in one_error_line(out)
    log = json.loads((tmp_path / "a.sarif").read_text())
    assert log["runs"][0]["properties"]["pyward"]["verdict"] == "altered"


@pytest.mark.parametrize("case", ["unknown format", "cut mid-line", "not pyward's", "not JSON at all", "missing",
                                  "unwritable output"])
def test_bad_input_is_one_line_and_status_2(a_report, tmp_path, case):
    raw = a_report.read_text()
    target, args = tmp_path / "r.json", []
    if case == "unknown format":
        target, args = a_report, ["--format", "xml"]
    elif case == "cut mid-line":
        lines = raw.splitlines(keepends=True)
        target.write_text("".join(lines[:len(lines) // 2]) + lines[len(lines) // 2][:7])
    elif case == "not pyward's":
        target.write_text(json.dumps({"version": "2.1.0", "runs": []}))
    elif case == "not JSON at all":
        target.write_text("<html></html>")
    elif case == "unwritable output":
        target, args = a_report, ["-o", str(tmp_path / "no" / "such" / "dir.html"), "--format", "html"]
    out = pyward("report", str(target), *args)
    assert out.returncode == 2 and out.stdout == ""
    line = one_error_line(out)
    expected = {"unknown format": "invalid choice: 'xml'", "cut mid-line": "is not JSON",
                "not pyward's": "is not a pyward report", "not JSON at all": "is not JSON",
                "missing": "cannot read", "unwritable output": "cannot write"}[case]
    assert line.startswith("[pyward][error] ") and expected in line, line


# --- pre-commit -------------------------------------------------------------------


def test_pre_commit_hook_runs_pyward_run():
    path = os.path.join(os.path.dirname(__file__), "..", ".pre-commit-hooks.yaml")
    with open(path) as f:
        entries = [line for line in f if not line.lstrip().startswith("#") and line.strip()]
    fields = dict(line.strip().lstrip("- ").split(": ", 1) for line in entries)
    assert fields["id"] == "pyward-run"
    assert fields["entry"] == "pyward run"
    assert fields["language"] == "python"
    assert fields["pass_filenames"] == "false"


DENIED_THEN_GONE = """
    import os, sys, time
    try:
        open("/etc/hostname")
    except PermissionError:
        print("denied", flush=True)
    if sys.argv[1:] == ["kill"]:
        import signal
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(60)  # killed by the test, with its recorder
"""


def _renders_incomplete(tmp_path, expected_format):
    verify = pyward("verify", "r.json", cwd=tmp_path)
    assert verify.returncode == 3 and "did not end normally" in verify.stdout + verify.stderr
    for fmt in ("json", "sarif", "html"):
        out = pyward("report", "r.json", "--format", fmt, "-o", f"out.{fmt}", cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        lines = pyward_lines(out.stderr)
        assert len(lines) == 1 and "did not end normally" in lines[0], lines
    data = json.loads((tmp_path / "out.json").read_text())
    assert data["format"] == expected_format and data["run"]["pid"] > 0
    assert any(e["kind"] == "denied" and e["name"] == "/etc/hostname" for e in data["events"]), data["events"]
    html = (tmp_path / "out.html").read_text()
    assert 'data-verdict="incomplete"' in html and "/etc/hostname" in html
    sarif = json.loads((tmp_path / "out.sarif").read_text())
    assert sarif["runs"][0]["results"], sarif["runs"][0]


def test_a_run_killed_by_a_signal_renders_as_an_incomplete_run(tmp_path):
    """The recorder writes the report of a program killed by a signal: every format says so."""
    (tmp_path / "app.py").write_text(textwrap.dedent(DENIED_THEN_GONE))
    run = pyward("run", "--mode", "enforce", "--report", "r.json", "app.py", "kill", cwd=tmp_path)
    assert run.returncode == -9 and run.stdout == "denied\n", run.stderr
    _renders_incomplete(tmp_path, "pyward.report")


def test_the_journal_of_a_killed_run_renders_as_an_incomplete_run(tmp_path):
    """A run killed whole (the program and its recorder, as a machine that goes down) leaves the
    sealed journal at its report path: `pyward report` renders what was recorded."""
    import signal
    import subprocess
    import sys

    from helpers import clean_env, recorders_of, wait_for_text

    (tmp_path / "app.py").write_text(textwrap.dedent(DENIED_THEN_GONE))
    proc = subprocess.Popen([sys.executable, "-m", "pyward", "run", "--mode", "enforce", "--report", "r.json",
                             "app.py"], cwd=tmp_path, env=clean_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "denied\n"
        assert wait_for_text(tmp_path / "r.json", "/etc/hostname")  # the recorder has the denial on disk
        for pid in [*recorders_of(proc.pid), proc.pid]:
            os.kill(pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    _renders_incomplete(tmp_path, "pyward.journal")
