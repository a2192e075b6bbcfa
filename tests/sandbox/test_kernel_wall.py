"""The kernel wall (sandbox/kernel.py): under enforce, Landlock holds where the audit layer is bypassed.

Each end-to-end case goes around the audit layer on purpose (ctypes calling libc with ffi allowed,
a Python child that ignores pyward's variables, a shell) and checks the file system or the listener,
not pyward's output: the file is absent, nothing was accepted.  `--no-kernel` shows the same bypass
going through, so it is the wall that stopped it.
"""
from __future__ import annotations

import errno
import json
import shutil
import socket
import subprocess
import sys
import uuid

import pytest

from helpers import clean_env
from pyward._native import native
from pyward.policy import Policy
from pyward.sandbox import kernel
from pyward.sandbox.context import Context
from sandbox_helpers import guard

ABI = native.landlock_abi() if native is not None else 0
landlock = pytest.mark.skipif(ABI == 0, reason=f"not run: kernel without Landlock (ABI {ABI})")
WALL = ("--mode", "enforce", "--allow-read=.", "--allow-write=out")

CTYPES_WRITE = """\
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
for path in sys.argv[1:]:
    ctypes.set_errno(0)
    fd = libc.open(path.encode(), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    err = ctypes.get_errno()
    if fd >= 0:
        libc.write(fd, b"written", 7)
        libc.close(fd)
    print(path.rsplit("/", 1)[-1], fd >= 0, err)
"""


def _project(tmp_path):
    (tmp_path / "out").mkdir()
    return tmp_path


@landlock
def test_ctypes_write_outside_the_policy_fails_at_the_kernel(tmp_path):
    _project(tmp_path)
    outside, inside = tmp_path / "outside.txt", tmp_path / "out" / "inside.txt"
    run = guard(tmp_path, CTYPES_WRITE, *WALL, "--allow-ffi", args=(str(outside), str(inside)))
    assert run.status == 0, run
    assert not outside.exists()
    assert inside.read_text() == "written"
    assert run.stdout.splitlines() == [f"outside.txt False {errno.EACCES}", "inside.txt True 0"]


@landlock
def test_no_kernel_lets_the_same_write_through(tmp_path):
    _project(tmp_path)
    outside = tmp_path / "outside.txt"
    run = guard(tmp_path, CTYPES_WRITE, *WALL, "--allow-ffi", "--no-kernel", args=(str(outside),))
    assert run.status == 0, run
    assert outside.read_text() == "written"


@landlock
def test_kernel_false_in_the_config_turns_the_wall_off(tmp_path):
    _project(tmp_path)
    (tmp_path / "pyward.toml").write_text('mode = "enforce"\nkernel = false\n[permissions]\nread = ["."]\n'
                                          'write = ["out"]\nffi = true\n')
    outside = tmp_path / "outside.txt"
    run = guard(tmp_path, CTYPES_WRITE, args=(str(outside),), config=True)
    assert run.status == 0, run
    assert outside.read_text() == "written"


@landlock
def test_a_python_child_without_pyward_variables_is_still_walled(tmp_path):
    _project(tmp_path)
    outside, inside = tmp_path / "child-outside.txt", tmp_path / "out" / "child-inside.txt"
    code = f"""\
    import subprocess, sys
    child = "import sys\\nfor p in sys.argv[1:]:\\n    try:\\n        open(p, 'w').write('child')\\n" \\
            "    except OSError as e:\\n        print(p.rsplit('/', 1)[-1], e.errno)\\n"
    # -I -S: the child ignores PYTHONPATH and reads no .pth file, so pyward never loads in it (no audit layer)
    r = subprocess.run([sys.executable, "-I", "-S", "-c", child, {str(outside)!r}, {str(inside)!r}], env={{}},
                       capture_output=True, text=True)
    print(r.returncode, r.stdout.strip())
    """
    run = guard(tmp_path, code, *WALL, "--allow-run")
    assert run.status == 0, run
    assert not outside.exists()
    assert inside.read_text() == "child"
    assert run.stdout.strip() == f"0 child-outside.txt {errno.EACCES}"


