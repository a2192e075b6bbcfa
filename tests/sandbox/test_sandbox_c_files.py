"""Files C code opens with no usable audit event: SQLite's ATTACH and VACUUM INTO, database
names given as objects, readline's history and init files, ssl's certificate files, POSIX
shared memory, and the FIFOs and nodes os.mkfifo/os.mknod make.  Each program runs under
`pyward run --no-kernel` (the audit layer alone) with an enforce policy, and each test asserts
that the side effect did not happen: no file made, none changed, nothing read."""
from __future__ import annotations

import os
import textwrap

import pytest

from sandbox_helpers import guard

POLICY = ("--no-kernel", "--allow-read=.", "--allow-write=out", "--deny-read=secret")

PRELUDE = """\
import os, sys
def attempt(label, fn):
    try:
        result = fn()
    except PermissionError as exc:
        print("DENIED", label)
        return
    except Exception as exc:
        print("REFUSED", label, type(exc).__name__, exc)
        return
    print("DONE", label, result if isinstance(result, (bytes, str, int)) else "")
"""


def run(tmp_path, body, *flags):
    (tmp_path / "out").mkdir(exist_ok=True)
    (tmp_path / "secret").mkdir(exist_ok=True)
    return guard(tmp_path, PRELUDE + textwrap.dedent(body), *(flags or POLICY))


SQLITE = """\
import sqlite3
conn = sqlite3.connect("out/main.db")
conn.execute("create table t(x)")
conn.execute("insert into t values (42)")
conn.commit()
attempt("attach", lambda: conn.execute("attach 'secret/a.db' as a"))
attempt("vacuum into", lambda: conn.execute("vacuum into 'secret/v.db'"))
attempt("vacuum into a parameter", lambda: conn.execute("vacuum into ?", ("secret/p.db",)))
attempt("attach a parameter", lambda: conn.execute("attach ? as p", ("secret/q.db",)))
conn.set_authorizer(None)
attempt("attach after set_authorizer(None)", lambda: conn.execute("attach 'secret/b.db' as b"))
conn.set_authorizer(lambda *a: sqlite3.SQLITE_OK)
attempt("attach under the program's authorizer", lambda: conn.execute("attach 'secret/c.db' as c"))
sqlite3.Connection.set_authorizer(conn, None)
attempt("attach after the unbound set_authorizer", lambda: conn.execute("attach 'secret/d.db' as d"))
direct = sqlite3.Connection("out/direct.db")
attempt("attach on a connection made directly", lambda: direct.execute("attach 'secret/e.db' as e"))
direct.__init__("out/again.db")
attempt("attach after a second __init__", lambda: direct.execute("attach 'secret/f.db' as f"))
attempt("allowed attach", lambda: conn.execute("attach 'out/ok.db' as ok"))
attempt("allowed vacuum into", lambda: conn.execute("vacuum into 'out/copy.db'"))
print("COPY", sqlite3.connect("out/copy.db").execute("select x from t").fetchone())
"""


def test_sqlite_attach_and_vacuum_into_are_judged(tmp_path):
    r = run(tmp_path, SQLITE)
    assert os.listdir(tmp_path / "secret") == [], r
    assert r.stdout.count("REFUSED") == 9, r  # sqlite3 answers "not authorized"
    assert "DONE allowed attach" in r.stdout and "DONE allowed vacuum into" in r.stdout, r
    assert "COPY (42,)" in r.stdout, r
    ops = [e["details"]["operation"] for e in r.denied]
    assert ops.count("sqlite3 ATTACH") == 9, ops
    assert any(e["name"] == "(a database name computed in SQL)" for e in r.denied)
    assert any(e["name"].endswith("/secret/p.db") for e in r.denied)  # VACUUM INTO ? is judged by its value


def test_sqlite_attach_allowed_everywhere_with_a_write_rule(tmp_path):
    r = run(tmp_path, "import sqlite3\nc = sqlite3.connect(':memory:')\n"
                      "attempt('attach', lambda: c.execute('attach ? as p', ('secret/q.db',)))\n",
            "--no-kernel", "--allow-read=.", "--allow-write")
    assert "DONE attach" in r.stdout, r
    assert (tmp_path / "secret" / "q.db").exists()


