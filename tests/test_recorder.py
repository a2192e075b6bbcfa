"""The recorder process keeps the run's record: what the program does to pyward's objects in its own
process, to the report path, or to the recorder, leaves the report true to what happened; a program that
ends without an end record (os._exit, SIGKILL, an exhausted address space) still gets a report that says so."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from helpers import clean_env, pyward
from pyward.sandbox.kernel import abi as landlock_abi

#: Raises one denial per call to deny() (an environment read under --deny-env=SECRET_*), then does `how`
#: to pyward, then one more denial; prints the number of denials it saw raised.
PROGRAM = """\
import atexit, gc, os, sys, types
session = next(o for o in gc.get_objects() if type(o).__name__ == "Session")  # the worst case: ffi allowed (-A)
raised = 0
def deny(i):
    global raised
    try:
        os.environ.get(f"SECRET_{i}")
    except PermissionError:
        raised += 1
deny(1); deny(2); deny(3)
how = sys.argv[1]
if how == "clear":
    session.journal.events.clear()
elif how == "renumber":
    for i, event in enumerate(session.journal.events):
        event.seq, event.kind = 1, "allowed"
    del session.journal.events[2:]
elif how == "finish":
    session.finish()
elif how == "module":
    fake = types.ModuleType("pyward.report")
    fake.build = lambda run, events: {"format": "pyward.report", "version": 1, "summary": {"denied": 0}}
    sys.modules["pyward.report"] = fake
elif how == "atexit":
    path = sys.argv[2]
    def rewrite():
        with open(path, "w") as f:
            f.write('{"format": "pyward.report", "version": 1, "summary": {"denied": 0}}')
    atexit.unregister(session.finish)
    atexit.register(rewrite)
    atexit.register(session.finish)  # runs first now: the rewrite comes after the report
elif how == "symlink":
    path = sys.argv[2]
    os.symlink(os.path.abspath("victim.txt"), f"{path}.{os.getpid()}.tmp")
    os.symlink(os.path.abspath("victim.txt"), f"{path}.tmp")
elif how == "kill":
    for pid in session.protected_pids:
        try:
            os.kill(pid, 9)
        except PermissionError:
            raised += 1
    try:
        os.killpg(session.protected_pids[1], 9)
    except PermissionError:
        raised += 1
elif how == "channel":  # bytes without an end of line on every pipe it holds (the recorder's among them)
    import stat
    for fd in range(3, 256):
        try:
            if stat.S_ISFIFO(os.fstat(fd).st_mode):
                os.write(fd, b"x" * (1 << 24) + b"{")
        except OSError:
            pass
elif how == "pidfd":  # process descriptors (no audit event): one by pid, one a /proc directory, one by __index__
    import signal
    recorder = session.protected_pids[0]
    class Descriptor:
        def __init__(self, fd):
            self.fd = fd
        def __index__(self):
            return self.fd
    proc = os.open(f"/proc/{recorder}", os.O_RDONLY)
    for attempt in (lambda: os.pidfd_open(recorder), lambda: signal.pidfd_send_signal(proc, signal.SIGCONT),
                    lambda: signal.pidfd_send_signal(Descriptor(proc), signal.SIGCONT)):
        try:
            attempt()
        except PermissionError:
            raised += 1
    signal.pidfd_send_signal(os.pidfd_open(os.getpid()), 0)  # its own: as under python
elif how == "prlimit":  # a file size limit of 0 would kill the recorder at its next write
    import resource
    resource.prlimit(session.protected_pids[0], resource.RLIMIT_FSIZE)  # reading them: as under python
    try:
        resource.prlimit(session.protected_pids[0], resource.RLIMIT_FSIZE, (0, 0))
    except PermissionError:
        raised += 1
elif how == "children":  # a Python child (armed: refused by its audit layer), a command (held by the kernel)
    import subprocess
    recorder = session.protected_pids[0]
    code = f"import os\\ntry:\\n    os.kill({recorder}, 18)\\nexcept PermissionError:\\n    print('refused')"
    python = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    command = subprocess.run(["kill", "-CONT", str(recorder)], capture_output=True, text=True)
    raised += (python.stdout == "refused\\n") + (command.returncode != 0)
