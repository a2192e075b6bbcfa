"""Holes closed by cause: addresses not spellings, C code that writes by mode, native memory
without ffi, and the variables that arm child processes.  Each asserts that the side effect
did not happen (nothing reached the listener, no file, no marker), and that the allowed use works."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading

import pytest

from helpers import clean_env
from sandbox_helpers import guard


def learned_then_enforced(tmp_path, code: str, stdout: str) -> str:
    """`pyward learn` of `code`, then a run under the policy it wrote (enforce, the kernel wall where there is
    one): both print `stdout`, with no denial; the policy's text."""
    (tmp_path / "app.py").write_text(textwrap.dedent(code))
    learned = subprocess.run([sys.executable, "-m", "pyward", "learn", "-o", "p.toml", "app.py"], cwd=tmp_path,
                             env=clean_env(), capture_output=True, text=True, timeout=60)
    assert (learned.returncode, learned.stdout) == (0, stdout), learned.stderr
    enforced = guard(tmp_path, code, "--config", "p.toml", config=True)
    assert (enforced.stdout, enforced.denied, enforced.status) == (stdout, [], 0), enforced
    return (tmp_path / "p.toml").read_text()


SPELLINGS = ["127.0.0.1", "127.1", "2130706433", "0x7f000001", "0177.0.0.1", "0.0.0.0", "localhost", "",
             "::ffff:127.0.0.1"]


class Listener:
    """A loopback listener that counts the connections it accepts."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("0.0.0.0", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.stop = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> int:
        self.stop = True
        self.thread.join()
        self.sock.close()
        return self.accepted


CONNECT = """\
import socket, sys
port = int(sys.argv[1])
for host in %r:
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        s.connect((host, port))
        print("CONNECTED", repr(host))
    except PermissionError:
        print("DENIED", repr(host))
    except OSError as exc:
        print("FAILED", repr(host), exc)
    s.close()