@landlock
def test_a_shell_child_cannot_write_outside(tmp_path):
    _project(tmp_path)
    marker = tmp_path.parent / f"pyward-wall-{uuid.uuid4().hex}"
    code = f"""\
    import subprocess
    r = subprocess.run(["sh", "-c", "echo x > {marker}; echo y > out/sh.txt"], capture_output=True, text=True)
    print(r.returncode, "Permission denied" in r.stderr)
    """
    run = guard(tmp_path, code, *WALL, "--allow-run=sh", "--allow-env=PATH")
    assert run.status == 0, run
    assert not marker.exists()
    assert (tmp_path / "out" / "sh.txt").read_text() == "y\n"
    assert run.stdout.split() == ["0", "True"]


@landlock
def test_a_shell_allowed_to_run_runs_the_commands_of_its_script(tmp_path):
    """A shell allowed to run runs whatever its script names (the audit layer never sees those
    commands): the wall leaves execution alone there, and still holds the shell's writes."""
    _project(tmp_path)
    (tmp_path / "data.txt").write_text("from the file\n")
    marker = tmp_path.parent / f"pyward-wall-{uuid.uuid4().hex}"
    code = f"""\
    import subprocess
    r = subprocess.run("cat data.txt | tr a-z A-Z; sed -n 1p data.txt > {marker}", shell=True, capture_output=True,
                       text=True)
    print(r.stdout.strip(), "|", "Permission denied" in r.stderr)
    """
    run = guard(tmp_path, code, *WALL, "--allow-run=sh", "--allow-env=PATH")
    assert run.status == 0, run
    assert run.stdout.strip() == "FROM THE FILE | True", run
    assert not marker.exists()


@landlock
def test_tcp_connect_only_to_the_ports_the_policy_names(tmp_path):
    allowed, other = socket.socket(), socket.socket()
    for s in (allowed, other):
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        s.settimeout(0.2)
    try:
        port_ok, port_no = allowed.getsockname()[1], other.getsockname()[1]
        code = f"""\
        import subprocess, sys
        child = "import socket, sys\\nfor p in sys.argv[1:]:\\n    s = socket.socket()\\n    try:\\n" \\
                "        s.connect(('127.0.0.1', int(p)))\\n        print(p, 'connected')\\n" \\
                "    except OSError as e:\\n        print(p, e.errno)\\n"
        r = subprocess.run([sys.executable, "-I", "-S", "-c", child, "{port_ok}", "{port_no}"], env={{}},
                           capture_output=True, text=True)
        print(r.stdout.strip())
        """
        run = guard(tmp_path, code, "--mode", "enforce", "--allow-read=.", "--allow-run",
                    f"--allow-net=127.0.0.1:{port_ok}")
        assert run.status == 0, run
        assert run.stdout.splitlines() == [f"{port_ok} connected", f"{port_no} {errno.EACCES}"]
        allowed.accept()[0].close()
        with pytest.raises(socket.timeout):
            other.accept()
    finally:
        allowed.close()
        other.close()


@landlock
def test_the_layers_are_named_at_v_and_in_the_report(tmp_path):
    _project(tmp_path)
    report = tmp_path / "report.json"
    run = guard(tmp_path, "print('hi')\n", *WALL, "-v", "--report", str(report))
    assert run.stdout == "hi\n"
    lines = [line for line in run.stderr.splitlines() if "sandbox layers" in line]
    assert lines == [f"[pyward] sandbox layers: audit hooks (enforce) + kernel wall (Landlock ABI {ABI}: "
                     "read, write, run, TCP ports none)"]
    layers = json.loads(report.read_text())["run"]["layers"]
    assert layers["audit"] == "enforce" and layers["kernel"]["abi"] == ABI and layers["kernel"]["write"]
    off = guard(tmp_path, "print('hi')\n", *WALL, "--no-kernel", "--report", str(report))
    assert off.stdout == "hi\n"
    assert json.loads(report.read_text())["run"]["layers"]["kernel"].startswith("off")


