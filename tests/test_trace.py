"""`pyward trace`: the program's audit events on stderr, the same ones a raw
sys.addaudithook printer sees, and the program otherwise exactly as under python."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from helpers import clean_env

#: the `pyward` command (python -m pyward loads runpy and importlib.util for pyward itself, so a program's
#: imports of those are not in its trace: see `fresh_imports` in src/pyward/trace.py)
PYWARD = [str(Path(sys.executable).parent / "pyward")]

PRINTER = """
    import sys
    def _printer(event, args):
        sys.stderr.write(f"RAW {event}\\n")
    sys.addaudithook(_printer)
"""
#: files, a directory listing, imports of modules pyward itself uses (json, re, enum...), DNS of
#: localhost, a child process, a temporary directory, an exit handler
BODY = """
    import atexit, json, os, socket, subprocess, tempfile
    with open(__file__) as f:
        f.read()
    os.listdir(".")
    socket.getaddrinfo("localhost", 80)
    subprocess.run(["true"])
    with tempfile.TemporaryDirectory() as d:
        open(os.path.join(d, "x"), "w").close()
    atexit.register(lambda: os.listdir("/"))
    print(json.dumps({"ok": True}))
"""


def run(cmd: list[str], cwd, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=120, **kw)


def traced_names(stderr: str) -> list[str]:
    return [line[len("[audit] "):].partition(": ")[0] for line in stderr.splitlines() if line.startswith("[audit] ")]


def test_trace_prints_the_events_a_raw_printer_prints_in_order(tmp_path):
    (tmp_path / "app.py").write_text(textwrap.dedent(PRINTER) + textwrap.dedent(BODY))
    raw = run([sys.executable, "app.py"], tmp_path)
    traced = run([*PYWARD, "trace", "app.py"], tmp_path)
    assert raw.returncode == traced.returncode == 0, traced.stderr
    assert raw.stdout == traced.stdout == '{"ok": true}\n'
    expected = [line[4:] for line in raw.stderr.splitlines() if line.startswith("RAW ")]
    names = traced_names(traced.stderr)
    # the printer does not see its own installation: the trace does, then both see the same events
    start = names.index("sys.addaudithook")
    assert names[start + 1:] == expected
    assert len(expected) > 50 and {"open", "import", "os.listdir", "socket.getaddrinfo", "subprocess.Popen",
                                    "os.mkdir", "shutil.rmtree"} <= set(expected)
    # the raw printer's lines interleave with the trace's: each event is printed as it happens
    lines = [line for line in traced.stderr.splitlines() if line.startswith(("RAW ", "[audit] "))]
    pairs = lines[start + 1:]
    assert [line[len("[audit] "):].partition(":")[0] for line in pairs[0::2]] == [line[4:] for line in pairs[1::2]]


def test_the_program_runs_as_under_python(tmp_path):
    code = """
        import sys
        print(sys.argv, __name__, sys.path[0] == {dir!r})
        sys.stdout.flush()
        print("to stderr", file=sys.stderr)
        sys.exit(3)
    """.format(dir=str(tmp_path))
    (tmp_path / "app.py").write_text(textwrap.dedent(code))
    plain = run([sys.executable, "app.py", "a", "--b"], tmp_path)
    traced = run([sys.executable, "-m", "pyward", "trace", "app.py", "a", "--b"], tmp_path)
    assert (traced.stdout, traced.returncode) == (plain.stdout, plain.returncode) == (
        "['app.py', 'a', '--b'] __main__ True\n", 3)
    assert "to stderr" in traced.stderr and not any(line.startswith("[pyward]") for line in traced.stderr.splitlines())


def test_module_and_crash(tmp_path):
    (tmp_path / "data.json").write_text('{"a": [1, 2]}')
    plain = run([sys.executable, "-m", "json.tool", "data.json"], tmp_path)
    traced = run([sys.executable, "-m", "pyward", "trace", "-m", "json.tool", "data.json"], tmp_path)
    assert (traced.stdout, traced.returncode) == (plain.stdout, 0)
    assert "[audit] open: ('data.json', 'r'," in traced.stderr
    code = "import sys; sys.addaudithook(lambda e, a: sys.stderr.write(f'RAW {e}\\n')); 1/0"
    crash = run([*PYWARD, "trace", "-c", code], tmp_path)
    plain = run([sys.executable, "-c", code], tmp_path)
    assert crash.returncode == plain.returncode == 1
    names = traced_names(crash.stderr)
    # python's own handling of the crash (sys.excepthook, and on 3.13 the imports of its traceback printer),
    # not pyward's walk of the traceback
    assert names[names.index("sys.addaudithook") + 1:] == [line[4:] for line in plain.stderr.splitlines()
                                                           if line.startswith("RAW ")]
    assert names[names.index("sys.addaudithook") + 1] == "sys.excepthook"
    def traceback(stderr: str) -> list[str]:
        return [line for line in stderr.splitlines() if not line.startswith(("[audit]", "RAW "))]
    assert traceback(crash.stderr) == traceback(plain.stderr)


def test_events_filter_log_and_summaries(tmp_path):
    code = """
        import marshal, os
        marshal.loads(marshal.dumps(b"x" * 1000))
        exec(compile("y = 1", "<made>", "exec"))
        os.listdir(".")
        open("a-very-long-name-" + "x" * 200, "w").close()
    """
    (tmp_path / "app.py").write_text(textwrap.dedent(code))
    traced = run([sys.executable, "-m", "pyward", "trace", "--events", "marshal.*,exec,open", "--log", "ev.jsonl",
                  "app.py"], tmp_path)
    assert traced.returncode == 0, traced.stderr
    lines = traced.stderr.splitlines()
    assert traced_names(traced.stderr) == ["marshal.dumps", "marshal.loads", "exec", "open"]
    assert "[audit] marshal.loads: (<1005 bytes>,)" in lines
    assert "[audit] exec: (<code <module> at <made>:1>,)" in lines
    opened = next(line for line in lines if line.startswith("[audit] open: "))
    assert "…" in opened and len(opened) < 250
    records = [json.loads(line) for line in (tmp_path / "ev.jsonl").read_text().splitlines()]
    assert [r["event"] for r in records] == traced_names(traced.stderr)
    assert records[-1]["args"][1:] == ["w", records[-1]["args"][2]] and isinstance(records[-1]["args"][2], int)


@pytest.mark.parametrize("argv,message", [(["trace"], "nothing to run"),
                                          (["trace", "--mode=enforce", "app.py"], "unrecognized arguments"),
                                          (["trace", "--events", ",", "app.py"], "--events takes")])
def test_usage_errors(tmp_path, argv, message):
    result = run([sys.executable, "-m", "pyward", *argv], tmp_path)
    assert result.returncode == 2 and message in result.stderr


def test_help(tmp_path):
    result = run([sys.executable, "-m", "pyward", "trace", "--help"], tmp_path)
    assert result.returncode == 0 and "--events GLOB" in result.stdout and "sys.addaudithook" in result.stdout
