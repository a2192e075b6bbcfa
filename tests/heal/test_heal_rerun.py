"""A healed program is re-run in a fresh interpreter: nothing of the crashed attempt leaks into it.

Real programs through the CLI: exact stdout, exit status, side-effect counts and the one report.
"""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from helpers import clean_env, pyward, pyward_lines
from test_heal import BUGGY

AUDIT = """
entries = []

def record(item):
    entries.append(item)
"""

STATEFUL = """
import atexit
import logging
import os
import sys

import audit

logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
atexit.register(lambda: open(os.path.join(START, "exits.txt"), "a").write("bye\\n"))
atexit.register(print, "bye")
START = os.getcwd()
os.chdir("data")

def label(item):
    return item["name"]

items = [{"name": "a", "n": 1}, {"name": "b", "n": 3}, None, {"name": "d", "n": 12}]
total = 0
for item in items:
    audit.record(item)
    logging.info("item %s", label(item))
    total += item["n"] if item else 0
print("audit entries:", len(audit.entries))
print("total:", total)
print("cwd:", os.path.basename(os.getcwd()))
"""

CLEAN_TAIL = "item a\nitem b\nitem None\nitem d\naudit entries: 4\ntotal: 16\ncwd: data\nbye\n"


def write(tmp_path, source, name="app.py"):
    (tmp_path / name).write_text(textwrap.dedent(source))


def recipes(path):
    if not path.exists():
        return []
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT qualname, kind, operand FROM recipes ORDER BY id").fetchall()
    finally:
        db.close()