@landlock
def test_a_policy_that_allows_everything_raises_no_wall_and_no_warning(tmp_path):
    report = tmp_path / "report.json"
    run = guard(tmp_path, "print('hi')\n", "-A", "--deny-env=API_TOKEN", "-v", "--report", str(report))
    assert run.stdout == "hi\n" and "warning" not in run.stderr, run.stderr
    assert [line for line in run.stderr.splitlines() if "sandbox layers" in line] == [
        "[pyward] sandbox layers: audit hooks (enforce); no kernel wall: the policy allows every file, command "
        "and port"]
    layers = json.loads(report.read_text())["run"]["layers"]
    assert layers["audit"] == "enforce" and layers["kernel"].startswith("off (nothing to restrict")


UNHELD = ("[pyward] the kernel wall cannot hold the deny rules read 'secret' (they lie inside a directory the "
          "policy allows, and Landlock only allows): the audit layer holds them for Python, but a command it "
          "starts without pyward (a shell, a binary, python -S) or native code could reach them")

#: A command pyward cannot arm reads a file beside the denied directory and one inside it.
CAT = """\
import subprocess
for path in ("notes.txt", "secret/key.txt", "sub/deep.txt"):
    r = subprocess.run(["/bin/cat", path], capture_output=True, text=True)
    print(path, r.stdout.strip() or "refused")
"""


def _secret(tmp_path):
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "key.txt").write_text("TOPSECRET")
    (tmp_path / "notes.txt").write_text("notes")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "deep.txt").write_text("deep")
    (tmp_path / ".pyward").mkdir()  # the reports' directory exists: pyward makes nothing in the project


@landlock
def test_a_deny_rule_inside_a_read_only_grant_is_carved_out_of_the_wall(tmp_path):
    _secret(tmp_path)
    report = tmp_path / ".pyward" / "r.json"
    run = guard(tmp_path, CAT, "--allow-read=.", "--deny-read=secret", "--allow-run=cat", "--report", str(report))
    assert run.stdout.splitlines() == ["notes.txt notes", "secret/key.txt refused", "sub/deep.txt deep"], run
    assert "cannot hold" not in run.stderr
    assert json.loads(report.read_text())["run"]["layers"]["kernel"]["unheld"] == []


@landlock
def test_a_deny_rule_the_wall_cannot_hold_is_said_when_something_could_bypass_the_audit_layer(tmp_path):
    _secret(tmp_path)
    report = tmp_path / ".pyward" / "r.json"
    # the program may make files beside secret/: a carved wall could not let it read them back
    run = guard(tmp_path, CAT, "--allow-read=.", "--allow-write=.", "--deny-read=secret", "--allow-run=cat",
                "--report", str(report))
    assert [line for line in run.stderr.splitlines() if "cannot hold" in line] == [UNHELD], run.stderr
    assert json.loads(report.read_text())["run"]["layers"]["kernel"]["unheld"] == ["read 'secret'"]
    assert "secret/key.txt TOPSECRET" in run.stdout  # what the notice says: held by the audit layer alone
    for quiet in (("--allow-read=.", "--allow-write=.", "--deny-read=secret"),  # nothing runs beneath the audit layer
                  ("--allow-read=.", "--deny-read=/etc/shadow", "--allow-run=cat")):  # held by the wall
        assert "cannot hold" not in guard(tmp_path, "print('hi')\n", *quiet).stderr


@landlock
def test_a_walled_program_behaves_as_under_python(tmp_path):
    import subprocess

    _project(tmp_path)
    code = """\
    import hashlib, json, os, sqlite3, ssl, subprocess, sys, tempfile, zoneinfo
    ssl.create_default_context()
    import multiprocessing
    with multiprocessing.Lock():  # a POSIX semaphore: sem_open creates it in /dev/shm
        pass
    db = sqlite3.connect(":memory:")
    print(db.execute("select 6 * 7").fetchone()[0], os.cpu_count() > 0, json.dumps({"a": 1}))
    print(hashlib.sha256(b"x").hexdigest()[:8], zoneinfo.ZoneInfo("Europe/Paris").key)
    with open("out/result.txt", "w") as f:
        f.write("done")
    print(open("out/result.txt").read(), len(os.listdir(".")) > 0)
    sys.exit(3)
    """
    run = guard(tmp_path, code, *WALL, "--allow-env", "--allow-import")
    plain = subprocess.run([sys.executable, "app.py"], cwd=tmp_path, capture_output=True, text=True)
    assert (run.status, run.stdout) == (plain.returncode, plain.stdout) == (3, plain.stdout)
    assert "done True" in run.stdout