""" % (SPELLINGS,)


def test_every_spelling_of_a_denied_address_is_denied(tmp_path):
    listener = Listener()
    try:
        run = guard(tmp_path, CONNECT, "--allow-net=*", "--deny-net=127.0.0.1", args=(str(listener.port),))
    finally:
        accepted = listener.close()
    assert accepted == 0, run
    assert run.stdout.count("DENIED") == len(SPELLINGS), run
    assert len(run.denied) == len(SPELLINGS)


def test_every_spelling_of_an_allowed_address_connects(tmp_path):
    listener = Listener()
    try:
        run = guard(tmp_path, CONNECT, f"--allow-net=127.0.0.1:{listener.port}", args=(str(listener.port),))
    finally:
        accepted = listener.close()
    assert run.stdout.count("CONNECTED") == len(SPELLINGS), run
    assert accepted == len(SPELLINGS)


def test_a_rule_naming_a_host_judges_its_addresses(tmp_path):
    listener = Listener()
    try:
        run = guard(tmp_path, CONNECT, "--allow-net=*", "--deny-net=localhost", args=(str(listener.port),))
    finally:
        accepted = listener.close()
    assert accepted == 0, run
    assert "CONNECTED" not in run.stdout, run


def test_v4_mapped_and_cidr_rules(tmp_path):
    listener = Listener()
    try:
        run = guard(tmp_path, CONNECT, "--allow-net=*", "--deny-net=::ffff:127.0.0.0/104",
                    args=(str(listener.port),))
    finally:
        accepted = listener.close()
    assert accepted == 0, run


def test_reverse_dns_of_an_address_is_judged(tmp_path):
    run = guard(tmp_path, """\
        import socket
        try:
            socket.gethostbyaddr('127.0.0.1')
            print("LOOKED UP")
        except PermissionError:
            print("DENIED")
    """, "--allow-read=.")
    assert "DENIED" in run.stdout, run
    assert run.denied[0]["details"]["operation"] == "reverse dns lookup"


def test_keylog_file_is_a_write(tmp_path):
    run = guard(tmp_path, """\
        import ssl
        ctx = ssl.create_default_context()
        try:
            ctx.keylog_filename = 'keys.log'
            print("WRITTEN")
        except PermissionError:
            print("DENIED")
    """, "--allow-read=.")
    assert "DENIED" in run.stdout, run
    assert not (tmp_path / "keys.log").exists()
    assert run.denied[0]["details"]["permission"] == "write"


def test_keylog_file_in_an_allowed_directory(tmp_path):
    (tmp_path / "out").mkdir()
    run = guard(tmp_path, """\
        import ssl
        ssl.create_default_context().keylog_filename = 'out/keys.log'
        print("WRITTEN")
    """, "--allow-read=.", "--allow-write=out")
    assert "WRITTEN" in run.stdout, run
    assert (tmp_path / "out" / "keys.log").exists()


def test_sqlite_uri_names(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "secret").mkdir()
    run = guard(tmp_path, """\
        import os, sqlite3
        for name in ('file:secret/a.db', 'file:///' + os.getcwd() + '/secret/b.db', 'file:secr%65t/c.db?mode=rwc',
                     'file:out/ok.db?mode=rwc'):
            try:
                sqlite3.connect(name, uri=True).execute('create table t(x)')
                print("OPENED", name)
            except PermissionError:
                print("DENIED", name)
    """, "--allow-read=.", "--allow-write=out")
    assert run.stdout.count("DENIED") == 3, run
    assert os.listdir(tmp_path / "secret") == []
    assert (tmp_path / "out" / "ok.db").exists()


def test_a_memory_database_named_by_uri_needs_no_write(tmp_path):
    """Django's test database (`file:memorydb_default?mode=memory&cache=shared`, uri=True) is memory: no file
    to judge.  Without uri=True SQLite creates a file of that very name, which is a write."""
    name = "file:memorydb_default?mode=memory&cache=shared"
    run = guard(tmp_path, f"""\
        import sqlite3
        for uri in (True, False):
            try:
                sqlite3.connect({name!r}, uri=uri).execute('create table t(x)')
                print("OPENED", uri)
            except PermissionError:
                print("DENIED", uri)
    """, "--mode=enforce")
    assert run.stdout == "OPENED True\nDENIED False\n", run
    assert [e["name"] for e in run.denied] == [str(tmp_path / name)]
    assert not (tmp_path / name).exists()


COMPUTED_ATTACH = """\
import os, sqlite3, tempfile
where = tempfile.mkdtemp()
connection = sqlite3.connect(os.path.join(where, "a.db"))
try:
    connection.execute("attach database ? as other", (os.path.join(where, "b.db"),))  # coverage combine does
    print("ATTACHED")
except sqlite3.DatabaseError as exc:
    print("REFUSED", exc)
"""


def test_an_attach_of_a_computed_name_is_allowed_by_naming_it_as_learn_writes_it(tmp_path):
    """SQLite's authorizer cannot say which file `ATTACH ?` opens: it is refused unless a rule names
    '(a database name computed in SQL)', the rule a learning run writes, which then holds."""
    refused = guard(tmp_path, COMPUTED_ATTACH, "--mode=enforce", "--allow-read=$TMP", "--allow-write=$TMP")
    assert refused.stdout == "REFUSED not authorized\n", refused
    policy = learned_then_enforced(tmp_path, COMPUTED_ATTACH, "ATTACHED\n")
    assert '"(a database name computed in SQL)",' in policy


UNION = """\
import sys
try:
    import ctypes
except ImportError as exc:
    print("IMPORT DENIED", type(exc).__name__)
    raise SystemExit(0)
class Both(ctypes.Union):
    _fields_ = [("number", ctypes.c_size_t), ("pointer", ctypes.POINTER(ctypes.c_char))]