def test_module_state_logging_atexit_and_chdir_do_not_leak_into_the_rerun(tmp_path):
    write(tmp_path, STATEFUL)
    write(tmp_path, AUDIT, "audit.py")
    (tmp_path / "data").mkdir()
    run = pyward("run", "--heal", "--report", "r.json", "app.py", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    # the crashed attempt's two lines (said on stderr), then one clean run: no entry, handler or exit handler twice
    assert run.stdout == "item a\nitem b\n" + CLEAN_TAIL, run.stderr
    assert (tmp_path / "exits.txt").read_text() == "bye\n"  # the crashed attempt's atexit handlers never ran
    assert list((tmp_path / "data").iterdir()) == []
    lines = pyward_lines(run.stderr)
    assert any("re-running the program (attempt 2 of 4) in a fresh process: it starts from the top, so the output "
               "above is printed again" in line for line in lines), lines
    assert lines[-1].startswith("[pyward] run end: exit=0 · 0 denied · 0 tamper alerts · 1 healed · 2 attempts · "
                                "1 guard firing · 1 run completed only through a fallback · report: r.json"), lines
    report = json.loads((tmp_path / "r.json").read_text())
    summary = report["summary"]
    assert (summary["exit_status"], summary["attempts"], summary["guard_firings"], summary["degraded_runs"]) == \
        (0, 2, 1, 1)
    pids = {e["pid"] for e in report["events"]}
    assert len(pids) == 2  # both attempts' events, one report
    attempts = [e["details"] for e in report["events"] if e["engine"] == "heal" and e["kind"] == "attempt"]
    assert sorted((a["attempt"], a["completed"], a["firings"]) for a in attempts) == [(1, False, 0), (2, True, 1)]
    assert pyward("verify", "r.json", cwd=tmp_path).returncode == 0
    assert len(list(tmp_path.glob("*.json"))) == 1  # the re-run wrote no report of its own

    again = pyward("run", "--heal", "app.py", cwd=tmp_path)  # the stored patch: one attempt
    assert again.returncode == 0 and again.stdout == CLEAN_TAIL, again.stderr
    assert (tmp_path / "exits.txt").read_text() == "bye\nbye\n"
    assert "1 attempt · 1 guard firing · 1 run completed only through a fallback" in pyward_lines(again.stderr)[-1]


def test_stdin_from_a_pipe_is_given_again_to_the_rerun(tmp_path):
    write(tmp_path, """
        import sys
        numbers = [int(line) for line in sys.stdin]
        for n in numbers:
            print(12 // n)
    """)
    run = pyward("run", "--heal", "app.py", cwd=tmp_path, input=b"3\n0\n4\n")
    assert run.returncode == 0, run.stderr
    assert run.stdout == "4\n" + "4\nNone\n3\n"


def test_stdin_from_a_file_is_rewound_for_the_rerun(tmp_path):
    write(tmp_path, """
        import sys
        for line in sys.stdin:
            print(12 // int(line))
    """)
    (tmp_path / "in.txt").write_text("3\n0\n4\n")
    with open(tmp_path / "in.txt", "rb") as stdin:
        run = subprocess.run([sys.executable, "-m", "pyward", "run", "--heal", "app.py"], cwd=tmp_path,
                             env=clean_env(), stdin=stdin, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "4\n" + "4\nNone\n3\n"


@pytest.mark.parametrize("form", ["-c", "-"])
def test_command_and_stdin_programs_are_rerun(tmp_path, form):
    source = "d = {'a': 1}\nprint(d['a'])\nprint(d['b'])\nprint('end')\n"
    if form == "-c":
        run = pyward("run", "--heal", "-c", source, cwd=tmp_path)
    else:
        run = pyward("run", "--heal", "-", cwd=tmp_path, input=source.encode())
    assert run.returncode == 0, run.stderr
    assert run.stdout == "1\n" + "1\nNone\nend\n"
    assert "2 attempts" in pyward_lines(run.stderr)[-1]


def test_the_rerun_runs_under_the_same_enforcing_policy(tmp_path):
    write(tmp_path, """
        d = {}
        print(d.get("x"))
        print(d["x"])
        open("/etc/hostname").read()
    """)
    run = pyward("run", "--heal", "--allow-ffi=bytecode,introspection", "--allow-read=app.py", "--report", "r.json",
                 "app.py", cwd=tmp_path)
    assert run.returncode == 1
    assert run.stdout == "None\n" + "None\nNone\n"
    assert "pyward.AccessDenied: read '/etc/hostname'" in run.stderr  # the re-run's own sandbox denied it
    assert " 1 healed · 2 attempts" in pyward_lines(run.stderr)[-1]
    report = json.loads((tmp_path / "r.json").read_text())
    starts = [e["pid"] for e in report["events"] if e["kind"] == "run.start"]
    denied = [e["pid"] for e in report["events"] if e["kind"] == "denied" and e["name"] == "/etc/hostname"]
    assert len(starts) == 2 and denied == [starts[1]]
    assert not [e for e in report["events"] if e["engine"] == "sandbox" and e["kind"] != "own"
                and e["details"].get("permission") == "run"]  # pyward's own re-run is not the program's


def test_exit_status_is_the_last_attempts(tmp_path):
    write(tmp_path, """
        import sys
        print([1][0])
        print([1][3])
        sys.exit(3)
    """)
    run = pyward("run", "--heal", "app.py", cwd=tmp_path)
    assert run.returncode == 3 and run.stdout == "1\n1\nNone\n", run.stderr
    assert pyward_lines(run.stderr)[-1].startswith("[pyward] run end: exit=3 ")


def test_retries_bound_the_attempts(tmp_path):
    write(tmp_path, """
        d = {}
        a = d["a"]
        b = d["b"]
        c = d["c"]
        print("end", a, b, c)
    """)
    run = pyward("run", "--heal", "--retries", "2", "app.py", cwd=tmp_path)
    assert run.returncode == 1 and run.stdout == ""
    lines = pyward_lines(run.stderr)
    assert sum("re-running the program" in line for line in lines) == 2
    assert any("not re-running: --retries 2 used up" in line for line in lines), lines
    assert "KeyError: 'c'" in run.stderr
    assert " 3 attempts " in lines[-1]
    done = pyward("run", "--heal", "app.py", cwd=tmp_path)
    assert done.returncode == 0 and done.stdout == "end None None None\n"


@pytest.mark.parametrize("namespace", ["", ", {}"])
def test_exec_defined_code_is_not_claimed_healed_or_saved(tmp_path, namespace):
    write(tmp_path, f"""
        source = "def ratio(a, b):\\n    return a / b\\n"
        space = {{}}
        exec(source{namespace.replace("{}", "space")})
        ratio = (space or globals())["ratio"]
        print(ratio(1, 2))
        print(ratio(1, 0))
    """)
    for _ in range(2):  # the next run is no different: nothing was stored
        run = pyward("run", "--heal", "app.py", cwd=tmp_path)
        assert run.returncode == 1 and run.stdout == "0.5\n"
        assert "ZeroDivisionError: division by zero" in run.stderr
        lines = pyward_lines(run.stderr)
        assert any(line.startswith("[pyward][error] unhealed ZeroDivisionError: division by zero: it is in code "
                                   "compiled while the program ran (exec() or compile(), file '<string>')")
                   for line in lines), lines
        assert not any("healed ZeroDivision" in line and "unhealed" not in line for line in lines)
        assert not any("saved" in line or "re-running" in line for line in lines), lines
        assert " 0 healed" in lines[-1]
        assert recipes(tmp_path / ".pyward" / "heal.db") == []


def test_exec_defined_code_is_patched_for_the_process_only_at_other_boundaries(tmp_path):
    write(tmp_path, """
        import pyward
        space = {}
        exec("def ratio(a, b):\\n    return a / b\\n", space)
        ratio = pyward.resilient(space["ratio"])
        print([ratio(1, 2), ratio(1, 0)])
    """)
    run = pyward("run", "--heal", "app.py", cwd=tmp_path)
    assert run.returncode == 0 and run.stdout == "[0.5, None]\n", run.stderr
    assert any("for this process only: the code was compiled while the program ran (exec()/compile()), so the "
               "guard is not stored" in line for line in pyward_lines(run.stderr))
    assert recipes(tmp_path / ".pyward" / "heal.db") == []


@pytest.mark.parametrize("store", ["h.db", "sub/h.db"])
def test_a_relative_store_name_is_relative_to_the_start_directory(tmp_path, store):
    write(tmp_path, """
        import os
        os.makedirs("elsewhere", exist_ok=True)
        os.chdir("elsewhere")
        print([1][2])
    """)
    if "/" in store:
        (tmp_path / "sub").mkdir()
    run = pyward("run", "--heal", "--rerun-side-effects", "--store", store, "app.py", cwd=tmp_path)
    assert run.returncode == 0 and run.stdout == "None\n", run.stderr
    assert recipes(tmp_path / store) == [("<module>", "index_guard", "[1]")]
    assert not (tmp_path / ".pyward" / "heal.db").exists()
    again = pyward("run", "--heal", "--store", store, "app.py", cwd=tmp_path)
    assert again.returncode == 0 and again.stdout == "None\n"
    assert any("already healed: <module> (index_guard on [1])" in line for line in pyward_lines(again.stderr))
    listed = pyward("patches", "--store", store, cwd=tmp_path)
    assert listed.returncode == 0 and "index_guard" in listed.stdout


def test_watch_does_not_restart_a_crashed_run_that_wrote_a_file(tmp_path):
    write(tmp_path, """
        with open("log.txt", "a") as f:
            f.write("start\\n")
        users = {"ada": {"bio": "mathematician"}, "bob": None}
        for name in ["ada", "bob"]:
            print(name, users[name]["bio"])
    """)
    run = pyward("watch", "app.py", cwd=tmp_path)
    assert run.returncode == 1 and run.stdout == "ada mathematician\n"
    assert (tmp_path / "log.txt").read_text() == "start\n"  # one run
    last = pyward_lines(run.stderr)[-1]
    assert last.startswith("[pyward] watch: app.py exited with status 1; a patch was saved for <module> "
                           "(chain_subscript_guard on users[name][\"bio\"]) but the crashed run had side effects: "
                           "write to "), last
    assert "log.txt" in last and last.endswith("not restarting (the next run uses the patch; --rerun-side-effects "
                                               "restarts anyway)")


def test_watch_restarts_a_run_without_side_effects(tmp_path):
    write(tmp_path, "print('up')\nprint({}['k'])\n")
    run = pyward("watch", "--retries", "0", "app.py", cwd=tmp_path)
    assert run.returncode == 0 and run.stdout == "up\nup\nNone\n", run.stderr
    assert "restarting (restart 1 of 5)" in run.stderr


@pytest.mark.parametrize("command", [["patches"], ["explain"], ["explain", "get_bio"]])
def test_offline_commands_end_quietly_when_stdout_closes(tmp_path, command):
    write(tmp_path, BUGGY)
    assert pyward("run", "--heal", "app.py", cwd=tmp_path).returncode == 0
    read, write_end = os.pipe()
    os.close(read)  # like `| head` that has already gone
    try:
        proc = subprocess.run([sys.executable, "-m", "pyward", *command], cwd=tmp_path, env=clean_env(),
                              stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write_end)
    assert proc.returncode == -signal.SIGPIPE and proc.stderr == ""


def test_a_program_that_removed_its_working_directory_is_healed(tmp_path):
    """Paths are shown relative to the working directory where there is one: a program that removed
    its own is healed all the same (the patch saved, not re-run after its side effects), and pyward
    ends without a traceback of its own."""
    (tmp_path / "app.py").write_text(textwrap.dedent("""\
        import os, tempfile
        gone = tempfile.mkdtemp()
        os.chdir(gone)
        os.rmdir(gone)
        def name(user):
            return user["name"].upper()
        print(name({"name": None}))
    """))
    result = pyward("run", "--no-config", "--heal", "app.py", cwd=tmp_path)
    assert "healed AttributeError" in result.stderr and "null_guard" in result.stderr, result.stderr
    assert "could not heal" not in result.stderr and "Exception ignored" not in result.stderr, result.stderr
    again = pyward("run", "--no-config", "--heal", "app.py", cwd=tmp_path)
    assert again.returncode == 0 and again.stdout == "None\n", again.stderr


FORKED_CRASH = """
import os

def greet(user):
    return "hello " + user["nickname"]

with open("starts.txt", "a") as f:
    f.write("start\\n")
pid = os.fork()
if pid == 0:
    print("child", greet({"name": "ann"}), flush=True)
    os._exit(0)
print("child status", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
"""


def test_a_forked_child_s_crash_does_not_rerun_the_program(tmp_path):
    """A forked child whose crash escapes is not the program's start: it is not re-run from the top (that
    would run the parent's code again in the child); it ends as under python, and the patch serves the next run."""
    write(tmp_path, FORKED_CRASH)
    plain = subprocess.run([sys.executable, "app.py"], cwd=tmp_path, env=clean_env(), capture_output=True,
                           text=True, timeout=60)
    assert (plain.returncode, plain.stdout) == (0, "child status 1\n")
    (tmp_path / "starts.txt").unlink()
    run = pyward("run", "--heal", "app.py", cwd=tmp_path)
    assert (run.returncode, run.stdout) == (plain.returncode, plain.stdout), run.stderr
    assert (tmp_path / "starts.txt").read_text() == "start\n"  # the program's top ran once
    assert "KeyError: 'nickname'" in run.stderr  # the child's traceback, as python prints it
    lines = pyward_lines(run.stderr)
    assert any("not re-running: a forked child" in line for line in lines), lines
    assert "1 healed" in lines[-1], lines
    again = pyward("run", "--heal", "app.py", cwd=tmp_path)  # the saved patch heals the next run's child
    assert (again.returncode, again.stdout) == (0, "child None\nchild status 0\n"), again.stderr


def test_a_python_child_s_escaping_crash_is_reported_unhealed(tmp_path):
    """A Python child's crash that escapes it (a `python child.py` the program starts) is not re-run (pyward
    re-runs only the program it started): the child ends as under python, and the run says it was not healed."""
    (tmp_path / "child.py").write_text(textwrap.dedent("""\
        def greet(user):
            return "hello " + user["nickname"]
        print(greet({"name": "ann"}))
    """))
    write(tmp_path, """
        import subprocess, sys
        print("child status", subprocess.run([sys.executable, "child.py"]).returncode)
    """)
    plain = subprocess.run([sys.executable, "app.py"], cwd=tmp_path, env=clean_env(), capture_output=True,
                           text=True, timeout=60)
    run = pyward("run", "--heal", "--log", "events.jsonl", "app.py", cwd=tmp_path)
    assert (run.returncode, run.stdout) == (plain.returncode, plain.stdout) == (0, "child status 1\n"), run.stderr
    assert "KeyError: 'nickname'" in run.stderr
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    (unhealed,) = [e for e in events if e["engine"] == "heal" and e["kind"] == "unhealed"]
    assert unhealed["where"] == f"{tmp_path / 'child.py'}:2" and "Python child" in unhealed["message"], unhealed
    assert any(line.startswith("[pyward][error] unhealed KeyError") for line in pyward_lines(run.stderr))
