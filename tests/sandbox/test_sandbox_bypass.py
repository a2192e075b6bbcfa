"""Known ways around audit-hook sandboxes: each must be denied under enforce, and journaled.

Every attempt runs as a program under `pyward run` with a small policy
(read public/ and out/, write out/, secret/ explicitly denied) and prints
LEAKED if it got through.  The secret file holds TOPSECRET; the environment
holds SECRET_TOKEN=TOPSECRET.
"""
from __future__ import annotations

import os
import sys
import textwrap

import pytest

from helpers import clean_env
from sandbox_helpers import guard

POLICY = ("--allow-read=public,out", "--allow-write=out", "--deny-read=secret")

PRELUDE = """\
import os, sys
def attempt(fn):
    try:
        result = fn()
    except PermissionError as exc:
        print("DENIED", type(exc).__name__)
        return
    except Exception as exc:
        print("FAILED", type(exc).__name__, exc)
        return
    print("LEAKED", result)
def gone():
    raise PermissionError("the data is not there to read")
"""

ATTEMPTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "direct_open": ("attempt(lambda: open('secret/key.txt').read())", ()),
    "dotdot_traversal": ("attempt(lambda: open('public/../secret/key.txt').read())", ()),
    "absolute_path": ("attempt(lambda: open(os.path.abspath('secret/key.txt')).read())", ()),
    "bytes_path": ("attempt(lambda: open(b'secret/key.txt').read())", ()),
    "non_utf8_name": ("attempt(lambda: open(b'secret/\\xff.txt').read())", ()),
    "str_subclass_lying": ("""
        class Sneaky(str):
            def __str__(self): return 'public/readme.txt'
            def __fspath__(self): return 'public/readme.txt'
            def __radd__(self, other): return other + 'public/readme.txt'
        attempt(lambda: open(Sneaky('secret/key.txt')).read())
    """, ()),
    "pathlib": ("import pathlib\nattempt(lambda: pathlib.Path('secret/key.txt').read_text())", ()),
    "io_open_code": ("import io\nattempt(lambda: io.open_code('secret/key.txt').read())", ()),
    "os_open_flags": ("attempt(lambda: os.read(os.open('secret/key.txt', os.O_RDONLY), 100))", ()),
    "symlink_in_writable_dir": ("""
        os.symlink(os.path.abspath('secret/key.txt'), 'out/link.txt')
        attempt(lambda: open('out/link.txt').read())
    """, ()),
    "existing_hard_link": ("attempt(lambda: open('public/hardlink.txt').read())", ()),
    "new_hard_link": ("attempt(lambda: os.link('secret/key.txt', 'out/hl.txt'))", ()),
    "user_hook_allowing_all": ("""
        import pyward.sandbox
        attempt(lambda: pyward.sandbox.install_hook(lambda event, args: "allow"))
        attempt(lambda: open('secret/key.txt').read())
    """, ()),
    "native_hook_allowing_all": ("""
        from pyward._native import _pyward
        attempt(lambda: _pyward.sandbox_set_hook(lambda event, args: True))
        attempt(lambda: open('secret/key.txt').read())
    """, ()),
    "dir_fd_open": ("""
        fd = os.open('.', os.O_RDONLY)
        attempt(lambda: os.read(os.open('secret/key.txt', os.O_RDONLY, dir_fd=fd), 100))
    """, ()),
    "chdir_then_relative": ("os.chdir('secret')\nattempt(lambda: open('key.txt').read())", ()),
    "truncate_readable_file": ("attempt(lambda: os.open('public/readme.txt', os.O_WRONLY | os.O_TRUNC))", ()),
    "rename_out_of_protected": ("attempt(lambda: os.rename('secret/key.txt', 'out/stolen.txt'))", ()),
    "shutil_copy": ("import shutil\nattempt(lambda: shutil.copy('secret/key.txt', 'out/copy.txt'))", ()),
    "sqlite_on_protected_file": ("import sqlite3\nattempt(lambda: sqlite3.connect('public/db.sqlite'))", ()),
    "listdir_protected": ("attempt(lambda: os.listdir('secret'))", ()),
    "glob_protected": ("import glob\nattempt(lambda: glob.glob('secret/*'))", ()),
    "subprocess_cat": ("import subprocess\nattempt(lambda: subprocess.run(['cat', 'secret/key.txt']))", ()),
    "os_system": ("attempt(lambda: os.system('cat secret/key.txt'))", ()),
    "os_popen": ("attempt(lambda: os.popen('cat secret/key.txt').read())", ()),
    "os_execv": ("attempt(lambda: os.execv('/bin/cat', ['cat', 'secret/key.txt']))", ()),
    "os_posix_spawn": ("attempt(lambda: os.posix_spawn('/bin/cat', ['cat', 'secret/key.txt'], os.environ))", ()),
    "os_fork": ("attempt(lambda: os.fork())", ()),
    "pty_spawn": ("import pty\nattempt(lambda: pty.spawn(['cat', 'secret/key.txt']))", ()),
    "raw_fork_exec": ("""
        import _posixsubprocess
        def go():
            return _posixsubprocess.fork_exec(*([[b'/bin/cat', b'secret/key.txt'], [b'/bin/cat']]
                                              + [None] * 20)[:23])
        attempt(go)
    """, ()),
    "reimport_posixsubprocess": ("""
        del sys.modules['_posixsubprocess']
        attempt(lambda: __import__('_posixsubprocess').fork_exec)
    """, ()),
    "fresh_module_from_spec": ("""
        import importlib.util
        attempt(lambda: importlib.util.module_from_spec(importlib.util.find_spec('_posixsubprocess')))
    """, ()),
    "reimport_posix": ("del sys.modules['posix']\nattempt(lambda: __import__('posix').open)", ()),
    "ctypes_cdll_none": ("import ctypes\nattempt(lambda: ctypes.CDLL(None).system(b'cat secret/key.txt'))", ()),
    "ctypes_libc_by_name": ("import ctypes\nattempt(lambda: ctypes.CDLL('libc.so.6'))", ()),
    "ctypes_pythonapi": ("import ctypes\nattempt(lambda: ctypes.pythonapi.PyRun_SimpleString)", ()),
    "ctypes_memory": ("import ctypes\nattempt(lambda: ctypes.string_at(id(sys), 16))", ()),
    "ctypes_with_ffi_for_a_library_only": ("import ctypes\nattempt(lambda: ctypes.string_at(id(sys), 16))",
                                           ("--allow-ffi=libm.so.6",)),
    "crafted_code_object": ("attempt(lambda: (lambda: 0).__code__.replace(co_consts=(1,)))", ()),
    "marshal_loads": ("import marshal\nattempt(lambda: marshal.loads(marshal.dumps(compile('1', 'x', 'eval'))))", ()),
    "subinterpreter": ("""
        name = '_xxsubinterpreters' if sys.version_info < (3, 13) else '_interpreters'
        attempt(lambda: __import__(name).create())
    """, ("--allow-import=_xxsubinterpreters,_interpreters",)),
    "gc_walk_for_the_policy": ("import gc\nattempt(lambda: len(gc.get_objects()))", ()),
    "gc_referrers": ("import gc\nattempt(lambda: gc.get_referrers(os))", ()),
    "other_threads_frames": ("attempt(lambda: sys._current_frames())", ()),
    "settrace_spy": ("attempt(lambda: sys.settrace(lambda *a: None))", ()),
    "patch_decision_module": ("""
        import pyward.sandbox._decide as d
        d.check = lambda *a: None
        d.decide = lambda *a: None
        attempt(lambda: open('secret/key.txt').read())
    """, ()),
    "patch_builtins_the_hook_uses": ("""
        import builtins
        builtins.len = lambda x: 0
        builtins.type = lambda x: str
        attempt(lambda: open('secret/key.txt').read())
    """, ()),
    "patch_realpath_and_posixpath": ("""
        import os.path, posixpath
        posixpath.realpath = os.path.realpath = lambda p, **k: '/tmp/harmless'
        posixpath.abspath = lambda p: '/tmp/harmless'
        attempt(lambda: open('secret/key.txt').read())
    """, ()),
    "own_audit_hook": ("""
        sys.addaudithook(lambda e, a: None)
        attempt(lambda: open('secret/key.txt').read())
    """, ()),
    "traceback_frames_to_the_policy": ("""
        try:
            open('secret/key.txt')
        except PermissionError as exc:
            tb = exc.__traceback__
            names = []
            while tb:
                names += list(tb.tb_frame.f_globals)
                tb = tb.tb_next
            if 'RULES' in names or 'CACHE' in names:
                print("LEAKED", "a decider frame in the traceback")
            else:
                print("DENIED", "no decider frame")
    """, ()),
    "env_snapshot": ("""
        import posix
        attempt(lambda: posix.environ.get(b'SECRET_TOKEN') or gone())
    """, ()),
    "env_os_environ": ("attempt(lambda: os.environ['SECRET_TOKEN'])", ()),
    "env_getenv": ("attempt(lambda: os.getenv('SECRET_TOKEN'))", ()),
    "env_copy": ("attempt(lambda: dict(os.environ).get('SECRET_TOKEN') or gone())", ()),
    "env_items": ("attempt(lambda: [v for k, v in os.environ.items() if k == 'SECRET_TOKEN'] or gone())", ()),
    "env_private_data": ("attempt(lambda: getattr(os.environ, '_data', {}).get(b'SECRET_TOKEN') or gone())", ()),
    "env_environb": ("attempt(lambda: os.environb[b'SECRET_TOKEN'])", ()),
    "env_proc_self": ("attempt(lambda: open('/proc/self/environ', 'rb').read())", ()),
    "threads_racing": ("""
        import threading
        results = []
        def go():
            try:
                results.append(open('secret/key.txt').read())
            except PermissionError:
                results.append(None)
        threads = [threading.Thread(target=go) for _ in range(16)]
        [t.start() for t in threads]; [t.join() for t in threads]
        print("LEAKED" if any(results) else "DENIED", len(results))
    """, ()),
    "udp_sendto": ("""
        import socket
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        attempt(lambda: s.sendto(b'x', ('127.0.0.1', 9)))
    """, ()),
    "tcp_bind": ("import socket\nattempt(lambda: socket.socket().bind(('127.0.0.1', 0)))", ()),
    "ipv6_connect": ("""
        import socket
        s = socket.socket(socket.AF_INET6)
        attempt(lambda: s.connect(('::1', 9)))
    """, ()),
    "unix_socket": ("""
        import socket
        s = socket.socket(socket.AF_UNIX)
        attempt(lambda: s.connect('/run/nonexistent.sock'))
    """, ()),
    "dns_lookup": ("import socket\nattempt(lambda: socket.getaddrinfo('example.com', 80))", ()),
    "raw_dns_via_private_module": ("import _socket\nattempt(lambda: _socket.getaddrinfo('example.com', 80))", ()),
    "raw_socket": ("import socket\nattempt(lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, 1))", ()),
    "connect_in_thread": ("""
        import socket, threading
        out = []
        def go():
            try:
                socket.create_connection(('127.0.0.1', 9), timeout=0.5)
                out.append('LEAKED')
            except PermissionError:
                out.append('DENIED')
            except OSError as e:
                out.append('LEAKED')
        t = threading.Thread(target=go); t.start(); t.join()
        print(out[0])
    """, ()),
    "write_own_policy": ("attempt(lambda: open('pyward.toml', 'w').write('[permissions]\\nread = true\\n'))", ()),
    "child_python_with_own_env": ("""
        import subprocess
        code = "print(open('secret/key.txt').read())"
        r = subprocess.run([sys.executable, '-c', code], env={'PATH': '/usr/bin:/bin'}, capture_output=True,
                           text=True)
        print("LEAKED" if "TOPSECRET" in r.stdout else "DENIED", r.returncode)
    """, (f"--allow-run={os.path.basename(sys.executable)},python3,python",)),
    # a second posix module (module_from_spec) whose open() takes dir_fd: the "open" event names the path alone
    "posix_copy_dir_fd": ("""
        import importlib.util
        fresh = importlib.util.module_from_spec(importlib.util.find_spec('posix'))
        os.makedirs('out/sub', exist_ok=True)
        os.chdir('out/sub')  # from here '../secret/key.txt' is out/secret/key.txt, in the policy
        public = os.open('../../public', os.O_RDONLY)
        attempt(lambda: os.read(fresh.open('../secret/key.txt', os.O_RDONLY, dir_fd=public), 100))
    """, ()),
    # -I and -E: the child ignores PYTHONPATH (pyward's boot directory); site's .pth files still arm it
    "child_python_isolated": ("""
        import subprocess
        code = "print(open('secret/key.txt').read())"
        r = subprocess.run([sys.executable, '-I', '-c', code], capture_output=True, text=True)
        print("LEAKED" if "TOPSECRET" in r.stdout else "DENIED", r.returncode)
    """, (f"--allow-run={os.path.basename(sys.executable)},python3,python",)),
    "child_python_ignoring_environment": ("""
        import subprocess
        code = "print(open('secret/key.txt').read())"
        r = subprocess.run([sys.executable, '-E', '-c', code], env={'PATH': '/usr/bin:/bin'}, capture_output=True,
                           text=True)
        print("LEAKED" if "TOPSECRET" in r.stdout else "DENIED", r.returncode)
    """, (f"--allow-run={os.path.basename(sys.executable)},python3,python",)),
}