data = b"pyward-marker"
both = Both()
both.number = id(data) + sys.getsizeof(data) - len(data) - 1
print("READ", both.pointer[0:13])
"""


def test_ctypes_import_needs_ffi(tmp_path):
    run = guard(tmp_path, UNION, "--allow-read=.")
    assert "IMPORT DENIED ImportDenied" in run.stdout, run
    assert "READ" not in run.stdout
    assert run.denied and run.denied[0]["where"].startswith(str(tmp_path))


def test_ctypes_with_ffi_works(tmp_path):
    run = guard(tmp_path, UNION, "--allow-read=.", "--allow-ffi")
    assert "READ b'pyward-marker'" in run.stdout, run


def test_pywards_variables_are_not_the_programs(tmp_path):
    run = guard(tmp_path, """\
        import os
        for act in (lambda: os.unsetenv('PYWARD_SANDBOX'), lambda: os.putenv('PYWARD_SANDBOX', '{}'),
                    lambda: os.environ.__setitem__('PYWARD_DISABLE_NATIVE', '1'),
                    lambda: os.putenv('PYTHONPATH', '/tmp')):
            try:
                act()
                print("WRITTEN")
            except PermissionError:
                print("DENIED")
        os.environ['PYTHONPATH'] = 'lib'   # through os.environ: allowed, the boot directory stays first
        print("PYTHONPATH", os.environ['PYTHONPATH'])
    """, "--allow-read=.", "--allow-env=*")
    assert run.stdout.count("DENIED") == 4, run
    assert "PYTHONPATH lib" in run.stdout
    assert len(run.denied) == 4


def test_a_childs_env_cannot_disarm_it(tmp_path):
    python = os.path.basename(sys.executable)
    run = guard(tmp_path, """\
        import subprocess, sys
        code = ("from pyward._native import native; print('NATIVE', native is not None); "
                "open('marker', 'w').write('x')")
        for env in ({'PATH': '/usr/bin:/bin', 'PYWARD_DISABLE_NATIVE': '1'},
                    {'PATH': '/usr/bin:/bin', 'PYWARD_SANDBOX': '{}', 'PYTHONPATH': ''}):
            r = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True)
            print(r.stdout.strip(), r.returncode)
    """, "--allow-read=.", f"--allow-run={python},python3,python")
    assert not (tmp_path / "marker").exists(), run
    assert run.stdout.count("NATIVE True") == 2, run
    assert sum(1 for e in run.denied if e["message"].startswith("child ")) == 2


ENV_CHILDREN = """\
    import os, subprocess, sys
    code = "import os; print(os.environ.get('SECRET_TOKEN'))"
    for flags in (["-S"], ["-S", "-E"]):  # no site: pyward cannot arm these
        print(subprocess.run([sys.executable, *flags, "-c", code], capture_output=True, text=True).stdout.strip())
    shell = subprocess.run(["/bin/sh", "-c", "echo sh:$SECRET_TOKEN:$OTHER"], capture_output=True, text=True)
    print(shell.stdout.strip())
    try:
        os.environ["SECRET_TOKEN"]
    except PermissionError:
        print("denied")
"""


@pytest.mark.parametrize("mode", ["enforce", "watch"])
def test_a_denied_variable_reaches_no_child_pyward_cannot_arm(tmp_path, mode):
    env = clean_env(SECRET_TOKEN="hunter2", OTHER="kept")
    run = guard(tmp_path, ENV_CHILDREN, f"--mode={mode}", "--allow-read=.", "--allow-run", "--allow-env=OTHER",
                "--deny-env=SECRET_TOKEN", env=env)
    assert run.status == 0, run
    if mode == "enforce":  # gone from the environment before the program's first line; still a denial
        assert run.stdout.splitlines() == ["None", "None", "sh::kept", "denied"], run
        assert [e["name"] for e in run.denied] == ["SECRET_TOKEN"], run
    else:  # watch blocks nothing and changes nothing
        assert run.stdout.splitlines() == ["hunter2", "hunter2", "sh:hunter2:kept"], run


def test_a_deny_rule_on_pythons_variables_leaves_children_armed(tmp_path):
    """`--deny-env=PYTHON*` names PYTHONPATH, which arms Python children: it stays in the environment."""
    run = guard(tmp_path, """\
        import subprocess, sys
        code = "import sys; print(any(name.startswith('pyward') for name in sys.modules))"
        print(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip())
    """, "--allow-read=.", "--allow-run", "--deny-env=PYTHON*")
    assert run.stdout == "True\n", run


@pytest.mark.parametrize("host", ["127.1", "0x7f000001"])
def test_bind_is_judged_by_address(tmp_path, host):
    run = guard(tmp_path, f"""\
        import socket
        try:
            socket.socket().bind(({host!r}, 0))
            print("BOUND")
        except PermissionError:
            print("DENIED")
    """, "--allow-net=*", "--deny-net=127.0.0.1")
    assert "DENIED" in run.stdout, run


READ_THROUGH_WRITE = """\
import os, sys
box = sys.argv[1]
for how in ("r+", "a+"):
    try:
        with open(os.path.join(box, "secret.txt"), how) as f:
            f.seek(0)
            print(how, "READ", f.read().strip())
    except PermissionError as exc:
        print(how, "DENIED", type(exc).__name__)