def test_sqlite_names_given_as_objects(tmp_path):
    r = run(tmp_path, """\
        import pathlib, sqlite3
        class Name(str):
            def __fspath__(self): return 'out/lie.db'
        class Flip:
            calls = 0
            def __fspath__(self):
                Flip.calls += 1
                return 'out/ok.db' if Flip.calls == 1 else 'secret/flip.db'
        attempt("Path", lambda: sqlite3.connect(pathlib.Path("secret/path.db")))
        attempt("bytes", lambda: sqlite3.connect(b"secret/bytes.db"))
        attempt("keyword", lambda: sqlite3.connect(database=pathlib.PurePath("secret/kw.db")))
        attempt("str subclass", lambda: sqlite3.connect(Name("secret/sub.db")))
        attempt("flip", lambda: sqlite3.connect(Flip()))
        attempt("Connection(Path)", lambda: sqlite3.Connection(pathlib.Path("out/direct.db")))
        attempt("allowed Path", lambda: sqlite3.connect(pathlib.Path("out/path.db")))
        print("CALLS", Flip.calls)
    """)
    assert os.listdir(tmp_path / "secret") == [], r
    assert r.stdout.count("DENIED") == 5, r
    assert "DONE flip" in r.stdout and "CALLS 1" in r.stdout, r  # __fspath__ ran once: what was judged was opened
    assert sorted(os.listdir(tmp_path / "out")) == ["ok.db", "path.db"], r


def test_readline_files(tmp_path):
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "history").write_text("print('secret')\n")
    (tmp_path / "secret" / "inputrc").write_text("set bell-style none\n")
    r = run(tmp_path, """\
        import pathlib, readline
        readline.add_history("typed")
        attempt("write", lambda: readline.write_history_file("secret/new"))
        attempt("write Path", lambda: readline.write_history_file(pathlib.Path("secret/new2")))
        attempt("append", lambda: readline.append_history_file(1, "secret/history"))
        attempt("read", lambda: readline.read_history_file("secret/history"))
        attempt("init file", lambda: readline.read_init_file("secret/inputrc"))
        print("LENGTH", readline.get_current_history_length())
        attempt("allowed write", lambda: readline.write_history_file("out/history"))
    """)
    assert r.stdout.count("DENIED") == 5, r
    assert sorted(os.listdir(tmp_path / "secret")) == ["history", "inputrc"]
    assert (tmp_path / "secret" / "history").read_text() == "print('secret')\n"
    assert "LENGTH 1" in r.stdout, r  # the secret history was not read in
    assert "typed" in (tmp_path / "out" / "history").read_text()
    assert {e["details"]["permission"] for e in r.denied} == {"read", "write"}


def test_ssl_certificate_files_are_reads(tmp_path):
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "key.pem").write_text("-----BEGIN PRIVATE KEY-----\n")
    r = run(tmp_path, """\
        import pathlib, ssl
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        attempt("cafile", lambda: ctx.load_verify_locations("secret/key.pem"))
        attempt("cafile Path", lambda: ctx.load_verify_locations(cafile=pathlib.Path("secret/key.pem")))
        attempt("capath", lambda: ctx.load_verify_locations(capath="secret"))
        attempt("cert chain", lambda: ctx.load_cert_chain("out/none.pem", keyfile="secret/key.pem"))
        attempt("dh params Path", lambda: ctx.load_dh_params(pathlib.Path("secret/key.pem")))
        attempt("create_default_context", lambda: ssl.create_default_context(cafile="secret/key.pem"))
        attempt("allowed cafile", lambda: ctx.load_verify_locations("out/none.pem"))
    """)
    assert r.stdout.count("DENIED") == 6, r
    assert "REFUSED allowed cafile FileNotFoundError" in r.stdout, r  # judged, then OpenSSL looked for it
    assert {e["details"]["permission"] for e in r.denied} == {"read"}
    assert all("/secret" in e["name"] for e in r.denied), r.denied


def test_shm_open_is_a_write_in_dev_shm(tmp_path):
    name = f"pyward-test-{os.getpid()}"
    r = run(tmp_path, f"""\
        import _posixshmem
        from multiprocessing import shared_memory
        attempt("shm_open", lambda: _posixshmem.shm_open("/{name}", os.O_CREAT | os.O_RDWR, 0o600))
        attempt("SharedMemory", lambda: shared_memory.SharedMemory(name="{name}-b", create=True, size=16))
    """)
    assert r.stdout.count("DENIED") == 2, r
    assert not os.path.exists(f"/dev/shm/{name}") and not os.path.exists(f"/dev/shm/{name}-b")
    assert [e["name"] for e in r.denied] == [f"/dev/shm/{name}", f"/dev/shm/{name}-b"]


def test_shm_open_allowed_by_a_rule(tmp_path):
    name = f"pyward-ok-{os.getpid()}"
    r = run(tmp_path, f"""\
        import _posixshmem
        fd = _posixshmem.shm_open("/{name}", os.O_CREAT | os.O_RDWR, 0o600)
        os.write(fd, b"7")
        print("VALUE", open("/dev/shm/{name}").read())
        _posixshmem.shm_unlink("/{name}")
    """, "--no-kernel", "--allow-read=.,/dev/shm", "--allow-write=/dev/shm")
    assert "VALUE 7" in r.stdout, r
    assert not os.path.exists(f"/dev/shm/{name}")