deny(4)
print(raised, flush=True)
if how == "exit":
    os._exit(0)
if how == "abort":
    os.abort()
if how == "sigkill":
    os.kill(os.getpid(), 9)
if how == "oom":
    import resource
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, resource.getrlimit(resource.RLIMIT_AS)[1]))
    hoard = []
    while True:
        hoard.append(bytearray(1 << 24))
"""


@pytest.fixture
def app(tmp_path):
    (tmp_path / "app.py").write_text(PROGRAM)
    (tmp_path / "victim.txt").write_text("untouched\n")
    return tmp_path


def run(app, how: str, *extra: str) -> tuple[subprocess.CompletedProcess[str], dict, int]:
    """Run the program (the report goes to r.json); (result, report, denials the program saw raised)."""
    path = app / "r.json"
    result = subprocess.run([sys.executable, "-m", "pyward", "run", "-q", "--report", str(path), "-A",
                             "--deny-env=SECRET_*", *extra, "app.py", how, str(path)], cwd=app, env=clean_env(),
                            capture_output=True, text=True, timeout=120)
    assert not os.path.islink(path)
    data = json.loads(path.read_text())
    raised = int(result.stdout.split()[0]) if result.stdout.strip() else -1
    return result, data, raised


def denials(data: dict) -> int:
    return sum(1 for e in data["events"] if e["engine"] == "sandbox" and e["kind"] == "denied")


@pytest.mark.parametrize("how", ["none", "clear", "renumber", "finish", "module", "atexit", "symlink", "channel"])
def test_what_the_program_does_to_pyward_does_not_change_its_record(app, how):
    result, data, raised = run(app, how)
    assert result.returncode == 0, result.stderr
    assert raised == 4
    assert data["summary"]["denied"] == denials(data) == 4  # one for each denial raised
    assert [e["seq"] for e in data["events"]] == list(range(1, len(data["events"]) + 1))
    checked = pyward("verify", str(app / "r.json"))
    assert checked.returncode == 0, checked.stderr
    assert (app / "victim.txt").read_text() == "untouched\n"
    if how == "channel":  # what it wrote is one malformed line, alerted; the denial after it is whole
        assert [e["details"]["why"] for e in data["events"] if e["kind"] == "record.malformed"] == [
            f"{(1 << 24) + 1} bytes long (beyond {1 << 24}), skipped"]
    if how == "finish":  # the end it sent early is recorded as such
        assert "after the end was recorded" in data["run"]["exit_reason"]
    elif how == "atexit":  # its write after the end is recorded too
        assert data["run"]["exit_reason"].startswith("completed")
    else:
        assert data["run"]["exit_status"] == 0 and data["run"]["exit_reason"] == "completed"


def test_os_exit_ends_the_run_as_an_exit_does(app):
    """os._exit(n) (mypy ends every run so): the engines stop and the report records status n, then the
    process ends at once, as under python."""
    result, data, raised = run(app, "exit")
    assert (result.returncode, raised) == (0, 4), result.stderr
    assert (data["run"]["exit_status"], data["run"]["exit_reason"]) == (0, "os._exit")
    assert data["summary"]["denied"] == 4 and data["events"][-1]["kind"] == "run.end"
    assert pyward("verify", str(app / "r.json")).returncode == 0


@pytest.mark.parametrize("how", ["abort", "sigkill", "oom"])
def test_a_program_that_ends_without_an_end_record_gets_a_report_saying_so(app, how):
    result, data, raised = run(app, how)
    assert raised == 4
    assert result.returncode == {"abort": -signal.SIGABRT, "sigkill": -signal.SIGKILL}.get(how, result.returncode)
    assert result.returncode != 0
    checked = pyward("verify", str(app / "r.json"))
    assert data["summary"]["denied"] == 4
    if how == "oom" and data["run"]["exit_status"] is not None:  # python's MemoryError got to the end record
        assert data["run"]["exit_reason"] == "uncaught MemoryError" and checked.returncode == 0
        return
    assert data["run"]["exit_status"] is None
    assert data["run"]["exit_reason"] == "killed or os._exit (no end recorded)"
    assert data["summary"]["denied"] == 4
    assert data["events"][-1]["kind"] == "run.end" and data["events"][-1]["severity"] == "error"
    assert checked.returncode == 3, checked.stderr
    assert "did not end normally (killed or os._exit (no end recorded)): INCOMPLETE" in checked.stdout


KILLED_WHILE_SERVING = """\
import os, signal, subprocess, sys
print(open(os.environ["DATA"] + "/parent.txt").read().strip(), flush=True)
child = "import os; print(open(os.environ['DATA'] + '/child.txt').read().strip(), flush=True)"
subprocess.run([sys.executable, "-c", child], check=True)
os.kill(os.getpid(), signal.SIGTERM)  # as `timeout`, systemd or docker stop a service
"""


@pytest.mark.parametrize("command", ["run", "learn", "quiet"])
def test_a_killed_program_gets_its_run_end_line_and_policy_from_the_recorder(tmp_path, tmp_path_factory, command):
    """The program's process cannot finish a run a signal ended: the recorder collects what its Python children
    spooled, writes a learning run's policy from the record (it holds, children included) and prints the
    run-end line, after the program's output (not under -q)."""
    data_dir = tmp_path_factory.mktemp("data")
    (data_dir / "parent.txt").write_text("parent\n")
    (data_dir / "child.txt").write_text("child\n")
    (tmp_path / "app.py").write_text(KILLED_WHILE_SERVING)
    env = clean_env(DATA=str(data_dir))
    args = {"run": ["run"], "learn": ["learn", "-o", "learned.toml"], "quiet": ["run", "-q"]}[command]
    result = subprocess.run([sys.executable, "-m", "pyward", *args, "--report", "r.json", "app.py"], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout) == (-signal.SIGTERM, "parent\nchild\n"), result.stderr
    lines = [line for line in result.stderr.splitlines() if "lies in a directory the program may write" not in line]
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["run"]["exit_status"] is None
    child_reads = [e for e in data["events"] if e["engine"] == "sandbox" and e["pid"] != data["run"]["pid"]
                   and e["name"].endswith("/child.txt")]
    assert child_reads, "the child's spooled events are in the record"
    if command == "quiet":
        assert lines == []
        return
    assert lines[-1] == "[pyward] run end: killed or os._exit (no end recorded) · 0 denied · 0 tamper alerts · " \
                        "0 healed · report: r.json"
    learned = [e for e in data["events"] if e["kind"] == "learned"]
    if command != "learn":
        assert len(lines) == 1 and not learned and not (tmp_path / "learned.toml").exists()
        return
    assert lines[-2].startswith("[pyward][warning] the learning run's program did not finish (killed or os._exit "
                                "(no end recorded)): the policy written to learned.toml (")
    assert len(learned) == 1 and learned[0]["details"]["path"] == str(tmp_path / "learned.toml")
    again = subprocess.run([sys.executable, "-m", "pyward", "run", "--config", "learned.toml", "--report", "e.json",
                            "app.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert (again.returncode, again.stdout) == (-signal.SIGTERM, "parent\nchild\n"), again.stderr
    enforced = json.loads((tmp_path / "e.json").read_text())
    assert [e for e in enforced["events"] if e["kind"] == "denied"] == []
    assert enforced["run"]["layers"]["audit"] == "enforce"


EXECS = """\
import os, sys
try:
    os.execv("/nonexistent/tool", ["tool"])  # fails: the program goes on
except OSError:
    print("no tool", flush=True)
os.execv("/bin/sh", ["sh", "-c", "sleep 2.5; echo from sh; exit 3"])  # outlives CLOSE_GRACE_S
"""


def test_a_program_that_replaces_itself_by_exec_is_said_to_have_done_so(tmp_path):
    """`python -m ruff` (and every wrapper of a native tool) ends with os.execvp: not a kill, and not a closed
    channel; the record says what the program became, and that its exit status is not pyward's to record."""
    (tmp_path / "app.py").write_text(EXECS)
    result = subprocess.run([sys.executable, "-m", "pyward", "run", "--report", "r.json", "app.py"], cwd=tmp_path,
                            env=clean_env(), capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout) == (3, "no tool\nfrom sh\n"), result.stderr
    data = json.loads((tmp_path / "r.json").read_text())
    reason = "replaced itself with /bin/sh (exec; the exit status of what it ran is not recorded)"
    assert (data["run"]["exit_status"], data["run"]["exit_reason"]) == (None, reason)
    assert [e["kind"] for e in data["events"] if e["engine"] == "pyward"][-1:] == ["run.end"]
    assert not [e for e in data["events"] if e["kind"] == "record.closed"]
    assert result.stderr.splitlines()[-1].startswith(f"[pyward] run end: {reason} · 0 denied")


def test_an_exec_is_told_from_a_closed_channel_by_the_command_line_even_as_the_process_ends():
    """After the grace time the recorder reads the program's command line: a process that ended just then
    (a zombie has none) ran what it exec'ed to its end, as one that ends within the grace time; the same
    command line as the program's is a program that went on after closing the channel."""
    from pyward.recorder import Recorder

    def became_another(proc: subprocess.Popen, cmdline: bytes) -> bool:
        recorder = object.__new__(Recorder)
        recorder.run, recorder.cmdline, recorder.pidfd = {"pid": proc.pid}, cmdline, os.pidfd_open(proc.pid)
        try:
            return recorder._became_another()
        finally:
            os.close(recorder.pidfd)

    ended = subprocess.Popen(["true"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # a zombie: ended, not yet reaped
        with open(f"/proc/{ended.pid}/stat") as f:
            if f.read().rpartition(")")[2].split()[0] == "Z":
                break
        time.sleep(0.01)
    running = subprocess.Popen(["sleep", "30"])
    try:
        assert became_another(ended, b"python\x00app.py\x00")
        assert not became_another(running, b"sleep\x0030\x00")
        assert became_another(running, b"python\x00app.py\x00")
    finally:
        running.kill()
        running.wait()
        ended.wait()


def test_signals_to_the_recorder_are_denied(app):
    result, data, raised = run(app, "kill")
    assert result.returncode == 0, result.stderr
    assert raised == 4 + 3  # the two kills and the killpg were refused
    kills = [e for e in data["events"] if e["kind"] == "denied" and e["details"].get("permission") == "signal"]
    assert len(kills) == 3 and "pyward's recorder" in kills[0]["message"]
    assert data["summary"]["denied"] == 7 and data["run"]["exit_reason"] == "completed"
    assert pyward("verify", str(app / "r.json")).returncode == 0


def test_process_descriptors_of_the_recorder_are_refused(app):
    """os.pidfd_open and signal.pidfd_send_signal raise no audit event: guarded, they refuse the recorder
    (by pid, by a /proc/PID directory, by an object's __index__), and still work on any other process."""
    result, data, raised = run(app, "pidfd")
    assert result.returncode == 0, result.stderr
    assert raised == 4 + 3
    refused = [e for e in data["events"] if e["kind"] == "denied" and e["details"].get("permission") == "signal"]
    assert [e["details"]["operation"] for e in refused] == ["pidfd_open", "pidfd_send_signal", "pidfd_send_signal"]
    assert data["run"]["exit_reason"] == "completed" and pyward("verify", str(app / "r.json")).returncode == 0


def test_the_recorder_limits_are_not_the_programs(app):
    result, data, raised = run(app, "prlimit")
    assert result.returncode == 0, result.stderr
    assert raised == 4 + 1
    refused = [e for e in data["events"] if e["kind"] == "denied" and e["details"].get("permission") == "process"]
    assert [e["details"]["operation"] for e in refused] == ["prlimit"], refused
    assert data["run"]["exit_reason"] == "completed" and pyward("verify", str(app / "r.json")).returncode == 0


@pytest.mark.skipif(landlock_abi() < 6, reason="not run: the kernel's Landlock has no signal scope (ABI 6)")
def test_children_cannot_signal_the_recorder(app):
    """A Python child's audit layer knows the recorder; a command beneath the audit layer is kept from it by
    the kernel wall, which a policy that lets commands run scopes signals with."""
    path = app / "r.json"
    python = os.path.realpath(sys.executable)
    policy = ["--allow-read", "--allow-env=PATH", "--deny-env=SECRET_*", f"--allow-run=kill,{python}",
              "--allow-ffi=introspection"]  # (gc.get_objects finds the recorder's pid)
    result = subprocess.run([sys.executable, "-m", "pyward", "run", "-q", "--report", str(path), *policy, "app.py",
                             "children", str(path)], cwd=app, env=clean_env(), capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.split()[0]) == 4 + 2
    data = json.loads(path.read_text())
    assert data["run"]["layers"]["kernel"]["signals"] is True
    assert data["run"]["exit_reason"] == "completed" and pyward("verify", str(path)).returncode == 0


def test_the_program_keeps_its_process(app):
    """The process its caller started is the program (pid, process group, session as python's), and it has no
    child of pyward's to wait for."""
    (app / "who.py").write_text("import os\nprint(os.getpid(), os.getpgrp(), os.getsid(0))\n"
                                "try:\n    os.wait()\nexcept ChildProcessError:\n    print('no child')\n")
    probe = "import subprocess, sys; p = subprocess.Popen(sys.argv[1:]); p.wait(); print(p.pid)"
    seen = []
    for cmd in ([sys.executable, "who.py"], [sys.executable, "-m", "pyward", "run", "-q", "who.py"]):
        result = subprocess.run([sys.executable, "-c", probe, *cmd], cwd=app, capture_output=True, text=True,
                                env=clean_env(), timeout=60)
        (pid, group, session), child, started = (line.split() for line in result.stdout.splitlines())
        assert pid == started[0] and child == ["no", "child"]
        seen.append((int(group) == int(pid), session))
    assert seen[0] == seen[1]


def test_no_report_starts_no_recorder(app):
    (app / "fork.py").write_text("import os\nprint(len(os.listdir('/proc/self/task')))\n")
    result = subprocess.run([sys.executable, "-m", "pyward", "run", "-q", "--no-report", "fork.py"], cwd=app,
                            capture_output=True, text=True, env=clean_env(), timeout=60)
    assert result.stdout == "1\n"  # and no thread either


FORKS = """\
import json, os, stat, sys
def child(forge):
    try:
        os.environ.get("SECRET_CHILD")  # a denial: the sandbox's, recorded by the parent from its spool
    except PermissionError:
        pass
    sys.settrace(None)  # a tamper notice: sent by the child itself
    if forge:  # every socket the child holds gets a forged end of the run
        for fd in range(3, 256):
            try:
                if stat.S_ISSOCK(os.fstat(fd).st_mode):
                    os.write(fd, b'\\n{"ctl": "end", "exit_status": 0, "exit_reason": "forged"}\\n')
            except OSError:
                pass
    sys.stdout.flush()
    os._exit(0)
pids = []
for forge in (False, True):
    pid = os.fork()
    if pid == 0:
        child(forge)
    os.waitpid(pid, 0)
    pids.append(pid)
print(json.dumps(pids))
"""


def test_a_forked_child_events_are_in_the_record_once_and_it_cannot_end_the_run(tmp_path):
    """A pre-forking server's workers heal, alert and are denied in processes of their own: their events reach
    the recorder (each a datagram of its own), the sandbox's once (through the parent), and a child cannot
    send the run's end."""
    (tmp_path / "app.py").write_text(FORKS)
    path = tmp_path / "r.json"
    result = subprocess.run([sys.executable, "-m", "pyward", "run", "-q", "--report", str(path), "--allow-run=fork",
                             "--allow-ffi=tracing", "--deny-env=SECRET_*", "app.py"], cwd=tmp_path, env=clean_env(),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    children = json.loads(result.stdout)
    data = json.loads(path.read_text())
    hooks = [e["pid"] for e in data["events"] if e["kind"] == "hook.changed"]
    assert sorted(hooks) == sorted(children)  # each child's own event, sent by the child
    denied = [e["pid"] for e in data["events"] if e["kind"] == "denied"]
    assert sorted(denied) == sorted(children) and data["summary"]["denied"] == 2  # once each, not twice
    assert (data["run"]["exit_status"], data["run"]["exit_reason"]) == (0, "completed")
    forged = [e for e in data["events"] if e["kind"] == "record.malformed"]
    assert [e["details"]["why"] for e in forged] == ["a control record from a forked child"]
    assert pyward("verify", str(path)).returncode == 0


SPAMMING_CHILD = """\
import os, sys, time
if os.fork() == 0:  # a child that outlives the program and journals without end
    os.setsid()
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.dup2(null, 2)
    deadline, i = time.monotonic() + 60, 0
    while time.monotonic() < deadline and os.path.exists("keep-going"):
        os.putenv(f"APP_SETTING_{i}", "1")  # a new name each time: every one is an event of its own
        i += 1
    os._exit(0)
print("parent done")
"""


def test_a_forked_child_that_goes_on_journaling_cannot_hold_the_record_open(tmp_path):
    (tmp_path / "app.py").write_text(SPAMMING_CHILD)
    (tmp_path / "keep-going").write_text("")
    path = tmp_path / "r.json"
    try:
        result = subprocess.run([sys.executable, "-m", "pyward", "run", "-q", "--report", str(path),
                                 "--allow-run=fork", "--allow-env", "app.py"], cwd=tmp_path, env=clean_env(),
                                capture_output=True, text=True, timeout=60)
        assert (result.returncode, result.stdout) == (0, "parent done\n"), result.stderr
        deadline = time.monotonic() + 30  # the recorder reads a bounded number of the child's events, then ends
        while "after the end was recorded" not in json.loads(path.read_text())["run"]["exit_reason"]:
            assert time.monotonic() < deadline, "the recorder never finished the record"
            time.sleep(0.2)
    finally:
        (tmp_path / "keep-going").unlink()
    data = json.loads(path.read_text())
    assert data["run"]["exit_status"] == 0
    assert pyward("verify", str(path)).returncode == 0


def test_a_learning_run_that_replaces_itself_by_exec_writes_its_policy(tmp_path):
    """`pyward learn -m ruff ...`: the program execs a binary; the recorder writes the policy of what was seen
    and names the binary, whose own files no audit hook saw."""
    (tmp_path / "app.py").write_text(EXECS)
    result = subprocess.run([sys.executable, "-m", "pyward", "learn", "-o", "p.toml", "--report", "r.json",
                             "app.py"], cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout) == (3, "no tool\nfrom sh\n"), result.stderr
    lines = result.stderr.splitlines()
    assert lines[-3].startswith("[pyward] learned policy written to p.toml (") and \
        lines[-3].endswith("the program replaced itself with /bin/sh (exec)"), lines
    assert "not Python (/bin/sh)" in lines[-2]
    assert '"/bin/sh",' in (tmp_path / "p.toml").read_text()


FORGED_EXEC = """\
import fcntl, os, stat, sys, time
for fd in range(3, 256):  # every pipe it may write (pyward's channel among them): a forged exec note, then closed
    try:
        if stat.S_ISFIFO(os.fstat(fd).st_mode) and fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_WRONLY:
            os.write(fd, b'\\n{"ctl": "exec", "path": "/bin/true"}\\n')
            os.close(fd)
    except OSError:
        pass
time.sleep(3)  # past the recorder's grace time, still running, unrecorded
print("went on", flush=True)
"""


def test_an_exec_note_the_program_forged_does_not_hide_that_it_closed_the_channel(tmp_path):
    """The recorder takes an exec for the program's end only when the process's command line changed: a
    program that sends an exec note, closes pyward's channel and goes on is recorded as having done that."""
    (tmp_path / "app.py").write_text(FORGED_EXEC)
    result = subprocess.run([sys.executable, "-m", "pyward", "run", "-q", "--report", "r.json", "app.py"],
                            cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout) == (0, "went on\n"), result.stderr
    data = json.loads((tmp_path / "r.json").read_text())
    assert [e["kind"] for e in data["events"] if e["kind"] == "record.closed"] == ["record.closed"]
    assert data["run"]["exit_reason"] == "killed or os._exit (no end recorded)"