"""


@pytest.mark.parametrize("kernel", ["--no-kernel", "--mode=enforce"])
def test_a_file_opened_to_read_and_write_needs_both(tmp_path, tmp_path_factory, kernel):
    """`--allow-write=DIR` alone does not let `open(path, "r+")` read what DIR holds: the read half is judged
    too, the first time as every time, so the refusal is the audit layer's AccessDenied (journaled), not the
    kernel wall's bare EACCES."""
    box = tmp_path_factory.mktemp("box")
    (box / "secret.txt").write_text("s3cret\n")
    run = guard(tmp_path, READ_THROUGH_WRITE, f"--allow-write={box}", kernel, args=(str(box),))
    assert run.stdout == "r+ DENIED AccessDenied\na+ DENIED AccessDenied\n", run
    assert [e["details"]["permission"] for e in run.denied] == ["read", "read"]
    assert (box / "secret.txt").read_text() == "s3cret\n"


TEMPFILES = """\
import tempfile
print(tempfile.gettempdir())  # found by creating a file there to read and write (one open)
"""


def test_learn_then_enforce_keeps_tempfile_in_the_temporary_directory(tmp_path):
    """tempfile opens its files to read and write (O_RDWR): a learned policy holds both, so the enforced run
    finds the temporary directory python finds, rather than falling back to the next candidate (pylint)."""
    (tmp_path / "app.py").write_text(TEMPFILES)
    plain = subprocess.run([sys.executable, "app.py"], cwd=tmp_path, env=clean_env(), capture_output=True,
                           text=True, timeout=60)
    learned_then_enforced(tmp_path, TEMPFILES, plain.stdout)


UVLOOP_CONNECT = """\
import asyncio, sys
import uvloop

async def main(port):
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        print("CONNECTED")
        writer.close()
    except PermissionError as exc:
        print("DENIED", type(exc).__name__)

uvloop.run(main(int(sys.argv[1])))
"""


def test_uvloop_connections_are_judged(tmp_path):
    """uvloop's libuv connects in C, with no audit event: its loop's methods are judged as the calls they stand
    for, so the refusal is the audit layer's (the kernel wall off: nothing else would stop it)."""
    listener = Listener()
    try:
        denied = guard(tmp_path, UVLOOP_CONNECT, "--mode=enforce", "--no-kernel", "--allow-import=uvloop",
                       "--allow-net=127.0.0.1:1", args=(str(listener.port),))
        allowed = guard(tmp_path, UVLOOP_CONNECT, "--mode=enforce", "--no-kernel", "--allow-import=uvloop",
                        f"--allow-net=127.0.0.1:{listener.port}", args=(str(listener.port),))
    finally:
        accepted = listener.close()
    assert denied.stdout == "DENIED AccessDenied\n", denied
    assert [e["name"] for e in denied.denied] == [f"127.0.0.1:{listener.port}"]
    assert allowed.stdout == "CONNECTED\n" and accepted == 1, allowed


UVLOOP_SERVICE = """\
import asyncio, sys
import uvloop

async def handle(reader, writer):
    writer.write((await reader.readline()).upper())
    await writer.drain()
    writer.close()

async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
    writer.write(b"hello\\n")
    print((await reader.readline()).decode().strip())
    child = await asyncio.create_subprocess_exec(sys.executable, "-c", "print('child')",
                                                 stdout=asyncio.subprocess.PIPE)
    print((await child.communicate())[0].decode().strip(), child.returncode)
    server.close()

uvloop.run(main())
"""


