"""Real monkey-patching libraries from PyPI under the tamper engine.

Each test runs a program that uses the library, then compares pyward's
alerts with what the library itself says it replaced.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from helpers import clean_env
from sandbox_helpers import guard

WATCHERS = sys.version_info >= (3, 12)
QUIET = clean_env(PYTHONWARNINGS="ignore")


def alerts(run):
    return {a["name"]: a for a in run.events("alert", engine="tamper")}


def test_gevent_patch_all_every_sealed_replacement_is_reported(tmp_path):
    code = """
        import json, sys
        from gevent import monkey
        monkey.patch_all()
        sealed = ['socket.socket', 'socket.create_connection', 'socket.getaddrinfo', 'subprocess.Popen',
                  'os.system', 'os.posix_spawn', 'os.posix_spawnp', 'ssl.SSLContext']
        print(json.dumps(sorted(f"{m}.{a}" for m, attrs in monkey.saved.items() for a in attrs
                                if f"{m}.{a}" in sealed)))
    """
    run = guard(tmp_path, code, env=QUIET)
    assert run.status == 0, run
    replaced = json.loads(run.stdout)  # gevent's own record of what it saved and replaced
    assert {"socket.socket", "subprocess.Popen"} <= set(replaced)
    found = alerts(run)
    for name in replaced:
        if name == "ssl.SSLContext" and "ssl.SSLContext" not in found:
            continue  # ssl is sealed only if the program imported it before gevent patched it
        assert name in found, f"{name} replaced by gevent but not reported: {sorted(found)}"
        assert "/gevent/monkey/" in found[name]["where"], found[name]


def test_gevent_patch_all_is_two_console_lines_and_every_alert_in_the_journal(tmp_path):
    """One call of the program's into gevent changes a dozen sealed targets: the console shows the
    first change in full and one line for the rest; a later rebinding by the program is its own line."""
    code = """
        import os
        from gevent import monkey
        monkey.patch_all()
        def evil(cmd):
            return 0
        os.system = evil
        print(os.system("true"), sorted(monkey.saved["socket"]))
    """
    run = guard(tmp_path, code, env=QUIET)
    assert run.status == 0, run
    assert run.stdout.startswith("0 ["), run  # the program ran with both patches in place
    found = run.events("alert", engine="tamper")
    assert len(found) > 5 and found[-1]["name"] == "os.system", [a["name"] for a in found]
    gevent = found[:-1]
    assert all("/gevent/monkey/" in a["where"] for a in gevent)
    assert all(a["details"].get("shown_with") == gevent[0]["name"] for a in gevent[1:])
    lines = [line for line in run.stderr.splitlines() if line.startswith("[pyward][alert]")]
    assert len(lines) == 3, run.stderr
    assert lines[0].startswith(f"[pyward][alert] {gevent[0]['name']} replaced by ")
    assert lines[1].startswith(f"[pyward][alert] gevent.monkey also changed {len(gevent) - 1} more sealed targets "
                               f"(called from {tmp_path / 'app.py'}:4): ")
    assert all(a["name"] in lines[1] for a in gevent[1:]) and "--allow-patcher gevent.monkey" in lines[1]
    assert lines[2].startswith("[pyward][alert] os.system replaced by <function evil at ")
    assert f"· {len(found)} tamper alerts ·" in run.stderr  # each change still counts


def test_gevent_restore_leaves_the_original_objects(tmp_path):
    code = """
        import socket, subprocess
        originals = (socket.socket, subprocess.Popen)
        from gevent import monkey
        monkey.patch_all()
        def later(): pass
        later()
        print(socket.socket is originals[0], subprocess.Popen is originals[1])
    """
    run = guard(tmp_path, code, "--restore", env=QUIET)
    assert run.stdout == "True True\n", run
    assert all(a["message"].endswith("=> restored") for a in alerts(run).values())


def test_gevent_allow_listed(tmp_path):
    code = "from gevent import monkey\nmonkey.patch_all()\n"
    run = guard(tmp_path, code, "--allow-patcher", "gevent.monkey", env=QUIET)
    assert alerts(run) == {}, run
    assert "socket.socket" in {e["name"] for e in run.events("authorised", engine="tamper")}


def test_gevent_allow_listed_does_not_cover_code_gevent_calls(tmp_path):
    """patch_all notifies zope.event subscribers while it runs: a subscriber's own rebinding
    happens with gevent.monkey on the stack, but gevent did not make it."""
    code = """
        import os, zope.event
        def evil(cmd):
            return 0
        def subscriber(event):
            if type(event).__name__ == "GeventDidPatchAllEvent":
                os.system = evil
        zope.event.subscribers.append(subscriber)
        from gevent import monkey
        monkey.patch_all()
        print(os.system is evil)
    """
    run = guard(tmp_path, code, "--allow-patcher", "gevent.monkey", env=QUIET)
    assert run.stdout == "True\n", run  # the rebinding happened (the default lets changes stand)...
    found = alerts(run)
    assert set(found) == {"os.system"}, sorted(found)  # ...and it, alone, is an alert naming the subscriber
    assert found["os.system"]["function"] == "subscriber"
    assert "socket.socket" in {e["name"] for e in run.events("authorised", engine="tamper")}


def test_eventlet_monkey_patch(tmp_path):
    code = """
        import socket
        original = socket.socket
        import eventlet
        eventlet.monkey_patch()
        import socket
        print(socket.socket is not original)
    """
    run = guard(tmp_path, code, env=QUIET)
    assert run.stdout == "True\n", run
    found = alerts(run)
    for name in ("socket.socket", "socket.create_connection", "socket.getaddrinfo"):
        assert name in found and "/eventlet/" in found[name]["where"], sorted(found)


def test_eventlet_finds_no_lock_of_pyward_to_complain_about(tmp_path):
    """monkey_patch logs an error for each RLock it could not green (it walks gc.get_objects()):
    under python it finds none here, and pyward's journal must not be one."""
    code = """
        import eventlet
        eventlet.monkey_patch()
        import threading
        print(type(threading.RLock()).__module__)
    """
    (tmp_path / "plain.py").write_text(textwrap.dedent(code))
    plain = subprocess.run([sys.executable, "plain.py"], cwd=tmp_path, env=QUIET, capture_output=True, text=True,
                           timeout=60)
    assert plain.returncode == 0 and "not greened" not in plain.stderr, plain.stderr
    for flags in ((), ("--heal",)):
        run = guard(tmp_path, code, *flags, env=QUIET)
        assert run.status == 0 and run.stdout == plain.stdout, run
        assert "not greened" not in run.stderr, run.stderr