def _context(tmp_path):
    return Context(mode="enforce", on_deny="raise", inherit=False, program_dir=str(tmp_path), outputs=[],
                   emit=lambda *a, **k: None, exit_on_deny=None, log=None)


@pytest.mark.parametrize("abi, refer, truncate, net", [(1, False, False, False), (2, True, False, False),
                                                        (3, True, True, False), (4, True, True, True)])
def test_handled_rights_follow_the_abi(tmp_path, abi, refer, truncate, net):
    policy = Policy.from_dict(allow={"read": ["."], "write": [str(tmp_path)], "net": ["example.com:443"]},
                              base=str(tmp_path))
    wall = kernel.compile_wall(policy, _context(tmp_path), abi)
    assert bool(wall.fs & kernel.REFER) is refer and bool(wall.fs & kernel.TRUNCATE) is truncate
    assert wall.net == (kernel.BIND_TCP | kernel.CONNECT_TCP if net else 0)
    assert wall.ports == ({443: kernel.BIND_TCP | kernel.CONNECT_TCP} if net else {})
    for access in wall.paths.values():  # a rule never names a right the ruleset does not handle
        assert access & ~wall.fs == 0


def test_blanket_grants_leave_the_kernel_nothing_to_restrict_there(tmp_path):
    policy = Policy.from_dict(allow={"read": True, "run": ["*"], "net": ["example.com"]}, base=str(tmp_path))
    wall = kernel.compile_wall(policy, _context(tmp_path), 7)
    assert wall.fs & (kernel.READ | kernel.EXECUTE) == 0 and wall.fs & kernel.WRITE_FILE
    assert wall.net == 0  # a host without a port: every port


def test_a_rule_on_proc_self_is_granted_as_proc_files_to_every_process(tmp_path):
    """Each process of the run has its own /proc/self: the wall cannot grant one process's directory
    to its children, so a file rule there becomes a grant of /proc's files (no listing), and no pid."""
    import os

    policy = Policy.from_dict(allow={"read": ["/proc/self/status"]}, base=str(tmp_path))
    wall = kernel.compile_wall(policy, _context(tmp_path), 7)
    assert wall.paths["/proc"] == kernel.READ_FILE
    assert not any(path.startswith(f"/proc/{os.getpid()}") for path in wall.paths)
    whole = kernel.compile_wall(Policy.from_dict(allow={"read": ["/proc/self"]}, base=str(tmp_path)),
                                _context(tmp_path), 7)
    assert whole.paths["/proc"] == kernel.READ & whole.fs  # a directory rule: its listing too


def test_a_kernel_without_landlock_is_said_in_one_line(tmp_path):
    events = []

    class Journal:
        def emit(self, *args, **kwargs):
            events.append((args, kwargs))

    class Session:
        journal, layers, engines = Journal(), {}, []

    plan = kernel.Plan(None)
    plan.abi, plan.wall = 0, None
    plan.raise_("enforce", Session)
    assert [kwargs["message"] for _, kwargs in events] == [
        "kernel without Landlock (ABI 0): the sandbox runs with the audit layer only"]
    assert [kwargs["severity"] for _, kwargs in events] == ["notice"]
    assert Session.layers == {"audit": "enforce", "kernel": "unavailable: kernel without Landlock (ABI 0)"}


READ_OUTSIDE = """\
import subprocess, sys
secret = sys.argv[1]
cat = subprocess.run(["/usr/bin/cat", secret], capture_output=True, text=True)
py = subprocess.run([sys.executable, "-I", "-S", "-c", f"print(open({secret!r}).read())"], capture_output=True,
                    text=True)
print("cat", cat.returncode, "secret" in cat.stdout, "Permission denied" in cat.stderr)
print("python -I -S", py.returncode, "secret" in py.stdout, "PermissionError" in py.stderr)
"""