def test_learn_sees_what_uvloop_does(tmp_path):
    """A learning run sees uvloop's server, connection and process start, so its policy holds them under the
    kernel wall, which would refuse what the policy does not list."""
    policy = learned_then_enforced(tmp_path, UVLOOP_SERVICE, "HELLO\nchild 0\n")
    assert '"127.0.0.1",' in policy and f'"{os.path.basename(sys.executable)}",' in policy, policy


ZMQ = """\
import zmq
ctx = zmq.Context()
server = ctx.socket(zmq.REP)
port = server.bind_to_random_port("tcp://127.0.0.1")
client = ctx.socket(zmq.REQ)
try:
    client.connect(f"tcp://127.0.0.1:{port}")
    client.send(b"ping")
    print(server.recv().decode())
except PermissionError as exc:
    print("DENIED", type(exc).__name__)
ctx.socket(zmq.PAIR).bind("inproc://in-process")  # no socket of the OS: nothing to judge
ctx.destroy(linger=0)
"""


def test_zeromq_binds_and_connects_are_judged_and_learned(tmp_path):
    """libzmq binds and connects in C, with no audit event (Jupyter's kernels talk so): pyzmq's socket methods
    are judged as the binds and connects they stand for, and learned."""
    denied = guard(tmp_path, ZMQ, "--mode=enforce", "--no-kernel", "--allow-import=zmq", "--allow-net=127.0.0.1:0")
    assert denied.stdout == "DENIED AccessDenied\n", denied
    assert [e["details"]["operation"] for e in denied.denied] == ["connect"]
    assert '"127.0.0.1",' in learned_then_enforced(tmp_path, ZMQ, "ping\n")


def test_pyward_started_again_inside_the_run_cannot_loosen_it(tmp_path, tmp_path_factory):
    """A program that starts `python -m pyward run -A ...` (a reloader restarting sys.orig_argv does so too)
    gets a child the run's sandbox armed: that pyward runs its program under the run that armed it, so -A
    there grants nothing."""
    secret = tmp_path_factory.mktemp("secret") / "key.txt"
    secret.write_text("s3cret\n")
    inner = f"print(open({str(secret)!r}).read().strip())"
    run = guard(tmp_path, f"""\
        import subprocess, sys
        done = subprocess.run([sys.executable, "-m", "pyward", "run", "-A", "-c", {inner!r}],
                              capture_output=True, text=True)
        print(done.returncode, "s3cret" in done.stdout, "AccessDenied" in done.stderr)
    """, "--mode=enforce", "--no-kernel", "--allow-run", f"--allow-read={sys.prefix}")
    assert run.stdout == "1 False True\n", run
    assert [e["name"] for e in run.denied] == [str(secret)]


UVLOOP_CHILD_ENV = """\
import asyncio, os, sys
import uvloop

async def main(secret):
    code = f"print(open({secret!r}).read().strip())"
    child = await asyncio.create_subprocess_exec(sys.executable, "-c", code, env={"PATH": os.environ["PATH"]},
                                                 stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await child.communicate()
    print(child.returncode, out.decode().strip() or "-", "AccessDenied" in err.decode())

uvloop.run(main(sys.argv[1]))
"""


def test_a_python_child_uvloop_starts_with_its_own_environment_is_armed(tmp_path, tmp_path_factory):
    """uvloop starts processes in C (libuv): an explicit env= gets the sandbox's variables all the same, so the
    Python child runs under the policy (here, the audit layer alone, the kernel wall off)."""
    secret = tmp_path_factory.mktemp("secret") / "key.txt"
    secret.write_text("s3cret\n")
    run = guard(tmp_path, UVLOOP_CHILD_ENV, "--mode=enforce", "--no-kernel", "--allow-import=uvloop", "--allow-run",
                "--allow-env=PATH", f"--allow-read={tmp_path}", args=(str(secret),))
    assert run.stdout == "1 - True\n", run
    assert [e["name"] for e in run.denied] == [str(secret)]
