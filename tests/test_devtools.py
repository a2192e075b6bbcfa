"""The program's debuggers, profilers and tracers see the program, as under python.

pyward's Python runs inside the program's operations (a verdict on an open or an
import, its journaling, a tamper report): with the thread marked as tracing while it
does (shield.c), no trace, profile or monitoring event fires in pyward's frames, so
pdb's `step` does not stop in them and a profile or a coverage count lists only the
program's code.  Each test compares with plain python."""
from __future__ import annotations

import subprocess
import sys

import pytest

from helpers import clean_env
from test_runner_fidelity import D, assert_same, both, materialise

STEP = D("""
    import os
    def f():
        n = len(os.listdir("/"))
        import colorsys
        return n > 0
    print(f())
""")

# the files whose functions a profile hook sees called, in the order first seen (not
# the import system's: which of its finders runs depends on the path importer cache)
PROFILED = D("""
    import os, sys
    seen = []
    def hook(frame, event, arg):
        name = frame.f_code.co_filename
        if event == "call" and name not in seen and not name.startswith("<frozen"):
            seen.append(name)
    sys.setprofile(hook)
    with open(__file__) as f:
        f.read()
    os.listdir(".")
    import colorsys
    sys.setprofile(None)
    print(seen)
""")

# a sys.monitoring tool of the program's own (tool ids 0-5 are the program's)
MONITORED = D("""
    import sys
    mon = sys.monitoring
    seen = []
    def start(code, offset):
        if code.co_filename not in seen and not code.co_filename.startswith("<frozen"):
            seen.append(code.co_filename)
    mon.use_tool_id(0, "app")
    mon.register_callback(0, mon.events.PY_START, start)
    mon.set_events(0, mon.events.PY_START)
    with open(__file__) as f:
        f.read()
    import colorsys
    mon.set_events(0, 0)
    mon.free_tool_id(0)
    print(seen)
""")

APP = D("""
    import os
    def main():
        with open(__file__) as f:
            f.read()
        import colorsys
        print(len(os.listdir("/")) > 0)
    main()
""")


def test_pdb_step_into_an_import_stops_where_python_does(tmp_path):
    materialise(tmp_path, {"app.py": STEP})
    commands = b"b 3\nc\n" + b"s\n" * 6 + b"c\n"
    plain, guarded = both(["-m", "pdb", "app.py"], tmp_path, commands)
    assert b"importlib._bootstrap" in plain.stdout  # the steps do reach the import system
    assert_same(plain, guarded)


def test_a_profile_hook_sees_only_the_programs_calls(tmp_path):
    materialise(tmp_path, {"app.py": PROFILED})
    plain, guarded = both(["app.py"], tmp_path)
    assert b"colorsys" in plain.stdout
    assert_same(plain, guarded)


@pytest.mark.skipif(sys.version_info < (3, 12), reason="sys.monitoring is 3.12+")
def test_a_monitoring_tool_sees_only_the_programs_code(tmp_path):
    materialise(tmp_path, {"app.py": MONITORED})
    plain, guarded = both(["app.py"], tmp_path)
    assert b"colorsys" in plain.stdout
    assert_same(plain, guarded)


def test_trace_count_writes_the_same_cover_files(tmp_path):
    materialise(tmp_path, {"app.py": APP})
    def count(*launcher: str, into: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([*launcher, "-m", "trace", "--count", "-C", into, "app.py"], cwd=tmp_path,
                              env=clean_env(), capture_output=True, timeout=90)
    plain = count(sys.executable, into="plain")
    guarded = count(sys.executable, "-m", "pyward", "run", into="guarded")
    assert plain.returncode == guarded.returncode == 0
    written = sorted(p.name for p in (tmp_path / "plain").iterdir())
    assert "app.cover" in written
    assert sorted(p.name for p in (tmp_path / "guarded").iterdir()) == written


def test_cprofile_lists_no_function_of_pywards(tmp_path):
    materialise(tmp_path, {"app.py": APP})
    plain, guarded = both(["-m", "cProfile", "-s", "cumtime", "app.py"], tmp_path)
    assert plain.returncode == guarded.returncode == 0
    assert b"app.py:2(main)" in guarded.stdout
    assert b"pyward" not in guarded.stdout


# --- what pyward says about them ------------------------------------------------------------

def _hook_news(guarded) -> list[str]:
    return [line for line in guarded.stderr.decode().splitlines()
            if line.startswith("[pyward]") and ("sys.set" in line or "sys.monitoring" in line)]


BREAKPOINT = D("""
    def g(v):
        w = v + 1
        breakpoint()
        return w
    print(g(1))
""")


@pytest.mark.parametrize("argv, stdin", [
    (["app.py"], b"p w\nc\n"),                      # breakpoint(): pdb's settrace
    (["-m", "profile", "-s", "calls", "app.py"], b""),  # profile's setprofile
    (["-m", "cProfile", "-s", "calls", "app.py"], b""),  # cProfile's sys.monitoring tool (3.12+)
    (["-m", "trace", "--count", "-C", "cover", "app.py"], b""),  # trace's settrace
    (["-m", "pdb", "app.py"], b"n\nq\n"),              # pdb's quit: the hook cleared again from C
    (["-m", "pdb", "app.py"], b"c\n"),                 # run to the end under pdb
], ids=["breakpoint", "profile", "cProfile", "trace", "pdb-quit", "pdb-continue"])
def test_the_debugger_or_profiler_the_user_started_is_not_news(tmp_path, argv, stdin):
    materialise(tmp_path, {"app.py": BREAKPOINT if argv == ["app.py"] else APP})
    plain, guarded = both(argv, tmp_path, stdin)
    assert guarded.returncode == plain.returncode == 0
    assert guarded.stdout == plain.stdout or argv[1] in ("profile", "cProfile")  # (timings differ)
    assert _hook_news(guarded) == []


def test_a_trace_hook_the_program_sets_itself_is_still_news(tmp_path):
    materialise(tmp_path, {"app.py": "import sys\nsys.settrace(lambda *a: None)\nsys.settrace(None)\nprint('ok')\n"})
    plain, guarded = both(["app.py"], tmp_path)
    assert guarded.stdout == plain.stdout == b"ok\n"
    news = _hook_news(guarded)
    assert len(news) == 2 and all("app.py:" in line for line in news), news