@landlock
@pytest.mark.parametrize("run_rule", ["--allow-run", "--allow-run=/usr/bin/cat,python3"])
def test_a_child_cannot_read_outside_the_policy(tmp_path, run_rule):
    """Below the audit layer (a command, a Python child with no site), reads hold at the kernel."""
    _project(tmp_path)
    secret = tmp_path.parent / f"pyward-secret-{uuid.uuid4().hex}"
    secret.write_text("secret\n")
    try:
        rule = run_rule if run_rule == "--allow-run" else f"{run_rule},{sys.executable}"
        walled = guard(tmp_path, READ_OUTSIDE, *WALL, rule, args=(str(secret),))
        assert walled.status == 0, walled
        assert walled.stdout.splitlines() == ["cat 1 False True", "python -I -S 1 False True"]
        open_wall = guard(tmp_path, READ_OUTSIDE, *WALL, rule, "--no-kernel", args=(str(secret),))
        assert open_wall.stdout.splitlines() == ["cat 0 True False", "python -I -S 0 True False"]
    finally:
        secret.unlink()


def test_nothing_missing_widens_to_the_whole_file_system(tmp_path):
    """A path not there gets no rule: pyward's own lists name files that may not exist (/lib32,
    /etc/ld.so.preload), and a grant at their nearest ancestor would be `/`."""
    (tmp_path / "made").mkdir()
    policy = Policy.from_dict(allow={"read": [".", "/nonexistent-pyward/x"], "write": ["made/later/file.txt"]},
                              base=str(tmp_path))
    wall = kernel.compile_wall(policy, _context(tmp_path), 7)
    assert "/" not in wall.paths and "/usr" not in wall.paths and "/etc" not in wall.paths
    assert wall.paths[str(tmp_path / "made")] & kernel.WRITE_FILE  # a file the program will make: its directory


SIGNAL = """\
import os, signal, subprocess, sys
outside = int(sys.argv[1])
try:
    os.kill(outside, signal.SIGCONT)
    print("outside: sent")
except PermissionError as exc:
    print("outside: refused", type(exc).__name__)
child = subprocess.Popen(["sleep", "30"])
os.kill(child.pid, signal.SIGTERM)  # its own child: as under python
print("own child:", child.wait())
"""


@pytest.mark.skipif(ABI < 6, reason=f"not run: Landlock ABI {ABI} has no signal scope (ABI 6)")
def test_a_policy_that_runs_commands_keeps_signals_inside_the_run(tmp_path):
    """With commands allowed, the wall scopes signals (so no command can stop pyward's recorder): a process
    started outside the run is refused, by the audit layer with a message saying why, and by the kernel for
    what the audit layer does not see; the run's own children are signalled as under python."""
    import subprocess

    _project(tmp_path)
    outside = subprocess.Popen(["sleep", "60"])
    try:
        policy = (*WALL, "--allow-env=PATH", "--allow-run=sleep,kill")
        run = guard(tmp_path, SIGNAL, *policy, args=(str(outside.pid),))
        assert run.stdout.splitlines() == ["outside: refused AccessDenied", "own child: -15"], run
        assert [e["details"]["rule"] for e in run.denied] == ["pyward (kernel wall)"]
        assert "not started by this run" in run.denied[0]["message"]
        shell = guard(tmp_path, f"import subprocess\nprint(subprocess.run(['kill', '-CONT', '{outside.pid}'], "
                                "capture_output=True).returncode)\n", *policy)
        assert shell.stdout == "1\n", shell  # the kernel's EPERM
        plain = guard(tmp_path, SIGNAL, *WALL, "--allow-env=PATH", "--allow-run=sleep", "--no-kernel",
                      args=(str(outside.pid),))
        assert plain.stdout.splitlines() == ["outside: sent", "own child: -15"], plain
    finally:
        outside.kill()
        outside.wait()