@pytest.fixture
def workspace(tmp_path):
    (tmp_path / "public").mkdir()
    (tmp_path / "public" / "readme.txt").write_text("hello\n")
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "key.txt").write_text("TOPSECRET\n")
    (tmp_path / "secret" / os.fsdecode(b"\xff.txt")).write_text("TOPSECRET\n")
    (tmp_path / "out").mkdir()
    os.link(tmp_path / "secret" / "key.txt", tmp_path / "public" / "hardlink.txt")
    return tmp_path


def test_the_corpus_is_big_enough():
    assert len(ATTEMPTS) >= 30


@pytest.mark.parametrize("name", sorted(ATTEMPTS))
def test_attempt_is_denied_and_journaled(workspace, name):
    code, extra = ATTEMPTS[name]
    program = PRELUDE + textwrap.dedent(code)
    run = guard(workspace, program, *POLICY, *extra, env=clean_env(SECRET_TOKEN="TOPSECRET"))
    output = run.stdout + run.stderr
    assert "LEAKED" not in run.stdout, run
    assert "TOPSECRET" not in output, run
    assert "DENIED" in run.stdout or "AccessDenied" in run.stderr or "ImportDenied" in run.stderr, run
    if name in ("env_snapshot", "env_private_data", "env_copy", "env_items", "traceback_frames_to_the_policy",
                "threads_racing", "user_hook_allowing_all", "native_hook_allowing_all"):
        return  # nothing reaches the policy: the data is simply gone, or the check above says it all
    assert run.denied, f"no denial journaled: {run}"
    if name.startswith("child_python"):  # the child journals into the parent's log: its audit layer was armed
        assert any(e["message"].startswith("child ") and e["where"] == "<string>:1" for e in run.denied)
        return
    assert any(e["where"] and e["where"].startswith(str(workspace)) for e in run.denied), run.denied


def test_the_secret_is_readable_without_the_sandbox(workspace):
    """The corpus means something only if the attempts would work unguarded."""
    (workspace / "plain.py").write_text(PRELUDE + "attempt(lambda: open('secret/key.txt').read())\n"
                                        "attempt(lambda: os.environ['SECRET_TOKEN'])\n")
    import subprocess

    result = subprocess.run([sys.executable, "plain.py"], cwd=workspace, capture_output=True, text=True,
                            env=clean_env(SECRET_TOKEN="TOPSECRET"), timeout=60)
    assert result.stdout.count("LEAKED") == 2