def test_freezegun_freeze_time(tmp_path):
    code = """
        import datetime, time
        from freezegun import freeze_time
        with freeze_time("2020-01-01"):
            print(datetime.datetime.now().year)
        print(datetime.datetime.now().year > 2020)
    """
    run = guard(tmp_path, code, "--watch", "time.time,datetime.datetime", env=QUIET)
    assert run.stdout == "2020\nTrue\n", run
    found = alerts(run)
    # freezegun also rebinds the clocks modules imported by name (subprocess's `_time`, called by
    # sealed Popen methods): a clock decides no operation, so it is not sealed and not reported
    assert set(found) == {"time.time", "datetime.datetime"}
    assert all("/freezegun/api.py" in a["where"] for a in found.values())
    reverted = {e["name"] for e in run.events("reverted", engine="tamper")}
    assert reverted - {"subprocess._time"} == {"time.time", "datetime.datetime"}  # freezegun put them back


def test_pytest_monkeypatch_on_sealed_targets(tmp_path):
    (tmp_path / "test_it.py").write_text(
        "import builtins, os\n"
        "def test_patch(monkeypatch):\n"
        "    monkeypatch.setattr(builtins, 'open', lambda *a: None)\n"
        "    monkeypatch.setattr(os, 'system', lambda c: 0)\n"
        "    assert open('x') is None\n")

    log = tmp_path / "events.jsonl"
    result = subprocess.run([sys.executable, "-m", "pyward", "run", "--no-config", "--log", str(log), "-m",
                             "pytest", "-q", "-p", "no:cacheprovider", "test_it.py"], cwd=tmp_path,
                            env=clean_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    events = [json.loads(line) for line in log.read_text().splitlines()]
    found = {e["name"]: e for e in events if e["engine"] == "tamper" and e["kind"] == "alert"}
    assert set(found) == {"builtins.open", "os.system"}
    assert found["builtins.open"]["where"].endswith("_pytest/monkeypatch.py:" + found["builtins.open"]["where"]
                                                    .rpartition(":")[2])  # the patcher itself...
    assert found["builtins.open"]["details"]["caller"] == f"{tmp_path / 'test_it.py'}:3"  # ...and who called it
    assert f"called from {tmp_path / 'test_it.py'}:3" in found["builtins.open"]["message"]
    reverted = {e["name"] for e in events if e["engine"] == "tamper" and e["kind"] == "reverted"}
    assert reverted == {"builtins.open", "os.system"}  # monkeypatch's undo, in reverse order


def test_mock_patch_object_of_an_inherited_method_is_reverted_not_deleted(tmp_path):
    """socket.socket.connect is _socket.socket's: mock.patch.object defines it on socket.socket,
    and undoes that by deleting it there, which brings the sealed original back."""
    run = guard(tmp_path, """
        import socket
        from unittest import mock
        with mock.patch.object(socket.socket, "connect") as connect:
            s = socket.socket()
            s.connect(("192.0.2.1", 80))
            s.close()
        print(connect.called, "connect" in vars(socket.socket))
    """)
    assert run.stdout == "True False\n", run
    found = run.events("alert", engine="tamper")
    # 3.11 sees a class's methods change at its checks (docs/tamper.md): the patch came and went between two
    assert [(a["name"], a["details"]["change"]) for a in found] == (
        [("socket.socket.connect", "replaced")] if WATCHERS else [])
    assert [e["name"] for e in run.events("reverted", engine="tamper")] == (
        ["socket.socket.connect"] if WATCHERS else [])
    assert "deleted" not in run.stderr


# --- a test suite's own patching, under `pyward run -m pytest` ----------------------

SUITE = {
    "pytest.ini": "[pytest]\nfilterwarnings =\n    error\n",
    "test_patching.py": """\
import builtins, os, socket, subprocess, sys
from unittest import mock


def test_monkeypatch_sealed_and_sys(monkeypatch):
    monkeypatch.setattr(builtins, "open", lambda *a, **k: None)
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: [])
    monkeypatch.delattr(sys, "_getframe")
    monkeypatch.setenv("APP_MODE", "test")
    assert not hasattr(sys, "_getframe") and os.environ["APP_MODE"] == "test"


def test_mock_patch():
    with mock.patch("subprocess.Popen") as popen:
        subprocess.Popen(["anything"])
    popen.assert_called_once()


def test_stderr_capture_sees_only_the_program(capfd):
    os.environ["ANOTHER"] = "1"
    print("to stderr", file=sys.stderr)
    assert capfd.readouterr().err == "to stderr\\n"


def test_after_the_patches_are_undone():
    assert sys._getframe() is not None and builtins.open is not None
""",
}


def run_suite(tmp_path, *flags):
    for name, text in SUITE.items():
        (tmp_path / name).write_text(text)
    return subprocess.run([sys.executable, "-m", "pyward", "run", "--no-config", *flags, "-m", "pytest", "-q",
                           "-p", "no:cacheprovider"], cwd=tmp_path, env=clean_env(), capture_output=True,
                          text=True, timeout=120)


def test_a_suite_that_patches_runs_as_under_python(tmp_path):
    """filterwarnings = error starts; deleting sys._getframe does not break pyward; the
    suite's patches of sealed functions are alerts; its environment changes stay info."""
    result = run_suite(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 passed" in result.stdout
    lines = [line for line in result.stderr.splitlines() if line.startswith("[pyward]")]
    assert [line for line in lines if "[alert]" in line and "replaced" in line][:3] and \
        all(name in result.stderr for name in ("builtins.open replaced", "socket.getaddrinfo replaced",
                                                "subprocess.Popen replaced"))
    assert not any("environment variable" in line for line in lines)  # PYTEST_CURRENT_TEST, APP_MODE: info


def test_marking_the_suites_own_patching_as_expected_leaves_one_line(tmp_path):
    result = run_suite(tmp_path, "--allow-patcher", "_pytest,unittest.mock")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 passed" in result.stdout
    lines = [line for line in result.stderr.splitlines() if line.startswith("[pyward]")]
    assert len(lines) == 1 and lines[0].startswith("[pyward] run end: exit=0 · 0 denied · 0 tamper alerts")


FAKEFS_SUITE = """\
import os, pathlib, shutil, subprocess


def test_in_the_fake_filesystem(fs):
    fs.create_file("/etc/app/settings.ini", contents="debug = true")
    assert open("/etc/app/settings.ini").read() == "debug = true"
    os.makedirs("/data/a")
    pathlib.Path("/data/a/b.txt").write_text("b")
    shutil.copy("/data/a/b.txt", "/data/c.txt")
    assert sorted(os.listdir("/data")) == ["a", "c.txt"]


def test_in_the_fake_filesystem_again(fs):
    assert not os.path.exists("/data")


def test_back_on_disk():
    assert not os.path.exists("/data/c.txt") and os.path.isdir(os.getcwd())
"""


def test_pyfakefs_replaces_the_program_os_not_pyward_own(tmp_path):
    """pyfakefs puts a fake `os` in every module holding one: pyward's private copies are not the
    stdlib's by name, so its journal, log and recorder keep writing to real descriptors."""
    (tmp_path / "test_fake.py").write_text(FAKEFS_SUITE)

    command = ["-m", "pytest", "-q", "-p", "no:cacheprovider", "test_fake.py"]
    plain = subprocess.run([sys.executable, *command], cwd=tmp_path, env=clean_env(), capture_output=True,
                           text=True, timeout=120)
    log = tmp_path / "events.jsonl"
    result = subprocess.run([sys.executable, "-m", "pyward", "run", "--no-config", "--log", str(log), *command],
                            cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=120)
    assert plain.returncode == result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in plain.stdout and "3 passed" in result.stdout
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr, result.stderr
    assert "report: " in result.stderr.splitlines()[-1]  # the recorder wrote it
    events = [json.loads(line) for line in log.read_text().splitlines()]
    replaced = {e["name"] for e in events if e["engine"] == "tamper" and e["kind"] == "alert"}
    # the program's open is pyfakefs's: said (3.11 sees it at its checks, after pyfakefs put it back), and only
    # the program's modules are named
    assert ("builtins.open" in replaced) is WATCHERS
    assert not any(name.startswith("pyward.") for name in replaced), replaced
    verified = subprocess.run([sys.executable, "-m", "pyward", "verify", result.stderr.rsplit("report: ", 1)[1]
                               .strip()], cwd=tmp_path, env=clean_env(), capture_output=True, text=True)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_a_patch_reapplied_in_every_test_is_shown_once_and_counted(tmp_path):
    """The console shows a line once; the journal and the report keep every event."""
    (tmp_path / "test_mocks.py").write_text(
        "import subprocess, pytest\n"
        "from unittest import mock\n"
        "@pytest.mark.parametrize('i', range(5))\n"
        "def test_it(i):\n"
        "    with mock.patch('subprocess.Popen'):\n"
        "        subprocess.Popen(['x'])\n")

    log = tmp_path / "events.jsonl"
    result = subprocess.run([sys.executable, "-m", "pyward", "run", "--no-config", "--log", str(log), "-m", "pytest",
                             "-q", "-p", "no:cacheprovider"], cwd=tmp_path, env=clean_env(), capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    shown = [line for line in result.stderr.splitlines() if "subprocess.Popen replaced" in line]
    logged = [json.loads(line) for line in log.read_text().splitlines()]
    alerts = [e for e in logged if e["engine"] == "tamper" and e["kind"] == "alert"]
    assert len(shown) == 1 and len(alerts) == 5  # one alert a test, one line on the console
    end = result.stderr.splitlines()[-1]
    assert "5 tamper alerts" in end and "4 repeated lines not shown" in end
    verbose = subprocess.run([sys.executable, "-m", "pyward", "run", "--no-config", "-v", "-m", "pytest", "-q",
                              "-p", "no:cacheprovider"], cwd=tmp_path, env=clean_env(), capture_output=True,
                             text=True, timeout=120)
    assert verbose.stderr.count("subprocess.Popen replaced") == 5  # -v shows every one