def test_a_second_copy_of_sqlite3_is_guarded_too(tmp_path):
    r = run(tmp_path, """\
        import importlib.util
        spec = importlib.util.find_spec("_sqlite3")
        copy = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(copy)
        c = copy.connect("out/x.db")
        attempt("attach", lambda: c.execute("attach 'secret/a.db' as a"))
        c.set_authorizer(None)
        attempt("attach after None", lambda: c.execute("attach 'secret/b.db' as b"))
    """)
    assert os.listdir(tmp_path / "secret") == [], r
    assert r.stdout.count("REFUSED") == 2, r


def test_a_fresh_imp_makes_guarded_modules(tmp_path):
    r = run(tmp_path, """\
        import importlib.util
        imp = importlib.util.module_from_spec(importlib.util.find_spec("_imp"))
        spec = importlib.util.find_spec("_sqlite3")
        copy = imp.create_dynamic(spec)
        imp.exec_dynamic(copy)
        c = copy.connect("out/x.db")
        attempt("attach", lambda: c.execute("attach 'secret/a.db' as a"))
        print("GUARDED", "pyward" in repr(imp.create_dynamic))
    """)
    assert os.listdir(tmp_path / "secret") == [], r
    assert "REFUSED attach" in r.stdout and "GUARDED True" in r.stdout, r


def test_attach_under_the_kernel_wall(tmp_path):
    from pyward._native import native

    if native is None or native.landlock_abi() < 1:
        pytest.skip("no Landlock in this kernel")
    r = run(tmp_path, "import sqlite3\nc = sqlite3.connect('out/m.db')\n"
                      "attempt('attach', lambda: c.execute(\"attach 'secret/a.db' as a\"))\n",
            "--allow-read=.", "--allow-write=out", "--deny-read=secret")
    assert os.listdir(tmp_path / "secret") == [], r
    assert "DONE attach" not in r.stdout, r


def test_mkfifo_and_mknod_are_writes_of_the_new_entry(tmp_path):
    # CPython 3.11-3.13 raise no audit event for os.mkfifo / os.mknod: without a guard they
    # made FIFOs and empty regular files anywhere, dir_fd and PathLike spellings included
    r = run(tmp_path, """\
        import pathlib, stat
        out = os.open("out", os.O_RDONLY)
        attempt("mkfifo", lambda: os.mkfifo("made-fifo"))
        attempt("mknod file", lambda: os.mknod("made-file", 0o600 | stat.S_IFREG))
        attempt("mkfifo dir_fd", lambda: os.mkfifo("../made-fd-fifo", dir_fd=out))
        attempt("mknod dir_fd", lambda: os.mknod("../made-fd-file", 0o600 | stat.S_IFREG, dir_fd=out))
        attempt("mkfifo path object", lambda: os.mkfifo(pathlib.Path("secret/made-fifo")))
        attempt("mknod keyword", lambda: os.mknod(path="secret/made-file"))
        import posix
        attempt("posix.mkfifo", lambda: posix.mkfifo("made-posix-fifo"))
        attempt("allowed mkfifo", lambda: os.mkfifo("out/fifo"))
        attempt("allowed mknod", lambda: os.mknod("ok", 0o600 | stat.S_IFREG, dir_fd=out))
    """)
    assert sorted(os.listdir(tmp_path / "secret")) == [], r
    made = {name for name in os.listdir(tmp_path) if name.startswith("made")}
    assert made == set(), r
    assert r.stdout.count("DENIED") == 7, r
    assert sorted(os.listdir(tmp_path / "out")) == ["fifo", "ok"], r
    assert {e["details"]["operation"] for e in r.denied} == {"mkfifo", "mknod"}, r.denied


