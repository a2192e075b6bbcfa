"""The command line: help, version, and how `run` splits pyward's options from the program's."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from helpers import clean_env, pyward
from pyward import __version__, commandline


def test_help_and_python_m_are_the_same():
    a = pyward("--help")
    script = os.path.join(os.path.dirname(sys.executable), "pyward")
    b = subprocess.run([script, "--help"], capture_output=True, text=True, env=clean_env(), timeout=30)
    assert a.returncode == b.returncode == 0
    assert a.stdout == b.stdout
    for command in ("run", "verify", "sign", "keygen", "config"):
        assert command in a.stdout


def test_version():
    result = pyward("--version")
    assert result.returncode == 0 and result.stdout.startswith(f"pyward {__version__} (python ")


def test_run_help():
    result = pyward("run", "--help")
    assert result.returncode == 0
    assert "pyward run [options] (SCRIPT | -m MODULE | -c CODE | -)" in result.stdout
    assert "--no-report" in result.stdout


def test_no_command_prints_help():
    result = pyward()
    assert result.returncode == 2 and "COMMAND" in result.stdout


@pytest.mark.parametrize("argv, problem", [
    (["run", "--bogus", "x.py"], "unrecognized arguments: --bogus"),
    (["run"], "nothing to run"),
    (["run", "--color", "pink", "x.py"], "invalid choice: 'pink'"),
    (["run", "-m"], "-m: expected one argument"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
])
def test_usage_errors_are_one_line(argv, problem):
    result = pyward(*argv)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("[pyward][error] ") and problem in lines[0]


def split(*argv):
    options, target, args = commandline.split_run_args(list(argv))
    return options, (target.kind, target.value) if target else None, args


@pytest.mark.parametrize("argv, expected", [
    (["app.py", "a", "--quiet"], ([], ("script", "app.py"), ["a", "--quiet"])),
    (["-q", "--log", "x.jsonl", "app.py"], (["-q", "--log", "x.jsonl"], ("script", "app.py"), [])),
    (["--log=x.jsonl", "app.py", "-v"], (["--log=x.jsonl"], ("script", "app.py"), ["-v"])),
    (["--", "-weird.py", "x"], ([], ("script", "-weird.py"), ["x"])),
    (["-m", "http.server", "8000", "-q"], ([], ("module", "http.server"), ["8000", "-q"])),
    (["-mjson.tool", "f"], ([], ("module", "json.tool"), ["f"])),
    (["-v", "-c", "print(1)", "--log", "z"], (["-v"], ("code", "print(1)"), ["--log", "z"])),
    (["-cpass"], ([], ("code", "pass"), [])),
    (["-", "a"], ([], ("stdin", "-"), ["a"])),
    (["--config", "c.toml", "--no-config", "app.py"],
     (["--config", "c.toml", "--no-config"], ("script", "app.py"), [])),
    (["-q"], (["-q"], None, [])),
])
def test_split_run_args(argv, expected):
    assert split(*argv) == expected


@pytest.mark.parametrize("options", [
    [], ["-q"], ["-v"], ["-v", "-v"], ["--verbose"], ["--color", "never"], ["--color=always"],
    ["--log", "a.jsonl"], ["--report", "r.json"], ["--no-report"], ["--config", "c.toml"], ["--no-config"],
    ["-q", "--log=x", "--no-report", "--color", "auto"],
])
def test_fast_parser_agrees_with_argparse(options):
    fast = commandline.parse_run_options(options)
    slow = vars(commandline.build_parser()[1]["run"].parse_args(options))
    assert fast is not None
    assert fast == slow


@pytest.mark.parametrize("options", [["-h"], ["-qv"], ["-vv"], ["--bogus"], ["--color", "pink"], ["--log"],
                                     ["--quiet=1"]])
def test_fast_parser_defers_anything_unusual(options):
    assert commandline.parse_run_options(options) is None


def test_clustered_short_flags_still_work(tmp_path):
    (tmp_path / "app.py").write_text("print('hi')\n")
    result = pyward("run", "-vv", "app.py", cwd=tmp_path)
    assert result.returncode == 0 and "run start" in result.stderr


def test_channel_variables_are_reruns():
    from pyward import rerun

    assert commandline.CHANNEL_VARIABLES == (rerun.RERUN_VARIABLE, rerun.TAP_VARIABLE)


def test_a_plain_run_imports_no_rerun_machinery(tmp_path):
    """rerun.py serves re-runs and watched runs only: a run without its channel does not import it."""
    (tmp_path / "app.py").write_text("import sys\nprint('pyward.rerun' in sys.modules)\n")
    proc = pyward("run", "-q", "app.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "False\n"


@pytest.mark.parametrize("parser", ["fast", "argparse"])
def test_a_flag_given_again_adds_to_it(tmp_path, parser):
    """`--deny-read=a --deny-read=b` denies both (the last alone would drop a deny rule without a word),
    `--allow-run=x --allow-run=y` allows both; by the fast parser and by argparse (-qv defers to it)."""
    (tmp_path / "a.txt").write_text("A")
    (tmp_path / "b.txt").write_text("B")
    (tmp_path / "app.py").write_text(
        "import subprocess\n"
        "for name in ('a.txt', 'b.txt'):\n"
        "    try:\n"
        "        open(name).read()\n"
        "        print(name, 'read')\n"
        "    except PermissionError:\n"
        "        print(name, 'denied')\n"
        "for command in (['true'], ['echo', 'x']):\n"
        "    print(command[0], subprocess.run(command, capture_output=True).returncode)\n")
    quiet = ["-q"] if parser == "fast" else ["-qv"]
    result = pyward("run", *quiet, "--no-config", "--allow-read=.", "--deny-read=a.txt", "--deny-read=b.txt",
                    "--allow-env=PATH", "--allow-run=true", "--allow-run=echo", "app.py", cwd=tmp_path)
    assert result.stdout.splitlines() == ["a.txt denied", "b.txt denied", "true 0", "echo 0"], result.stderr
    assert commandline.parse_run_options(["--allow-read", "--allow-read=x"]) == {
        "config": None, "no_config": False, "permissions_read": True}  # once bare: everything


def test_a_list_flag_given_again_adds_to_it():
    parser = commandline.build_parser()[1]["run"]
    args = parser.parse_args(["--fail-on=denied", "--fail-on=tamper", "--watch=m.a", "--watch=m.b"])
    assert args.fail_on == ["denied", "tamper"] and args.tamper_watch == "m.a,m.b"
    assert commandline.parse_run_options(["--fail-on=denied", "--fail-on=tamper"])["fail_on"] == ["denied", "tamper"]