@landlock
@pytest.mark.skipif(__import__("os").geteuid() != 0, reason="not run: making a device node needs root")
def test_a_command_cannot_make_a_device_node_where_the_policy_allows_writing(tmp_path):
    """A write grant of the wall makes every entry but device nodes (root's mknod of a disk in out/ would
    read the disk): a command beneath the audit layer gets EACCES; a FIFO it may make."""
    _project(tmp_path)
    code = ("import subprocess\n"
            "for argv in (['mknod', 'out/disk', 'b', '1', '3'], ['mkfifo', 'out/fifo']):\n"
            "    print(argv[0], subprocess.run(argv, capture_output=True).returncode)\n")
    run = guard(tmp_path, code, *WALL, "--allow-env=PATH", "--allow-run=mknod,mkfifo")
    assert run.stdout.splitlines() == ["mknod 1", "mkfifo 0"], run
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["fifo"]


@landlock
@pytest.mark.skipif(shutil.which("gcc") is None, reason="not run: no gcc on PATH")
def test_a_compiler_allowed_to_run_runs_its_passes(tmp_path):
    """gcc runs cc1, as and ld (programs the audit layer never sees) and reads the system headers:
    `run = ["gcc"]` lets it compile, as a build backend's C extension needs, and its output is
    still held to the policy's writes."""
    _project(tmp_path)
    (tmp_path / "h.c").write_text("#include <stdio.h>\nint main(void) { puts(\"built\"); return 0; }\n")
    marker = tmp_path.parent / f"pyward-wall-{uuid.uuid4().hex}"
    code = f"""\
    import os, subprocess
    env = {{"PATH": os.environ["PATH"], "TMPDIR": os.path.abspath("out")}}  # its temporary files
    r = subprocess.run(["gcc", "h.c", "-o", "out/h"], capture_output=True, text=True, env=env)
    print(r.returncode, r.stderr.strip()[-300:])
    r = subprocess.run(["gcc", "h.c", "-o", "{marker}"], capture_output=True, text=True, env=env)
    print(r.returncode)
    """
    run = guard(tmp_path, code, *WALL, "--allow-run=gcc", "--allow-env=PATH")
    assert run.status == 0, run
    assert run.stdout.split("\n")[0] == "0 ", run
    assert subprocess.run([str(tmp_path / "out" / "h")], capture_output=True, text=True).stdout == "built\n"
    assert run.stdout.split("\n")[1] != "0", run
    assert not marker.exists()


@pytest.mark.parametrize("scope, compiler", [
    ("gcc", True), ("cc", True), ("c++", True), ("clang++-14", True), ("/usr/bin/x86_64-linux-gnu-gcc-12", True),
    ("rustc", True), ("gcc-ar", False), ("git", False), ("ccache", False), ("python3.12", False),
])
def test_compiler_drivers_are_told_by_name(scope, compiler):
    assert kernel.is_compiler(scope) is compiler


# --- bytecode caches the program writes itself ---------------------------------------------
# The import system's cache writes are implicit (python goes on without them) and the wall
# grants none; py_compile fails without its write, so the audit layer judges that one as any
# write: learned, and then granted by the wall too.

def _compile(tmp_path, *options, learn=False):
    command = ["learn", "-q", "-o", "pyward.toml"] if learn else ["run", *options]
    return subprocess.run([sys.executable, "-m", "pyward", *command, "-m", "compileall", "-q", "pkg"],
                          cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=60)


@landlock
def test_a_learned_policy_lets_compileall_write_its_caches_next_run(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text("X = 1\n")
    learned = _compile(tmp_path, learn=True)
    assert learned.returncode == 0, learned.stderr
    assert "__pycache__" in (tmp_path / "pyward.toml").read_text()
    shutil.rmtree(tmp_path / "pkg" / "__pycache__")  # the next run, on a fresh tree
    run = _compile(tmp_path, "--config", "pyward.toml")
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout == ""
    assert list((tmp_path / "pkg" / "__pycache__").glob("mod.*.pyc"))
    assert "0 denied" in run.stderr


@pytest.mark.parametrize("layers", [(), ("--no-kernel",)])
def test_compileall_writing_a_cache_not_granted_is_denied_by_the_audit_layer(tmp_path, layers):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text("X = 1\n")
    run = _compile(tmp_path, "--mode", "enforce", "--allow-read=.", "--allow-env", *layers)
    assert run.returncode == 1
    assert not (tmp_path / "pkg" / "__pycache__").exists()
    assert "--allow-write=" in run.stderr and "__pycache__" in run.stderr  # named, with the flag that allows it