def test_posix_spawn_file_actions_are_the_opens_they_make(tmp_path):
    # os.posix_spawn's audit event does not carry file_actions: a POSIX_SPAWN_OPEN opened a
    # denied file as the child's stdin, or made a file outside the writable directory, unjudged
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "key.txt").write_text("TOPSECRET")
    python = __import__("sys").executable  # (the venv's: its real path is a python without pyward)
    r = run(tmp_path, f"""\
        import pathlib
        class Name(str):
            pass
        def spawn(actions, code="import sys; sys.stdout.write(sys.stdin.read())"):
            pid = os.posix_spawn({python!r}, [{python!r}, "-c", code], dict(os.environ), file_actions=actions)
            return os.waitpid(pid, 0)[1]
        attempt("read the secret", lambda: spawn([(os.POSIX_SPAWN_OPEN, 0, "secret/key.txt", os.O_RDONLY, 0)]))
        attempt("read it by a path object", lambda: spawn(
            [(os.POSIX_SPAWN_OPEN, 0, pathlib.Path("secret/key.txt"), os.O_RDONLY, 0)]))
        attempt("read it by a str subclass", lambda: spawn([[os.POSIX_SPAWN_OPEN, 0, Name("secret/key.txt"),
                                                             os.O_RDONLY, 0]]))
        attempt("create outside", lambda: spawn([(os.POSIX_SPAWN_DUP2, 1, 3),
                                                 (os.POSIX_SPAWN_OPEN, 1, "made.txt", os.O_WRONLY | os.O_CREAT, 0o644)],
                                                "print('x')"))
        attempt("create inside", lambda: spawn([(os.POSIX_SPAWN_OPEN, 1, "out/made.txt",
                                                 os.O_WRONLY | os.O_CREAT, 0o644)], "print('inside')"))
    """, *POLICY, "--allow-env", f"--allow-run={python},{os.path.realpath(python)}")
    assert "TOPSECRET" not in r.stdout, r
    assert not (tmp_path / "made.txt").exists(), r
    assert (tmp_path / "out" / "made.txt").read_text() == "inside\n", r
    assert r.stdout.count("DENIED") == 4, r
    assert "DONE create inside" in r.stdout, r


def test_an_environment_given_as_a_mapping_runs_no_code_in_pyward(tmp_path):
    # execve's env was read (keys(), [k]) by the transform that adds pyward's variables, with
    # pyward's frame below the program's methods: a mapping whose keys() took the frame's
    # globals got the decider's private namespace, and could switch the sandbox off
    r = run(tmp_path, """\
        seen = []
        class Env(dict):
            def keys(self):
                seen.append(sys._getframe(1).f_globals.get("__name__"))
                return ["PATH"]
            def values(self):
                return [os.environ.get("PATH", "")]
        class Key(str):
            def __hash__(self):
                seen.append(sys._getframe(1).f_globals.get("__name__"))
                return str.__hash__(self)
        pid = os.fork()
        if pid == 0:
            try:
                os.execve("/bin/true", ["true"], Env())
            finally:
                os._exit(1)
        print("child", os.waitpid(pid, 0)[1])
        pid = os.posix_spawn("/bin/true", ["true"], {Key("A"): "1"})
        print("spawned", os.waitpid(pid, 0)[1])
        print("frames seen", sorted(set(map(str, seen))))
    """, *POLICY, "--allow-env", "--allow-run")
    assert "child 0" in r.stdout and "spawned 0" in r.stdout, r
    assert "frames seen ['__main__']" in r.stdout, r


@pytest.mark.skipif(os.geteuid() != 0, reason="not run: making a device node needs root")
def test_a_device_node_needs_more_than_a_write_rule(tmp_path):
    # a block or character device made in a writable directory reads and writes the device itself:
    # a write rule does not allow it (a blanket --allow-write does), a FIFO or a plain file it does
    body = """\
        import stat
        class Mode(int):
            pass
        class Index:
            def __index__(self):
                return stat.S_IFBLK | 0o600
        for label, mode in (("block", stat.S_IFBLK), ("char", stat.S_IFCHR), ("file", stat.S_IFREG)):
            attempt(label, lambda: os.mknod("out/" + label, mode | 0o600, os.makedev(1, 3)))
        attempt("int subclass", lambda: os.mknod("out/sub", Mode(stat.S_IFBLK | 0o600), os.makedev(1, 3)))
        attempt("__index__", lambda: os.mknod("out/index", Index(), os.makedev(1, 3)))
    """
    r = run(tmp_path, body)
    assert sorted(os.listdir(tmp_path / "out")) == ["file"], r
    assert [e["name"] for e in r.denied] == [f"(a device node) {tmp_path}/out/{n}"
                                             for n in ("block", "char", "sub", "index")]
    for entry in os.listdir(tmp_path / "out"):
        os.unlink(tmp_path / "out" / entry)
    blanket = run(tmp_path, body, "--no-kernel", "--allow-read=.", "--allow-write")
    assert sorted(os.listdir(tmp_path / "out")) == ["block", "char", "file", "index", "sub"], blanket


def test_a_certificate_file_that_does_not_exist_is_not_a_denial(tmp_path):
    """ssl's load_verify_locations of a missing file: the OS answers FileNotFoundError, as to a read-only
    open of it, and learn does not turn the probe into a rule (httpx's tests make it)."""
    run = guard(tmp_path, """\
        import ssl
        try:
            ssl.create_default_context().load_verify_locations("/nonexistent/ca.pem")
        except OSError as exc:
            print(type(exc).__name__)
    """, "--mode=enforce")
    assert (run.stdout, run.denied) == ("FileNotFoundError\n", []), run
